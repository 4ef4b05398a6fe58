"""Cohorts: one ``gbm fit`` per patient, on this machine or a Ray cluster (``gbm cohort``).

Input (``source``): a folder with one sub-folder per patient, in any layout
:func:`gbm.problem.segmentation.patient.load_patient` reads (PredictGBM, container, with or without
``scans.json``; ``gbm synth --cohort N`` writes such a folder), or a CSV manifest with the columns
``patient_id, wm, gm, csf, scans[, recurrence]`` where ``scans`` is ``"seg@day;seg@day"`` (days),
``csf`` and ``recurrence`` may be empty and relative paths count from the CSV's folder. Hidden
sub-folders and sub-folders in neither layout are ignored (listed in ``cohort.json``).

Output (``out``):

* ``patients/<id>/`` one :func:`gbm.jobs.fit.run.run_fit` folder per patient (results.json, maps, plans,
  figures), staged in a hidden sibling ``.<id>.*.tmp`` and renamed into place by ``run_fit``;
* ``cohort.csv`` (always) and ``cohort.parquet`` (when pyarrow is installed), one row per patient
  (:data:`COLUMNS`), status ``ok`` / ``failed`` / ``skipped-existing`` (``interrupted`` after
  Ctrl-C), written atomically;
* ``report.md`` and ``figures/*.png`` (:mod:`gbm.jobs.cohort.report`), ``cohort.json`` (settings, engine,
  workers, versions, totals, failures with their tracebacks).

Why Parquet is optional (CSV-only fallback): the table is small (one row per patient, ~40
columns: 10,000 patients are a few MB of CSV), CSV opens everywhere (spreadsheets, R, pandas,
``csv``), and pyarrow is a ~100 MB wheel that the fit itself never needs. Parquet adds exact
dtypes and nulls for analysis at scale, so it is written whenever pyarrow can be imported (the
``ray`` and ``test`` extras install it) and ``cohort.json`` says which tables were written.

Reliability: a patient whose folder holds ``results.json`` is skipped (its row is read back from
that file; resuming with other fit settings is refused unless ``force``); a folder without it (a
half-written one) and stale ``.<id>.*.tmp`` siblings are removed and the patient is redone. One
patient's failure (bad input, any exception, its worker process killed) is recorded as a failed row
with the error and does not stop the others. Ctrl-C stops the workers; finished patient folders
stay intact (each appears only by an atomic rename) and the table is written with the unfinished
patients as ``interrupted``; rerun the same command to continue. A lock file (``.cohort.lock``,
``flock``) keeps two runs out of one ``out``.

Engines:

* ``local``: :class:`concurrent.futures.ProcessPoolExecutor` (spawn) with ``workers`` processes,
  one patient per task. A worker that dies (SIGKILL, out of memory, a crash in native code) breaks
  the pool: the patient it ran is recorded as failed and a fresh pool continues. When several
  patients were running, which one killed the worker is unknown: each is rerun alone, and one that
  breaks the pool alone is the failure.
* ``ray``: the optional extra ``gbm[ray]``. ``address`` joins an existing cluster (checked to be
  reachable first); none starts a local cluster with ``num_cpus = workers``. One task
  (``num_cpus`` = threads per patient, no retries) per patient; tasks read the patient files and
  write their folders by path (shared storage on a real cluster), so Ray's object store holds only
  the small row dicts returned. ``ray.shutdown()`` at the end only if this run started Ray.

Threads: each task pins its thread count before the first kernel call: ``RAYON_NUM_THREADS`` (the
Rust core's rayon pool is created lazily on the first kernel call, so the variable set in the task
takes effect), ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (read by torch at import) and
``torch.set_num_threads`` when torch is already imported, plus the BLAS pools via threadpoolctl
when installed. The count is ``threads`` if given, else ``cores // workers`` (at least 1) on this
machine, or 1 per task on a joined Ray cluster; each row records what the task's rayon pool used.

``--method pinn`` fits every patient with the PINN (``gbm fit --method pinn``, its threads pinned
like the FD solver's).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io as _io
import json
import math
import os
import re
import shutil
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gbm import _core, extras, io
from gbm.errors import InputError, require
from gbm.jobs.cohort.report import write_report
from gbm.jobs.fit.run import FitConfig, run_fit
from gbm.problem.segmentation.patient import parse_scan
from gbm.provenance import versions

__all__ = ["COLUMNS", "ENGINES", "METHODS", "Job", "discover", "run"]

#: Fitting methods (``--method``, :attr:`gbm.jobs.fit.run.FitConfig.method`).
METHODS = ("fd", "pinn")
#: Execution engines (``--engine``).
ENGINES = ("local", "ray")
#: FitConfig fields that name a patient's files (set per patient, never by the cohort).
INPUT_FIELDS = ("patient", "wm", "gm", "csf", "scans", "recurrence")
#: Statuses of a row.
STATUSES = ("ok", "failed", "skipped-existing", "interrupted")
#: Quantities with a 90 % interval when the fit samples the posterior (column stem, results key).
INTERVALS = (("lambda_mm", "lambda_mm"), ("rho_T", "rho_t0"), ("dw", "dw"), ("rho", "rho"),
             ("age_days", "t0_days"))
#: Columns of cohort.csv / cohort.parquet, in order (interval columns appended with
#: ``uncertainty``). Units: mm, days, Dw mm^2/day, rho 1/day, ml, seconds; coverages are fractions.
COLUMNS = (
    "id", "status", "error", "wall_seconds", "threads", "n_scans",
    "lambda_mm", "rho_T", "dw", "rho", "age_days", "origin_x_mm", "origin_y_mm", "origin_z_mm",
    "theta_c", "theta_e", "misfit",
    "dice_core_first", "dice_whole_first", "dice_core_last", "dice_whole_last", "model_dice_min",
    "coverage_standard", "coverage_model", "coverage_standard_all", "coverage_model_all",
    "volume_standard_ml", "volume_model_ml", "solves", "source",
)
_STRING_COLUMNS = frozenset({"id", "status", "error", "source"})
_INT_COLUMNS = frozenset({"threads", "n_scans", "solves"})
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
_MANIFEST_REQUIRED = ("patient_id", "wm", "gm", "scans")


@dataclass(frozen=True)
class Job:
    """One patient's fit: id, the full :class:`FitConfig` (absolute paths), its output folder."""

    pid: str
    cfg: FitConfig
    out: str
    force: bool = False


