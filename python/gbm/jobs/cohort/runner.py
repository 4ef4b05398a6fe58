"""Cohorts: one ``gbm fit`` per patient, on this machine or a Ray cluster (``gbm cohort``).

:func:`run` is the front: it validates the settings, finds the patients
(:mod:`gbm.jobs.cohort.inputs`), decides what to fit, runs the fits on an engine
(:mod:`gbm.jobs.cohort.engines`) and writes the table (:mod:`gbm.jobs.cohort.table`), the report
(:mod:`gbm.jobs.cohort.report`) and ``cohort.json``.

Output (``out``):

* ``patients/<id>/`` one :func:`gbm.jobs.fit.run.fit_patient` folder per patient (results.json,
  maps, plans, figures), staged in a hidden sibling ``.<id>.*.tmp`` and renamed into place by the
  fit;
* ``cohort.csv`` (always) and ``cohort.parquet`` (when pyarrow is installed), one row per patient
  (:data:`gbm.jobs.cohort.table.COLUMNS`), status ``ok`` / ``failed`` / ``skipped-existing``
  (``interrupted`` after Ctrl-C), written atomically; rows are made from each patient's typed
  :class:`gbm.jobs.fit.report.FitReport`;
* ``report.md`` and ``figures/*.png`` (:mod:`gbm.jobs.cohort.report`), ``cohort.json`` (settings,
  engine, workers, versions, totals, failures with their tracebacks).

Why Parquet is optional (CSV-only fallback): the table is small (one row per patient, ~40
columns: 10,000 patients are a few MB of CSV), CSV opens everywhere (spreadsheets, R, pandas,
``csv``), and pyarrow is a ~100 MB wheel that the fit itself never needs. Parquet adds exact
dtypes and nulls for analysis at scale, so it is written whenever pyarrow can be imported (the
``ray`` and ``test`` extras install it) and ``cohort.json`` says which tables were written.

Reliability: a patient whose folder holds ``results.json`` is skipped (its row is read back from
that file's report; resuming with other fit settings is refused unless ``force``); a folder
without it (a half-written one) and stale ``.<id>.*.tmp`` siblings are removed and the patient is
redone. One patient's failure (bad input, any exception, its worker process killed) is recorded as
a failed row with the error and does not stop the others. Ctrl-C stops the workers; finished
patient folders stay intact (each appears only by an atomic rename) and the table is written with
the unfinished patients as ``interrupted``; rerun the same command to continue. A lock file
(``.cohort.lock``, ``flock``) keeps two runs out of one ``out``.

Threads per patient: ``threads`` if given, else ``cores // workers`` (at least 1) on this machine,
or 1 per task on a joined Ray cluster (:mod:`gbm.jobs.cohort.engines`). ``--method pinn`` fits
every patient with the PINN (``gbm fit --method pinn``, its threads pinned like the FD solver's),
``--method bilo`` with BiLO (``gbm fit --method bilo``, the same way).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbm import io
from gbm.errors import InputError, require
from gbm.jobs.cohort.engines import ENGINES, Engine, cores, run_jobs, start_ray
from gbm.jobs.cohort.inputs import (
    Cohort,
    Job,
    Work,
    check_template,
    discover,
    plan_work,
    settings_of,
)
from gbm.jobs.cohort.report import write_report
from gbm.jobs.cohort.table import (
    COLUMNS,
    STATUSES,
    columns,
    failed_row,
    parquet_bytes,
    row_from_report,
)
from gbm.jobs.fit.config import FitConfig
from gbm.provenance import versions

__all__ = ["COLUMNS", "ENGINES", "METHODS", "Job", "discover", "run"]

#: Fitting methods (``--method``, :attr:`gbm.jobs.fit.config.FitConfig.method`).
METHODS = ("fd", "pinn", "bilo")


def run(source: str | os.PathLike[str], out: str | os.PathLike[str], *, method: str = "fd",
        engine: str = "local", workers: int = 1, address: str | None = None,
        fit_config: FitConfig | None = None, force: bool = False, progress: bool = True,
        threads: int | None = None) -> dict[str, Any]:
    """Fit every patient of ``source`` into ``out`` (see the module header).

    Parameters
    ----------
    source : path
        Cohort folder (one sub-folder per patient) or CSV manifest.
    out : path
        Output folder; an existing cohort output is resumed.
    method : {"fd", "pinn", "bilo"}
        Sets :attr:`FitConfig.method` of every patient.
    engine : {"local", "ray"}
    workers : int
        Patients fitted at once (local processes; the local Ray cluster's CPUs).
    address : str, optional
        Ray cluster to join (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``); ray engine only.
    fit_config : FitConfig, optional
        Fit settings of every patient (without input paths); default ``FitConfig()``.
    force : bool
        Refit every patient (replacing existing results) and allow a non-cohort ``out``.
    progress : bool
        A tqdm bar over patients.
    threads : int, optional
        Threads per patient (default ``cores // workers``, at least 1; 1 on a joined cluster).

    Returns
    -------
    dict
        The content of ``cohort.json`` plus ``"rows"`` (the table as a list of dicts).

    Raises
    ------
    InputError
        Bad input (nothing written): missing source or no patient, a bad manifest row, an
        unknown method/engine, bad worker count, unreachable Ray address, missing ray.
    KeyboardInterrupt
        After writing the table with the unfinished patients marked ``interrupted``.
    """
    require(method in METHODS, f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    require(engine in ENGINES, f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    require(isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1,
            f"--workers must be an integer >= 1, got {workers}")
    require(threads is None or (isinstance(threads, int) and threads >= 1),
            f"--threads must be an integer >= 1, got {threads}")
    require(address is None or engine == "ray", "--address is for --engine ray")
    cfg = dataclasses.replace(fit_config if fit_config is not None else FitConfig(),
                              method=method)
    check_template(cfg)
    out_p = Path(out).resolve()
    cohort = Cohort(str(Path(source).resolve()), *discover(source, exclude=out_p))
    require(not out_p.is_file(), f"--out {out}: is a file")
    if out_p.is_dir() and any(out_p.iterdir()) and not force:
        require((out_p / "cohort.json").exists() or (out_p / "patients").is_dir(),
                f"--out {out} exists and is not a gbm cohort folder; use --force to write "
                "into it")
    work = plan_work(cohort, cfg, out_p, force)
    ray, started_ray = start_ray(address, workers) if engine == "ray" else (None, False)
    eng = Engine(engine, workers,
                 threads or (1 if address is not None else max(1, cores() // workers)), address)
    try:
        out_p.mkdir(parents=True, exist_ok=True)
        with _lock(out_p):
            return _execute(out_p, cohort, work, eng, cfg, progress, ray, versions())
    finally:
        if started_ray and ray is not None:
            ray.shutdown()


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    import fcntl

    fd = os.open(out / ".cohort.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"--out {out} is in use by another gbm cohort run") from None
        yield
    finally:
        os.close(fd)


def _clean_patient(pdir: Path, pid: str) -> None:
    """Remove a half-written patient folder and stale staging siblings ``.<id>.*.tmp/.old``."""
    if pdir.is_dir():
        for p in pdir.glob(f".{pid}.*"):
            if p.name.endswith((".tmp", ".old")):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    d = pdir / pid
    if d.exists() and not (d / "results.json").is_file():
        shutil.rmtree(d) if d.is_dir() else d.unlink()


class _Rows:
    """The rows as they arrive (by id), the tracebacks of failed fits, the progress bar."""

    def __init__(self, rows: dict[str, dict[str, Any]], bar: Any) -> None:
        self.rows, self.bar = rows, bar
        self.tracebacks: dict[str, str] = {}

    def __call__(self, row: dict[str, Any]) -> None:
        tb = row.pop("_traceback", "")
        if tb:
            self.tracebacks[row["id"]] = tb
        self.rows[row["id"]] = row
        self.bar.update(1)
        n_failed = sum(r["status"] == "failed" for r in self.rows.values())
        self.bar.set_postfix(failed=n_failed, refresh=False)


def _execute(out: Path, cohort: Cohort, work: Work, engine: Engine, cfg: FitConfig,
             progress: bool, ray: Any, vers: dict[str, Any]) -> dict[str, Any]:
    """Fit the jobs, then write the table, the report and ``cohort.json`` (also after Ctrl-C,
    which is raised again afterwards)."""
    from tqdm import tqdm

    unc = bool(cfg.uncertainty)
    pdir = out / "patients"
    pdir.mkdir(exist_ok=True)
    for j in work.jobs:
        _clean_patient(pdir, j.pid)
    rows = {pid: row_from_report(pid, "skipped-existing", r, r.seconds.get("total"), unc)
            for pid, r in work.existing.items()}
    bar = tqdm(total=len(cohort.patients), initial=len(work.existing), unit="patient",
               desc="gbm cohort", disable=not progress, dynamic_ncols=True)
    collect = _Rows(rows, bar)
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    interrupted = False
    try:
        run_jobs(engine, ray, work.jobs, collect, unc)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    clock = _Clock(started, time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter() - t0,
                   interrupted)
    table = [rows.get(pid) or failed_row(pid, "not finished (interrupted)", None, unc,
                                         status="interrupted") for pid in cohort.ids]
    tables = _write_tables(out, table, columns(unc))
    summary = _summary(out, cohort, engine, cfg, table, tables, clock, collect.tracebacks, vers)
    if not interrupted:
        summary["report"] = write_report(out, table, summary)
    io.write_json_atomic(out / "cohort.json", summary, force=True)
    if interrupted:
        raise KeyboardInterrupt
    return dict(summary, rows=table)


def _write_tables(out: Path, table: list[dict[str, Any]], cols: tuple[str, ...]) -> list[str]:
    """``cohort.csv`` and, with pyarrow, ``cohort.parquet``; returns the names written."""
    io.write_bytes_atomic(out / "cohort.csv", io.csv_bytes(table, cols), force=True)
    parquet = parquet_bytes(table, cols)
    if parquet is None:
        return ["cohort.csv"]
    io.write_bytes_atomic(out / "cohort.parquet", parquet, force=True)
    return ["cohort.csv", "cohort.parquet"]


@dataclass(frozen=True)
class _Clock:
    """When the fits started and finished, their wall seconds, and whether Ctrl-C stopped them."""

    started: str
    finished: str
    wall: float
    interrupted: bool


def _summary(out: Path, cohort: Cohort, engine: Engine, cfg: FitConfig,
             table: list[dict[str, Any]], tables: list[str], clock: _Clock,
             tracebacks: dict[str, str], vers: dict[str, Any]) -> dict[str, Any]:
    """The content of ``cohort.json`` (without ``report``)."""
    counts = {s: sum(r["status"] == s for r in table) for s in STATUSES}
    fitted = counts["ok"] + counts["failed"]
    wall = clock.wall
    extra_versions = {}
    for mod in ("ray", "pyarrow"):
        m = sys.modules.get(mod)
        if m is not None:
            extra_versions[mod] = getattr(m, "__version__", "")
    return {
        "source": cohort.source, "source_kind": cohort.kind, "out": str(out),
        "method": cfg.method, "engine": engine.name, "workers": engine.workers,
        "threads_per_patient": engine.threads, "address": engine.address,
        "ray_cluster": (None if engine.name != "ray" else "joined" if engine.address
                        else "local"),
        "fit_config": settings_of(cfg), "patients": len(table),
        "totals": dict(counts, fitted_this_run=fitted, wall_seconds=wall,
                       patients_per_hour=(fitted / wall * 3600 if fitted and wall > 0 else None),
                       fit_seconds_sum=sum(r["wall_seconds"] or 0.0 for r in table
                                           if r["status"] in ("ok", "failed"))),
        "interrupted": clock.interrupted, "started": clock.started, "finished": clock.finished,
        "tables": tables,
        "parquet": ("written" if "cohort.parquet" in tables
                    else "not written: pyarrow is not installed"),
        "ignored_folders": cohort.ignored,
        "failures": [{"id": r["id"], "error": r["error"], "traceback": tracebacks.get(r["id"], "")}
                     for r in table if r["status"] == "failed"],
        "versions": dict(vers, **extra_versions),
    }
