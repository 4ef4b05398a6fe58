"""The grids of a patient fit, shared by the FD-based fit and the PINN: the solve sub-box around the
tumour on the input grid (fine level) and, when asked, a coarse copy (maps block-averaged, phase
field re-solved, a coarse voxel in a region when half its block is); one observation model per
scan on each; the start and search box of the unknowns; the tumour's start on a level (the
paper's Gaussian at the origin, or the density at the first scan, :mod:`.start`); and the FD solve
of a search point on a level with its time stepping (:class:`Stepping`). Units: mm, days.

Time stepping of the fit's solves
---------------------------------
``strang-rkl2`` (default; :class:`gbm._core.FisherKpp`, ``rust/fisher_kpp/rkl.rs``): Strang
splitting, the logistic reaction exact, the diffusion by RKL2 super-time-steps; second order.
Step: rho dt = min(:data:`RHO_DT`, (:data:`STEP_SPREAD_MM` / lambda)^2), i.e. 0.5 unless a step
would spread the start by sqrt(Dw dt) = lambda sqrt(rho dt) > 2.5 mm (the paper's Gaussian has a
1/e radius of 3.2 mm; at lambda 5 mm and rho dt 0.5 the splitting error of the first steps stays
visible, benches/RESULTS.md "Time integration"). Stages: the fewest stable at 0.9 of the RKL2
bound. Measured front error at 1 mm (lambda 2.28 mm, 300 days): 0.01 mm with 120 stencil sweeps.
``euler`` (the fit of gbm 0.1.0 and before, kept to reproduce it): explicit Euler at ``safety`` x the stability
bound (the front lags 0.2 mm at 1 mm and 0.76 mm at 2 mm at safety 0.5, with 483 / 131 sweeps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gbm import _core
from gbm.errors import InputError, require
from gbm.model.coarse import (
    block_average,
    block_fraction,
    coarse_affine,
    coarse_factors,
    roi_bounds,
    sub_geometry,
)
from gbm.model.geometry import Geometry, from_maps
from gbm.problem.segmentation.labels import whole_union
from gbm.problem.segmentation.model import (
    SegmentationModel,
    classes_from_regions,
)
from gbm.problem.segmentation.start import FirstScanStart
from gbm.problem.segmentation.unknowns import (
    PatientFitSettings,
    Physical,
    Unknowns,
    equivalent_radius,
)


@dataclass(frozen=True, eq=False)
class FitLevel:
    """One grid of the fit: the solve sub-box, its coefficients and one observation model per
    scan.

    Attributes
    ----------
    name : str
    geom : Geometry
        The solve sub-box (phase field set).
    full : Geometry
        The whole brain box on this grid (for world <-> local of the fine level).
    models : list of SegmentationModel
        One per scan, on ``geom``'s grid.
    first : FirstScanStart or None
        The first scan's density on ``geom``'s grid (``start="first-scan"`` only).
    """

    name: str
    geom: Geometry
    full: Geometry
    models: list[SegmentationModel]
    kfac: np.ndarray
    phi: np.ndarray
    first: FirstScanStart | None = None

    @property
    def norm(self) -> float:
        """Labelled whole-tumour voxels over all scans (misfits are per labelled voxel)."""
        return float(max(sum(m.n_whole for m in self.models), 1))


def make_levels(fine_full: Geometry, regions_box: Sequence[Any], settings: PatientFitSettings,
                full_maps: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray] | None,
                regions_full: Sequence[Any] | None,
                slice_index: int | None = None, epsilon: float | None = None,
                cache: bool = False) -> list[FitLevel]:
    """The fine level (input grid) and, when ``settings.coarse_mm`` is coarser than the input
    grid, the coarse level first.

    Parameters
    ----------
    fine_full : Geometry
        The brain box on the input grid, phase field set.
    regions_box : list of Regions-like (``core``, ``whole``, ``cavity`` boolean arrays)
        Per scan, cropped to ``fine_full``'s box.
    full_maps : (wm, gm, csf or None, affine) on the full input grid, for the coarse level.
    regions_full : per-scan regions on the full input grid, for the coarse level.
    cache : reuse the coarse level's phase field from the user's cache
        (:mod:`gbm.model.phase_cache`).
    """

    lo, hi = roi_bounds(fine_full, whole_union(regions_box), settings.crop_mm)
    first = settings.start == "first-scan"
    levels = [make_level("fine", fine_full, regions_box, lo, hi, settings.ratio, first)]
    spacing3 = tuple(fine_full.spacing) + ((1.0,) if fine_full.ndim == 2 else ())
    f = coarse_factors(spacing3, settings.coarse_mm, fine_full.ndim) if settings.coarse_mm else None
    if f is not None and max(f) > 1 and full_maps is not None and regions_full is not None:
        wm, gm, csf, aff = full_maps
        caff = coarse_affine(aff, f)
        cw, cg = block_average(wm, f), block_average(gm, f)
        cc = block_average(csf, f) if csf is not None else None
        cgeom = from_maps(cw, cg, caff, cc, slice_index=slice_index, margin=2,
                          source=f"{fine_full.source} (coarse x{f})")
        eps = 0.5 * min(cgeom.spacing) if epsilon is None else epsilon * max(f)
        cgeom = cgeom.with_phase_field(epsilon=eps, cache=cache)
        cregs = []
        for r in regions_full:
            cregs.append(Regions(
                core=cgeom.crop(block_fraction(r.core, f) >= 0.5),
                whole=cgeom.crop(block_fraction(r.whole, f) >= 0.5),
                cavity=cgeom.crop(block_fraction(r.cavity, f) >= 0.5)))
        cu = whole_union(cregs)
        if cu.any():
            clo, chi = roi_bounds(cgeom, cu, settings.crop_mm)
            levels.insert(0, make_level(f"coarse ({'x'.join(str(v) for v in f)} blocks, "
                                    f"{max(cgeom.spacing):g} mm)", cgeom, cregs, clo, chi,
                                    settings.ratio, first))
    return levels


@dataclass(frozen=True, eq=False)
class Regions:
    """The regions a fit uses (boolean arrays of one shape): core, whole tumour, cavity."""

    core: np.ndarray
    whole: np.ndarray
    cavity: np.ndarray


def box_regions(geom: Geometry, regions: Any) -> Regions:
    """A scan's full-grid regions (``core``, ``whole``, ``cavity``) cropped to ``geom``'s box."""
    return Regions(core=geom.crop(regions.core), whole=geom.crop(regions.whole),
                   cavity=geom.crop(regions.cavity))


def make_level(name: str, full: Geometry, regions: Sequence[Any], lo: Sequence[int],
           hi: Sequence[int], ratio: float = 10.0, first_scan: bool = False) -> FitLevel:
    """One level on the sub-box ``[lo, hi)`` of ``full``; with ``first_scan`` it carries the
    first scan's density (:class:`FirstScanStart`)."""
    geom = sub_geometry(full, lo, hi)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    assert geom.phi is not None
    valid = geom.phi >= 0.5
    models = []
    for r in regions:
        core, whole = np.asarray(r.core)[sl], np.asarray(r.whole)[sl]
        cav = np.asarray(r.cavity)[sl]
        cls = classes_from_regions(core, whole, valid & ~cav)
        models.append(SegmentationModel(cls, core=core & ~cav, whole=whole & ~cav))
    kfac = np.ascontiguousarray(geom.tissue_factor(ratio))
    first = None
    if first_scan:
        r0 = regions[0]
        first = FirstScanStart(np.asarray(r0.core)[sl], np.asarray(r0.whole)[sl], geom.spacing,
                               kfac)
    return FitLevel(name, geom, full, models, kfac,
                    np.ascontiguousarray(geom.phi, dtype=np.float64), first)