# ---------------------------------------------------------------- inputs

def discover(source: str | os.PathLike[str], exclude: Path | None = None
             ) -> tuple[str, list[tuple[str, dict[str, Any]]], list[str]]:
    """The patients of ``source`` (module header).

    Returns
    -------
    kind : {"folders", "manifest"}
    patients : list of (id, FitConfig input fields with absolute paths), sorted by id for folders,
        in file order for a manifest
    ignored : sub-folders that are in neither patient layout (folders only)

    Raises
    ------
    InputError
        ``source`` missing, holding no patient, a single patient's folder, or a manifest row that
        is malformed or names a missing file.
    """
    src = Path(source)
    if src.is_file():
        return "manifest", _read_manifest(src), []
    require(src.is_dir(), f"{src}: no such cohort folder or CSV manifest")
    require(not _looks_like_patient(src),
            f"{src} is one patient's folder; give the folder that holds one sub-folder per "
            "patient (or use gbm fit --patient)")
    patients, ignored = [], []
    for d in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if exclude is not None and d.resolve() == exclude:
            continue
        if _looks_like_patient(d):
            patients.append((d.name, {"patient": str(d.resolve())}))
        else:
            ignored.append(d.name)
    require(bool(patients),
            f"{src} holds no patient folder (sub-folders in the PredictGBM layout "
            "tissue_segmentation/ + tumor_segmentation/, or the container layout "
            "<id>-wm.nii.gz ...)")
    return "folders", patients, ignored


def _looks_like_patient(d: Path) -> bool:
    return ((d / "tissue_segmentation").is_dir() or (d / "scans.json").is_file()
            or any(d.glob("*-wm.nii.gz")) or any(d.glob("*-wm.nii")))


