"""Radiotherapy target volumes from a segmentation and a fitted model, and their recurrence coverage.

Definitions (all masks are boolean arrays on one grid, the input image grid; spacing in mm)
------------------------------------------------------------------------------------------------
* Margin (:func:`dilate_mm`): the voxels whose centre lies within ``margin_mm`` of the centre of a
  voxel of the mask, Euclidean distance in real millimetres from the voxel spacing (anisotropic grids
  allowed), i.e. ``distance_transform_edt(~mask, sampling=spacing) <= margin_mm`` (with a relative
  tolerance of 1e-9 so a distance that equals the margin up to rounding counts as inside).  Peers
  dilate by a number of *voxels* and call it mm, which is only right on a 1 mm isotropic grid.  The
  transform runs on the mask's bounding box grown by ``ceil(margin/spacing) + 1`` voxels per axis:
  every voxel outside that box is farther than the margin along one axis alone, and every mask voxel
  is inside it, so the result is identical to the transform of the whole image.
* Standard CTV (:func:`standard_plan`): tumour core (necrosis + enhancing) dilated by 15 mm, cut to
  the brain mask (PredictGBM's plan, with the margin in mm instead of voxels).
* Model CTV (:func:`model_plan`): the ``k`` brain voxels with the highest predicted density ``u``,
  ``k`` usually the standard CTV's voxel count (the same volume); ties are broken deterministically,
  by ``u`` descending, then by flat C-order index ascending.
* Iso-density plans (:func:`iso_plans`): ``(u >= level) & brain`` for levels in (0, 1).
* Coverage (:func:`coverage`): ``|R & P| / |R|`` for a recurrence mask R and a plan P; ``None`` when
  R is empty.  PredictGBM reports it for the enhancing recurrence and for all tumour labels minus the
  resection cavity; :func:`plan_report` (a :class:`PlanReport`) uses its key names.
* Volumes in millilitres: voxel count times the voxel volume (product of the spacing, mm^3) / 1000.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage

from gbm.errors import InputError, require

#: Relative tolerance of the margin test ``distance <= margin``.
_MARGIN_RTOL = 1e-9


def _spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    try:
        sp = tuple(float(h) for h in spacing)
    except (TypeError, ValueError):
        raise InputError(f"spacing must be a sequence of {ndim} numbers (mm), got {spacing!r}") from None
    require(len(sp) == ndim, f"spacing must have {ndim} entries (one per axis), got {len(sp)}")
    require(all(math.isfinite(h) and h > 0 for h in sp),
            f"spacing must be finite and > 0 mm, got {sp}")
    return sp


def _mask(name: str, a: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    m = np.asarray(a)
    if shape is not None:
        require(m.shape == shape, f"{name} has shape {m.shape}, expected {shape}")
    return m.astype(bool, copy=False)


def dilate_mm(mask: np.ndarray, spacing: Sequence[float], margin_mm: float) -> np.ndarray:
    """Grow a mask by a margin in real millimetres.

    Parameters
    ----------
    mask : ndarray, bool, shape (nx, ny, nz) (any dimension works)
    spacing : sequence of float
        Voxel size in mm per axis (anisotropic allowed).
    margin_mm : float
        Margin in mm, >= 0 (0 returns a copy of the mask).

    Returns
    -------
    ndarray, bool, same shape
        Voxels whose centre is within ``margin_mm`` (Euclidean, mm) of the centre of a mask voxel.
    """
    m = _mask("mask", mask)
    sp = _spacing(spacing, m.ndim)
    margin = float(margin_mm)
    require(math.isfinite(margin) and margin >= 0, f"margin must be finite and >= 0 mm, got {margin_mm}")
    out = np.zeros(m.shape, dtype=bool)
    if not m.any():
        return out
    if margin == 0:
        return m.copy()
    nz = np.nonzero(m)
    box = []
    for a in range(m.ndim):
        grow = math.ceil(margin / sp[a]) + 1
        box.append(slice(max(int(nz[a].min()) - grow, 0), min(int(nz[a].max()) + grow + 1, m.shape[a])))
    sub = tuple(box)
    dist = ndimage.distance_transform_edt(~m[sub], sampling=sp)
    out[sub] = dist <= margin * (1.0 + _MARGIN_RTOL)
    return out


def standard_plan(core: np.ndarray, brain: np.ndarray, spacing: Sequence[float],
                  margin_mm: float = 15.0) -> np.ndarray:
    """Standard CTV: the tumour core dilated by ``margin_mm`` (real mm), cut to the brain.

    Parameters
    ----------
    core, brain : ndarray, bool, shape (nx, ny, nz)
        Tumour core (necrosis + enhancing) and brain mask on the input grid.
    spacing : sequence of float
        Voxel size, mm.
    margin_mm : float
        CTV margin, mm, > 0 (default 15 mm).

    Returns
    -------
    ndarray, bool, same shape (empty when the core is empty)
    """
    margin = float(margin_mm)
    require(math.isfinite(margin) and margin > 0,
            f"--margin-mm must be > 0 (a finite margin in mm), got {margin_mm}")
    c = _mask("core", core)
    b = _mask("brain", brain, c.shape)
    return dilate_mm(c, spacing, margin) & b


def model_plan(u: np.ndarray, brain: np.ndarray, k: int) -> np.ndarray:
    """Model CTV: the ``k`` brain voxels with the highest predicted density.

    Parameters
    ----------
    u : ndarray, float, shape (nx, ny, nz)
        Predicted tumour cell density on the input grid (finite inside the brain).
    brain : ndarray, bool, same shape
    k : int
        Number of voxels (usually the standard CTV's voxel count); clipped to the brain's voxel
        count; ``k <= 0`` gives an empty plan.

    Returns
    -------
    ndarray, bool, same shape
        Exactly ``min(max(k, 0), brain.sum())`` voxels, all inside the brain.  Ties in ``u`` are
        broken by flat C-order index, lower index first.
    """
    uu = np.asarray(u, dtype=np.float64)
    b = _mask("brain", brain, uu.shape)
    out = np.zeros(uu.shape, dtype=bool)
    kk = int(k)
    if kk <= 0:
        return out
    idx = np.flatnonzero(b)
    vals = uu.ravel()[idx]
    require(bool(np.isfinite(vals).all()), "u (predicted density) has non-finite values in the brain")
    kk = min(kk, idx.size)
    order = np.argsort(-vals, kind="stable")  # stable: equal u keep ascending flat index
    out.ravel()[idx[order[:kk]]] = True
    return out


def iso_plans(u: np.ndarray, brain: np.ndarray, levels: Sequence[float]) -> dict[float, np.ndarray]:
    """Iso-density plans ``{level: (u >= level) & brain}``.

    Parameters
    ----------
    u : ndarray, float, shape (nx, ny, nz)
    brain : ndarray, bool, same shape
    levels : sequence of float
        Density levels, each strictly between 0 and 1.
    """
    uu = np.asarray(u, dtype=np.float64)
    b = _mask("brain", brain, uu.shape)
    out: dict[float, np.ndarray] = {}
    for level in levels:
        lv = float(level)
        require(0.0 < lv < 1.0, f"iso-density level must be in (0, 1), got {level}")
        out[lv] = (uu >= lv) & b
    return out


def coverage(recurrence: np.ndarray, plan: np.ndarray) -> float | None:
    """Recurrence coverage ``|R & P| / |R|``; ``None`` when the recurrence R is empty."""
    r = _mask("recurrence", recurrence)
    p = _mask("plan", plan, r.shape)
    n = int(np.count_nonzero(r))
    if n == 0:
        return None
    return int(np.count_nonzero(r & p)) / n


@dataclass(frozen=True)
class PlanReport:
    """Volumes of the standard and the model plan and their coverage of a recurrence.

    Attributes (volumes in ml, voxel counts, coverages fractions in [0, 1]): ``voxel_volume_ml``,
    ``voxels_standard``, ``voxels_model``, ``volume_standard_ml``, ``volume_model_ml``,
    ``overlap_ml`` (both plans); for each recurrence set (suffix ``""`` for the enhancing
    recurrence, ``"_all"`` for all tumour labels minus the resection cavity):
    ``recurrence[_all]_volume_ml``, ``recurrence[_all]_voxels``,
    ``recurrence_coverage_{standard,model}[_all]``, ``missed_voxels_{standard,model}[_all]`` and
    ``missed_ml_{standard,model}[_all]`` (recurrence outside the plan). Every recurrence entry is
    None when that set was not given; coverages are also None when the set is empty. The names
    are PredictGBM's; :meth:`to_json` gives them in this order.
    """

    voxel_volume_ml: float
    voxels_standard: int
    voxels_model: int
    volume_standard_ml: float
    volume_model_ml: float
    overlap_ml: float
    recurrence_volume_ml: float | None = None
    recurrence_voxels: int | None = None
    recurrence_coverage_standard: float | None = None
    missed_voxels_standard: int | None = None
    missed_ml_standard: float | None = None
    recurrence_coverage_model: float | None = None
    missed_voxels_model: int | None = None
    missed_ml_model: float | None = None
    recurrence_all_volume_ml: float | None = None
    recurrence_all_voxels: int | None = None
    recurrence_coverage_standard_all: float | None = None
    missed_voxels_standard_all: int | None = None
    missed_ml_standard_all: float | None = None
    recurrence_coverage_model_all: float | None = None
    missed_voxels_model_all: int | None = None
    missed_ml_model_all: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object (every attribute, in order)."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PlanReport:
        """Read back :meth:`to_json` (keys other than the attributes are ignored)."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def plan_report(standard: np.ndarray, model: np.ndarray, spacing: Sequence[float],
                recurrence_enhancing: np.ndarray | None = None,
                recurrence_all: np.ndarray | None = None) -> PlanReport:
    """Volumes of both plans and, with a follow-up segmentation, their recurrence coverage.

    Parameters
    ----------
    standard, model : ndarray, bool, shape (nx, ny, nz)
        Standard and model CTV.
    spacing : sequence of float
        Voxel size, mm.
    recurrence_enhancing : ndarray, bool, or None
        Enhancing recurrence (PredictGBM's ``recurrence_coverage_*``).
    recurrence_all : ndarray, bool, or None
        All tumour labels of the follow-up minus the resection cavity (``recurrence_coverage_*_all``).

    Returns
    -------
    PlanReport
    """
    s = _mask("standard plan", standard)
    m = _mask("model plan", model, s.shape)
    sp = _spacing(spacing, s.ndim)
    voxel_ml = float(np.prod(sp)) / 1000.0
    ns, nm = int(np.count_nonzero(s)), int(np.count_nonzero(m))
    rep: dict[str, Any] = {
        "voxel_volume_ml": voxel_ml,
        "voxels_standard": ns,
        "voxels_model": nm,
        "volume_standard_ml": ns * voxel_ml,
        "volume_model_ml": nm * voxel_ml,
        "overlap_ml": int(np.count_nonzero(s & m)) * voxel_ml,
    }
    for suffix, rec, name in (("", recurrence_enhancing, "recurrence_enhancing"),
                              ("_all", recurrence_all, "recurrence_all")):
        if rec is None:
            continue
        r = _mask(name, rec, s.shape)
        nr = int(np.count_nonzero(r))
        rep[f"recurrence{suffix}_volume_ml"] = nr * voxel_ml
        rep[f"recurrence{suffix}_voxels"] = nr
        for plan, p in (("standard", s), ("model", m)):
            missed = int(np.count_nonzero(r & ~p))
            rep[f"recurrence_coverage_{plan}{suffix}"] = coverage(r, p)
            rep[f"missed_voxels_{plan}{suffix}"] = missed
            rep[f"missed_ml_{plan}{suffix}"] = missed * voxel_ml
    return PlanReport(**rep)