def start_state(level: FitLevel, p: Physical, origin_local: np.ndarray) -> np.ndarray:
    """u where the solve of ``p`` on ``level`` starts: the paper's Gaussian at ``origin_local``
    (``level``'s local mm), or the density at the first scan (``level.first``)."""
    if p.from_first_scan:
        assert level.first is not None, "a first-scan start on a level without one"
        return level.first.density(p.lam, p.theta_c, p.theta_e)
    return level.geom.initial_condition(origin_local)


#: Time integrators of the fit's solves (``--scheme``; see the module header).
SCHEMES = ("strang-rkl2", "euler")
#: Largest rho dt of a Strang-RKL2 step of the fit.
RHO_DT = 0.5
#: Largest spread sqrt(Dw dt) of one Strang-RKL2 step, mm (see the module header).
STEP_SPREAD_MM = 2.5
#: RKL2 stages: the fewest with dt <= STAGE_SAFETY x their stability bound.
STAGE_SAFETY = 0.9


def strang_dt(lam: float, rho: float) -> float:
    """The fit's Strang-RKL2 step (days) at lambda (mm) and rho (1/day): rho dt =
    min(RHO_DT, (STEP_SPREAD_MM / lambda)^2)."""
    return min(RHO_DT, (STEP_SPREAD_MM / lam) ** 2) / rho