def _read_manifest(path: Path) -> list[tuple[str, dict[str, Any]]]:

    base = path.resolve().parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the manifest ({e})") from None
    reader = csv.DictReader(_io.StringIO(text))
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in _MANIFEST_REQUIRED if c not in cols]
    require(not missing, f"{path}: manifest needs the columns patient_id, wm, gm, csf, scans "
            f"[, recurrence]; missing {', '.join(missing)}")
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for raw in reader:
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()
               if not isinstance(v, list)}
        if not any(row.values()):
            continue
        where = f"{path} line {reader.line_num}"
        pid = row.get("patient_id", "")
        require(bool(_SAFE_ID.match(pid)),
                f"{where}: patient_id {pid!r} must be a folder name (letters, digits, . _ -)")
        require(pid not in seen, f"{where}: patient_id {pid!r} appears twice")
        seen.add(pid)
        at = f"{where} (patient {pid})"
        require(bool(row.get("wm")) and bool(row.get("gm")),
                f"{at}: wm and gm are required")
        fields: dict[str, Any] = {
            "wm": _manifest_file(row["wm"], "wm", base, at),
            "gm": _manifest_file(row["gm"], "gm", base, at),
            "csf": _manifest_file(row["csf"], "csf", base, at) if row.get("csf") else None}
        specs = [s.strip() for s in row.get("scans", "").split(";") if s.strip()]
        require(bool(specs), f"{at}: scans is empty (expected "
                "\"seg.nii.gz@day;seg.nii.gz@day\")")
        scans = []
        for s in specs:
            try:
                seg, day = parse_scan(s)
            except InputError as e:
                raise InputError(f"{at}: {e}") from None
            scans.append(f"{_manifest_file(seg, 'scan', base, at)}@{day:.17g}")
        fields["scans"] = tuple(scans)
        rec = row.get("recurrence", "")
        if rec:
            seg, sep, day = rec.rpartition("@")
            fields["recurrence"] = (f"{_manifest_file(seg, 'recurrence', base, at)}@{day}" if sep
                                    else _manifest_file(rec, "recurrence", base, at))
        out.append((pid, fields))
    require(bool(out), f"{path}: the manifest holds no patient row")
    return out


def _manifest_file(value: str, what: str, base: Path, at: str) -> str:
    """A manifest path, relative to the manifest's folder unless absolute; it must exist."""
    p = Path(value)
    p = p if p.is_absolute() else base / p
    require(p.is_file(), f"{at}: {what} file not found: {p}")
    return str(p)


def _check_template(cfg: FitConfig) -> None:
    named = [f.name for f in dataclasses.fields(cfg)
             if f.name in INPUT_FIELDS and getattr(cfg, f.name) not in (None, ())]
    require(not named, f"the cohort's fit settings must not name a patient's files "
            f"({', '.join(named)}): they come from the cohort folder or manifest")
    dataclasses.replace(cfg, patient="<each patient>").validate()


def _settings(cfg: FitConfig | dict[str, Any]) -> dict[str, Any]:
    """The fit settings that must agree between runs into one ``out`` (JSON-normalised)."""
    d = asdict(cfg) if isinstance(cfg, FitConfig) else dict(cfg)
    d = {k: v for k, v in d.items() if k not in INPUT_FIELDS}
    return json.loads(json.dumps(d))


# ---------------------------------------------------------------- rows

