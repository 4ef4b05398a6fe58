"""``gbm cohort``: the parser and the command (the job is :func:`gbm.jobs.cohort.runner.run`)."""

from __future__ import annotations

import argparse
from typing import Any

from gbm.cli.common import add_config, add_fit_flags, add_force, add_out, add_threads, config_from
from gbm.jobs.cohort.runner import run
from gbm.jobs.fit.run import FitConfig

#: The ``gbm fit`` settings every patient's fit takes from the command line (FitConfig fields).
FIT_FIELDS = ("labels", "tissue_preset", "slice", "assume_days", "assume_speed", "forecast", "coarse_mm",
              "global_solves", "local_solves", "scheme", "phase_cache", "seed", "margin_mm",
              "uncertainty")


def register(sub: Any) -> None:
    """Add ``cohort`` to the ``gbm`` subparsers."""
    p = sub.add_parser(
        "cohort", help="fit every patient of a cohort folder or CSV manifest (local or Ray)",
        description="Run one `gbm fit` per patient of DIR (one sub-folder per patient in a "
        "layout `gbm fit --patient` reads, e.g. a folder written by `gbm synth --cohort N`) or "
        "of a CSV manifest (columns patient_id, wm, gm, csf, scans = \"seg@day;seg@day\", "
        "optional recurrence; paths relative to the CSV), on a local process pool or a Ray "
        "cluster. Writes OUT/patients/<id>/, OUT/cohort.csv (and cohort.parquet with pyarrow), "
        "OUT/report.md, OUT/figures/ and OUT/cohort.json. Rerunning resumes: finished patients "
        "are skipped, unfinished ones redone; a failing patient is recorded, not a stop.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="units: mm, days, Dw mm^2/day, rho 1/day, volumes ml, wall time s.")
    p.add_argument("source", metavar="DIR", help="cohort folder or CSV manifest")
    add_out(p, None, "output folder (resumed when it exists)", required=True)
    p.add_argument("--method", default="fd", help="fd (the FD-based fit), pinn or bilo (the "
                   "network fits, gbm fit --method pinn/bilo) (default: %(default)s)")
    p.add_argument("--engine", default="local", help="local (process pool on this machine) or "
                   "ray (optional extra gbm[ray]) (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1,
                   help="patients fitted at once: local processes, or the CPUs of a local Ray "
                   "cluster (default: %(default)s)")
    add_threads(p, "threads per patient (default: cores // workers; 1 per task on a joined Ray "
                "cluster)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join, HOST:PORT, ray://HOST:PORT or auto (default: start "
                   "a local one)")
    f = p.add_argument_group("fit settings of every patient (see gbm fit --help)")
    add_fit_flags(f, FIT_FIELDS, brief=True)
    add_config(p, "TOML file with gbm fit settings (gbm.jobs.fit.run.FitConfig, no input paths); "
               "flags override it")
    add_force(p, "refit every patient, replacing existing results")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=command)


def command(a: argparse.Namespace) -> int:
    """Fit every patient, write the tables and the report, print a one-line summary."""
    cfg = config_from(FitConfig, a, FIT_FIELDS)
    s = run(a.source, a.out, method=a.method, engine=a.engine, workers=a.workers,
            address=a.address, fit_config=cfg, force=a.force, progress=not a.no_progress,
            threads=a.threads)
    t = s["totals"]
    rate = f", {t['patients_per_hour']:.0f} patients/hour" if t["patients_per_hour"] else ""
    print(f"gbm cohort: {s['patients']} patients: {t['ok']} ok, {t['failed']} failed, "
          f"{t['skipped-existing']} skipped (existing); {t['wall_seconds']:.0f} s on "
          f"{s['engine']} x {s['workers']}{rate}; tables {', '.join(s['tables'])} -> {a.out}")
    return 0
