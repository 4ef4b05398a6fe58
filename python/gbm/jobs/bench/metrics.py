"""Metrics of the ``gbm bench`` study, read by both the orchestrator (:mod:`gbm.jobs.bench.study`)
and the report (:mod:`gbm.jobs.bench.report`): time to a given accuracy, and the PINN's log read
back.

Errors are in percent; times in seconds (or any increasing counter, e.g. forward solves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["read_log_csv", "time_to_within"]


def time_to_within(seconds: list[float], dw_err: list[float], rho_err: list[float],
                   pct: float) -> float | None:
    """First time after which both |errors| (in %) stay <= ``pct`` to the end (None if the last
    estimate is outside)."""
    t = None
    for s, a, b in zip(seconds, dw_err, rho_err):
        if abs(a) <= pct and abs(b) <= pct:
            if t is None:
                t = s
        else:
            t = None
    return t


def read_log_csv(path: Path) -> list[dict[str, Any]]:
    """A PINN run's log.csv as the rows of its in-memory log (phase names back to codes)."""
    import csv

    from gbm.pinn.train import PHASES  # torch: the PINN is an optional extra

    with path.open(newline="") as f:
        return [{k: (PHASES.get(v, 0.0) if k == "phase" else float(v)) for k, v in r.items()}
                for r in csv.DictReader(f)]