def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def row_from_results(pid: str, status: str, res: dict[str, Any], wall: float | None,
                     uncertainty: bool = False) -> dict[str, Any]:
    """One table row from a ``results.json`` dict (see :data:`COLUMNS`)."""
    est = res.get("estimates", {})
    scans = res.get("scans", []) or [{}]
    plans = res.get("plans", {})
    origin = list(est.get("origin_world_mm") or [None] * 3) + [None] * 3
    row: dict[str, Any] = dict.fromkeys(columns(uncertainty))
    row.update({
        "id": pid, "status": status, "error": "", "wall_seconds": _num(wall),
        "n_scans": len(res.get("scans", [])),
        "lambda_mm": _num(est.get("lambda_mm")), "rho_T": _num(est.get("rho_T")),
        "dw": _num(est.get("dw")), "rho": _num(est.get("rho")),
        "age_days": _num(est.get("age_days_at_first_scan")),
        "origin_x_mm": _num(origin[0]), "origin_y_mm": _num(origin[1]),
        "origin_z_mm": _num(origin[2]),
        "theta_c": _num(est.get("theta_c")), "theta_e": _num(est.get("theta_e")),
        "misfit": _num(res.get("misfit")),
        "dice_core_first": _num(scans[0].get("dice_core")),
        "dice_whole_first": _num(scans[0].get("dice_whole")),
        "dice_core_last": _num(scans[-1].get("dice_core")),
        "dice_whole_last": _num(scans[-1].get("dice_whole")),
        "model_dice_min": _num((res.get("quality") or {}).get("min_model_dice_whole")),
        "coverage_standard": _num(plans.get("recurrence_coverage_standard")),
        "coverage_model": _num(plans.get("recurrence_coverage_model")),
        "coverage_standard_all": _num(plans.get("recurrence_coverage_standard_all")),
        "coverage_model_all": _num(plans.get("recurrence_coverage_model_all")),
        "volume_standard_ml": _num(plans.get("volume_standard_ml")),
        "volume_model_ml": _num(plans.get("volume_model_ml")),
        "solves": int(sum(v for v in (res.get("solves") or {}).values()
                          if isinstance(v, (int, float)))),
        "source": str(res.get("source", "")),
    })
    unc = res.get("uncertainty") or {}
    for stem, key in INTERVALS:
        ci = (unc.get(key) or {}).get("ci90") if isinstance(unc.get(key), dict) else None
        if uncertainty:
            row[f"{stem}_lo"] = _num(ci[0]) if ci else None
            row[f"{stem}_hi"] = _num(ci[1]) if ci else None
    return row


def columns(uncertainty: bool) -> tuple[str, ...]:
    """The table's columns (90 % interval bounds ``<q>_lo``/``<q>_hi`` with uncertainty)."""
    extra = tuple(f"{s}_{b}" for s, _ in INTERVALS for b in ("lo", "hi")) if uncertainty else ()
    return COLUMNS + extra


def _failed_row(pid: str, error: str, wall: float | None, uncertainty: bool,
                status: str = "failed") -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(columns(uncertainty))
    row.update(id=pid, status=status, error=error, wall_seconds=_num(wall))
    return row


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, InputError):
        return text or "InputError"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ---------------------------------------------------------------- the task (runs in a worker)

def _pin_threads(threads: int) -> None:
    """Pin this process's thread pools to ``threads`` (before the first kernel call)."""
    n = str(max(1, int(threads)))
    for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "OPENBLAS_NUM_THREADS"):
        os.environ[var] = n
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(n))
    with contextlib.suppress(ImportError):
        import threadpoolctl

        threadpoolctl.threadpool_limits(int(n))


def _quiet(_: str) -> None:
    pass


def _fit_task(job: Job, threads: int | None = None, uncertainty: bool = False
              ) -> dict[str, Any]:
    """Fit one patient; never raises for a Python exception (a failed row instead)."""
    if threads is not None:
        _pin_threads(threads)
    t0 = time.perf_counter()
    tb = ""
    try:

        res = run_fit(job.cfg, job.out, force=job.force, progress=False, printer=_quiet)
        row = row_from_results(job.pid, "ok", res, time.perf_counter() - t0, uncertainty)
    except Exception as e:  # noqa: BLE001 - one patient's failure is a row, not a stop
        row = _failed_row(job.pid, _one_line(e), time.perf_counter() - t0, uncertainty)
        tb = "" if isinstance(e, InputError) else traceback.format_exc()

    row["threads"] = int(_core.num_threads())
    row["_traceback"] = tb
    return row


# ---------------------------------------------------------------- engines

_DIED = ("worker process died while fitting (killed by a signal, out of memory, or a crash in "
         "native code)")