def rkl2_stages(dt: float, dt_diffusion: float, safety: float = STAGE_SAFETY) -> int:
    """The fewest RKL2 stages s >= 2 with dt <= safety dt_diffusion (s^2 + s - 2) / 4 (the
    solver's own rule, ``rust/fisher_kpp/rkl.rs``)."""
    s = 2
    while dt > safety * dt_diffusion * (s * s + s - 2) / 4:
        s += 1
    return s


@dataclass(frozen=True)
class Stepping:
    """How a solve steps in time (see the module header).

    scheme : "strang-rkl2" or "euler".
    dt : fixed step, days; None = per solve (Strang: :func:`strang_dt`; Euler: ``safety`` x
        the stability bound).
    stages : RKL2 stages per step (Strang); None = the fewest stable.
    safety : Euler's step / stability bound when ``dt`` is None.
    """

    scheme: str = "strang-rkl2"
    dt: float | None = None
    stages: int | None = None
    safety: float = 0.9

    def solver_options(self, p: Physical) -> dict[str, Any]:
        """Keyword arguments of :class:`gbm._core.FisherKpp` for a solve of ``p``."""
        if self.scheme == "euler":
            return {"scheme": "euler", "dt": self.dt, "safety": self.safety}
        dt = self.dt if self.dt is not None else strang_dt(math.sqrt(p.dw / p.rho), p.rho)
        return {"scheme": self.scheme, "dt": dt, "stages": self.stages, "safety": STAGE_SAFETY}

    def scaled(self, factor: float) -> Stepping:
        """The same steps on a time axis stretched by ``factor`` (one scan at an assumed age:
        rho dt and Dw dt, hence u at the scan and the stages' stability, are unchanged)."""
        return replace(self, dt=None if self.dt is None else self.dt * factor)

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "dt": self.dt, "stages": self.stages,
                "safety": self.safety}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Stepping | None:
        return None if d is None else cls(**d)


def solve_states(geom: Geometry, kfac: np.ndarray, phi: np.ndarray, p: Physical,
                 origin_local: np.ndarray, times: Sequence[float],
                 stepping: Stepping | None = None, u0: np.ndarray | None = None
                 ) -> tuple[list[np.ndarray], int]:
    """FD solve from ``u0`` (default: the paper's Gaussian at ``origin_local``, ``geom``'s local
    mm); u at ``times`` (solver days, see :meth:`Physical.solve_times`) and the steps taken.
    ``stepping``: default :class:`Stepping()` (Strang-RKL2 at :func:`strang_dt`)."""

    start = geom.initial_condition(origin_local) if u0 is None else u0
    opts = (stepping or Stepping()).solver_options(p)
    s = _core.FisherKpp(start, p.dw * kfac, phi, list(geom.spacing), p.rho, **opts)
    out = []
    for t in times:
        left = s.steps_until(float(t))
        if left:
            s.advance(left)
        out.append(s.state(float(t)))
    return out, int(s.steps)


def start_and_box(fine: FitLevel, fine_full: Geometry, regions_box: Sequence[Any],
                  days_rel: Sequence[float], settings: PatientFitSettings) -> Unknowns:
    """The search box: origin start at the first scan's core centroid (whole tumour when it has
    no core), origin box = its whole-tumour bounding box grown by ``origin_box_mm``."""
    g = fine.geom
    first = regions_box[0]
    core, whole = np.asarray(first.core, bool), np.asarray(first.whole, bool)
    require(whole.any(), "the first scan has no whole-tumour voxels in the brain box")
    pick = core if core.any() else whole
    sp = np.asarray(fine_full.spacing)
    centroid_full = np.argwhere(pick).mean(axis=0) * sp     # fine_full's local mm
    idx = np.argwhere(whole)
    lo_full = idx.min(axis=0) * sp - settings.origin_box_mm
    hi_full = idx.max(axis=0) * sp + settings.origin_box_mm
    shift = (np.asarray(g.offset[:g.ndim]) - np.asarray(fine_full.offset[:g.ndim])) * sp
    box_hi = (np.asarray(g.shape) - 1) * sp
    o_lo = np.clip(lo_full - shift, 0, box_hi)
    o_hi = np.clip(hi_full - shift, 0, box_hi)
    o0 = np.clip(centroid_full - shift, o_lo, o_hi)
    vv = fine_full.voxel_volume
    r1 = equivalent_radius(int(whole.sum()), vv, g.ndim)
    rl = equivalent_radius(int(np.asarray(regions_box[-1].whole, bool).sum()), vv, g.ndim)
    if r1 <= 0:
        raise InputError("the first scan's whole tumour is empty")
    return Unknowns(g.ndim, days_rel, o0, o_lo, o_hi, r1, rl, settings, first=fine.first)
