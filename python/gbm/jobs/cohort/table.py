"""The cohort table: one row per patient (:data:`COLUMNS`), made from the patient's typed
:class:`gbm.jobs.fit.report.FitReport`, written as ``cohort.csv`` (:func:`gbm.io.csv_bytes`) and,
when pyarrow is installed, ``cohort.parquet``.

A row is a dict column -> value (None for a missing value: an empty CSV cell, a Parquet null).
Units: mm, days, Dw mm^2/day, rho 1/day, ml, seconds; coverages are fractions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gbm.jobs.fit.report import FitReport, Stats

__all__ = ["COLUMNS", "INTERVALS", "STATUSES", "columns", "failed_row", "parquet_bytes",
           "row_from_report"]

#: Statuses of a row.
STATUSES = ("ok", "failed", "skipped-existing", "interrupted")
#: Quantities with a 90 % interval when the fit samples the posterior (column stem, attribute of
#: :class:`gbm.jobs.fit.report.UncertaintyReport`).
INTERVALS = (("lambda_mm", "lambda_mm"), ("rho_T", "rho_t0"), ("dw", "dw"), ("rho", "rho"),
             ("age_days", "t0_days"))
#: Columns of cohort.csv / cohort.parquet, in order (interval columns appended with
#: ``uncertainty``).
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


def columns(uncertainty: bool) -> tuple[str, ...]:
    """The table's columns (90 % interval bounds ``<q>_lo``/``<q>_hi`` with uncertainty)."""
    extra = tuple(f"{s}_{b}" for s, _ in INTERVALS for b in ("lo", "hi")) if uncertainty else ()
    return COLUMNS + extra


def _num(v: Any) -> float | None:
    """A finite number as float; None for None, booleans and non-finite values."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def row_from_report(pid: str, status: str, r: FitReport, wall: float | None,
                    uncertainty: bool = False) -> dict[str, Any]:
    """One table row from a patient's fit report (see :data:`COLUMNS`)."""
    e, first, last = r.estimates, r.scans[0], r.scans[-1]
    v = r.plans.volumes
    origin = list(e.origin_world_mm) + [None] * 3
    row: dict[str, Any] = dict.fromkeys(columns(uncertainty))
    row.update({
        "id": pid, "status": status, "error": "", "wall_seconds": _num(wall),
        "n_scans": len(r.scans),
        "lambda_mm": _num(e.lambda_mm), "rho_T": _num(e.rho_T), "dw": _num(e.dw),
        "rho": _num(e.rho), "age_days": _num(e.age_days_at_first_scan),
        "origin_x_mm": _num(origin[0]), "origin_y_mm": _num(origin[1]),
        "origin_z_mm": _num(origin[2]),
        "theta_c": _num(e.theta_c), "theta_e": _num(e.theta_e), "misfit": _num(r.misfit),
        "dice_core_first": _num(first.dice_core), "dice_whole_first": _num(first.dice_whole),
        "dice_core_last": _num(last.dice_core), "dice_whole_last": _num(last.dice_whole),
        "model_dice_min": _num(r.quality.min_model_dice_whole),
        "solves": r.total_solves, "source": r.source,
    })
    if v is not None:
        row.update({
            "coverage_standard": _num(v.recurrence_coverage_standard),
            "coverage_model": _num(v.recurrence_coverage_model),
            "coverage_standard_all": _num(v.recurrence_coverage_standard_all),
            "coverage_model_all": _num(v.recurrence_coverage_model_all),
            "volume_standard_ml": _num(v.volume_standard_ml),
            "volume_model_ml": _num(v.volume_model_ml)})
    if uncertainty:
        for stem, attr in INTERVALS:
            s: Stats | None = getattr(r.uncertainty, attr) if r.uncertainty else None
            row[f"{stem}_lo"] = _num(s.ci90[0]) if s else None
            row[f"{stem}_hi"] = _num(s.ci90[1]) if s else None
    return row


def failed_row(pid: str, error: str, wall: float | None, uncertainty: bool,
               status: str = "failed") -> dict[str, Any]:
    """The row of a patient without a fit (``error`` in one line)."""
    row: dict[str, Any] = dict.fromkeys(columns(uncertainty))
    row.update(id=pid, status=status, error=error, wall_seconds=_num(wall))
    return row


def parquet_bytes(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> bytes | None:
    """The table as Parquet bytes (exact dtypes and nulls), or None without pyarrow."""
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