def _run_local(jobs: Sequence[Job], workers: int, threads: int,
               on_row: Callable[[dict[str, Any]], None], uncertainty: bool = False,
               task: Callable[..., dict[str, Any]] = _fit_task) -> None:
    """Run ``task(job, None, uncertainty)`` for each job on a spawn process pool of ``workers``
    processes pinned to ``threads`` threads each; ``on_row`` gets each returned row, or a failed
    row for a job whose worker died (see the module header)."""
    pending: deque[Job] = deque(jobs)
    suspects: deque[Job] = deque()  # in flight when a pool broke: each is rerun alone
    idle_breaks = 0  # pools that broke without finishing anything (e.g. workers cannot start)
    while pending or suspects:
        progressed = _PoolRound(workers, threads, on_row, uncertainty, task).run(pending,
                                                                                 suspects)
        idle_breaks = 0 if progressed else idle_breaks + 1
        if idle_breaks >= 3:  # the pool cannot run anything: fail the rest, do not spin
            for j in [*suspects, *pending]:
                on_row(_failed_row(j.pid, "worker processes could not run (the process pool "
                                   "broke three times without finishing a patient)", None,
                                   uncertainty))
            return


class _PoolRound:
    """One process pool, used until the queues are empty or a worker dies (the pool breaks)."""

    def __init__(self, workers: int, threads: int, on_row: Callable[[dict[str, Any]], None],
                 uncertainty: bool, task: Callable[..., dict[str, Any]]) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.workers, self.on_row, self.unc, self.task = workers, on_row, uncertainty, task
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                        initializer=_pin_threads, initargs=(threads,))
        self.inflight: dict[Any, tuple[Job, float]] = {}
        self.broken: list[tuple[Job, float]] = []
        self.ok = True
        self.progressed = False

    def submit(self, queue: deque[Job]) -> None:
        from concurrent.futures.process import BrokenProcessPool

        j = queue.popleft()
        try:
            self.inflight[self.pool.submit(self.task, j, None, self.unc)] = (j, time.time())
        except BrokenProcessPool:
            queue.appendleft(j)
            self.ok = False

    def collect(self, f: Any) -> None:
        from concurrent.futures.process import BrokenProcessPool

        j, t0 = self.inflight.pop(f)
        try:
            row = f.result()
        except BrokenProcessPool:
            self.broken.append((j, t0))
            self.ok = False
            return
        except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be unpickled
            row = _failed_row(j.pid, _one_line(e), time.time() - t0, self.unc)
        self.progressed = True
        self.on_row(row)

    def run(self, pending: deque[Job], suspects: deque[Job]) -> bool:
        """Work the queues; returns whether any patient finished (ok or failed)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        try:
            while self.ok and (pending or suspects or self.inflight):
                if suspects:
                    if not self.inflight:
                        self.submit(suspects)
                else:
                    while self.ok and pending and len(self.inflight) < self.workers:
                        self.submit(pending)
                if self.inflight:
                    for f in wait(list(self.inflight), return_when=FIRST_COMPLETED).done:
                        self.collect(f)
            if not self.ok:  # every task still in flight fails with the pool
                for f in wait(list(self.inflight)).done:
                    self.collect(f)
                if len(self.broken) == 1:
                    j, t0 = self.broken[0]
                    self.on_row(_failed_row(j.pid, _DIED, time.time() - t0, self.unc))
                    self.progressed = True
                else:
                    suspects.extendleft(j for j, _ in reversed(self.broken))
        except BaseException:
            _stop_pool(self.pool)
            raise
        self.pool.shutdown(wait=True)
        return self.progressed


def _stop_pool(pool: Any) -> None:
    """Cancel queued tasks and terminate the pool's worker processes (which this run started)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=5)


def _import_ray() -> Any:
    extras.require("ray", "--engine ray")
    try:
        import ray
    except ImportError:
        raise InputError("the ray engine needs the optional extra: pip install 'gbm[ray]'") \
            from None
    return ray


def _check_address(address: str) -> None:
    """A joined cluster's GCS must accept a TCP connection (ray.init would retry for minutes)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    require(bool(sep) and bool(host) and port.isdigit(),
            f"--address: expected HOST:PORT (or ray://HOST:PORT, auto), got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as e:
        raise InputError(f"--address {address}: cannot reach a Ray cluster there "
                         f"({e.strerror or e})") from None


def _start_ray(address: str | None, workers: int) -> tuple[Any, bool]:
    """Connect to (or start) Ray; returns (ray, started_here). InputError if unreachable."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    if address is not None:
        _check_address(address)
    try:
        if address is not None:
            with _stderr_unless_failed():  # Ray's C++ client logs every retry to fd 2
                ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        where = f"--address {address}" if address is not None else "local Ray cluster"
        raise InputError(f"{where}: cannot connect to Ray ({_one_line(e)})") from None
    return ray, True


@contextlib.contextmanager
def _stderr_unless_failed() -> Iterator[None]:
    """Hold what is written to file descriptor 2 meanwhile; replay it unless an exception
    leaves (then the exception's one line is the whole story)."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                buf.seek(0)
                sys.stderr.write(buf.read().decode(errors="replace"))


def _run_ray(ray: Any, jobs: Sequence[Job], threads: int, joined: bool, unc: bool,
             on_row: Callable[[dict[str, Any]], None]) -> None:
    """One Ray task per patient; a task that Ray reports lost (worker killed) is a failed row."""
    remote = ray.remote(num_cpus=1, max_retries=0)(_fit_task)
    if joined:  # reserve the CPUs each task uses, so Ray packs cores // threads tasks per node
        remote = remote.options(num_cpus=threads)
    refs = {remote.remote(j, threads, unc): (j, time.time()) for j in jobs}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for r in done:
                j, t0 = refs.pop(r)
                try:
                    on_row(ray.get(r))
                except Exception as e:  # noqa: BLE001 - RayError: worker crashed, node lost
                    on_row(_failed_row(j.pid, f"ray task failed: {_one_line(e)}",
                                       time.time() - t0, unc))
    except BaseException:
        for r in refs:
            with contextlib.suppress(Exception):
                ray.cancel(r, force=True)
        raise


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------- the run

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
    method : {"fd", "pinn"}
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
    cfg = fit_config if fit_config is not None else FitConfig()
    cfg = dataclasses.replace(cfg, method=method)
    _check_template(cfg)
    out_p = Path(out).resolve()
    kind, patients, ignored = discover(source, exclude=out_p)
    require(not out_p.is_file(), f"--out {out}: is a file")
    if out_p.is_dir() and any(out_p.iterdir()) and not force:
        require((out_p / "cohort.json").exists() or (out_p / "patients").is_dir(),
                f"--out {out} exists and is not a gbm cohort folder; use --force to write "
                "into it")
    pdir = out_p / "patients"
    jobs: list[Job] = []
    existing: dict[str, dict[str, Any]] = {}
    want = _settings(cfg)
    for pid, fields in patients:
        res_file = pdir / pid / "results.json"
        if res_file.is_file() and not force:
            try:
                res = json.loads(res_file.read_text())
            except (OSError, json.JSONDecodeError):
                res = None  # unreadable: redo
            if isinstance(res, dict):
                got = _settings(res.get("config") or {})
                diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
                require(not diff, f"--out {out}: patient {pid} was fitted with other settings "
                        f"({', '.join(f'{k} {got.get(k)!r} != {want.get(k)!r}' for k in diff[:3])})"
                        "; use --force to refit or another --out")
                existing[pid] = res
                continue
        jobs.append(Job(pid, dataclasses.replace(cfg, **fields), str(pdir / pid), force))
    started_ray = False
    ray = None
    if engine == "ray":
        ray, started_ray = _start_ray(address, workers)
    n_threads = threads or (1 if address is not None else max(1, _cores() // workers))
    try:
        out_p.mkdir(parents=True, exist_ok=True)
        with _lock(out_p):
            return _execute(out_p, source, kind, patients, ignored, jobs, existing, cfg, method,
                            engine, workers, n_threads, address, force, progress, ray,
                            versions())
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


def _execute(out: Path, source: Any, kind: str, patients: list[tuple[str, dict[str, Any]]],
             ignored: list[str], jobs: list[Job], existing: dict[str, dict[str, Any]],
             cfg: FitConfig, method: str, engine: str, workers: int, threads: int,
             address: str | None, force: bool, progress: bool, ray: Any,
             vers: dict[str, Any]) -> dict[str, Any]:
    from tqdm import tqdm

    unc = bool(cfg.uncertainty)
    pdir = out / "patients"
    pdir.mkdir(exist_ok=True)
    for j in jobs:
        _clean_patient(pdir, j.pid)
    rows: dict[str, dict[str, Any]] = {}
    tracebacks: dict[str, str] = {}
    for pid, res in existing.items():
        rows[pid] = row_from_results(pid, "skipped-existing", res,
                                     (res.get("seconds") or {}).get("total"), unc)
    bar = tqdm(total=len(patients), initial=len(existing), unit="patient", desc="gbm cohort",
               disable=not progress, dynamic_ncols=True)

    def on_row(row: dict[str, Any]) -> None:
        tb = row.pop("_traceback", "")
        if tb:
            tracebacks[row["id"]] = tb
        rows[row["id"]] = row
        bar.update(1)
        n_failed = sum(r["status"] == "failed" for r in rows.values())
        bar.set_postfix(failed=n_failed, refresh=False)

    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    interrupted = False
    try:
        if jobs and engine == "local":
            _run_local(jobs, workers, threads, on_row, unc)
        elif jobs:
            _run_ray(ray, jobs, threads, address is not None, unc, on_row)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    order = [pid for pid, _ in patients]
    table = [rows.get(pid) or _failed_row(pid, "not finished (interrupted)", None, unc,
                                          status="interrupted") for pid in order]
    cols = columns(unc)
    io.write_bytes_atomic(out / "cohort.csv", _csv_bytes(table, cols), force=True)
    tables = ["cohort.csv"]
    parquet = _parquet_bytes(table, cols)
    if parquet is not None:
        io.write_bytes_atomic(out / "cohort.parquet", parquet, force=True)
        tables.append("cohort.parquet")
    counts = {s: sum(r["status"] == s for r in table) for s in STATUSES}
    fitted = counts["ok"] + counts["failed"]
    extra_versions = {}
    for mod in ("ray", "pyarrow"):
        m = sys.modules.get(mod)
        if m is not None:
            extra_versions[mod] = getattr(m, "__version__", "")
    summary: dict[str, Any] = {
        "source": str(Path(source).resolve()), "source_kind": kind, "out": str(out),
        "method": method, "engine": engine, "workers": workers,
        "threads_per_patient": threads, "address": address,
        "ray_cluster": (None if engine != "ray" else "joined" if address else "local"),
        "fit_config": _settings(cfg), "patients": len(table),
        "totals": dict(counts, fitted_this_run=fitted, wall_seconds=wall,
                       patients_per_hour=(fitted / wall * 3600 if fitted and wall > 0 else None),
                       fit_seconds_sum=sum(r["wall_seconds"] or 0.0 for r in table
                                           if r["status"] in ("ok", "failed"))),
        "interrupted": interrupted, "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tables": tables,
        "parquet": "written" if parquet is not None else "not written: pyarrow is not installed",
        "ignored_folders": ignored,
        "failures": [{"id": r["id"], "error": r["error"], "traceback": tracebacks.get(r["id"], "")}
                     for r in table if r["status"] == "failed"],
        "versions": dict(vers, **extra_versions),
    }
    if not interrupted:

        summary["report"] = write_report(out, table, summary)
    io.write_json_atomic(out / "cohort.json", summary, force=True)
    if interrupted:
        raise KeyboardInterrupt
    return dict(summary, rows=table)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.8g}"
    return str(v)


def _csv_bytes(rows: list[dict[str, Any]], cols: Sequence[str]) -> bytes:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    return buf.getvalue().encode()


def _parquet_bytes(rows: list[dict[str, Any]], cols: Sequence[str]) -> bytes | None:
    """The table as Parquet bytes, or None without pyarrow (CSV-only fallback)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    arrays = {}
    for c in cols:
        t = pa.string() if c in _STRING_COLUMNS else pa.int64() if c in _INT_COLUMNS \
            else pa.float64()
        arrays[c] = pa.array([r.get(c) for r in rows], type=t)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    return bytes(sink.getvalue().to_pybytes())


# ---------------------------------------------------------------- CLI
