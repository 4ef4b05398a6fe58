"""Fit the growth model to a patient's tumour segmentations (``python -m gbm fit``).

Model: the diffuse-domain Fisher-Kolmogorov equation on the patient's tissue maps
(``rust/fisher_kpp.rs``), from the paper's Gaussian ``0.1 exp(-|x - x0|^2 / 10 mm^2)`` at the
origin x0; data: one or more segmentations read through the nested-threshold observation model
(:mod:`gbm.problem.segmentation`).

Identifiability (why the unknowns are what they are)
----------------------------------------------------
With s = rho t the equation becomes du/ds = div((D/rho) phi grad u)/phi + u(1 - u): u at a
scan depends on Dw and rho only through lambda = sqrt(Dw/rho) (mm, the infiltration length)
and rho*T (T = the tumour's age at the scan). **One scan** therefore fixes x0, lambda, rho*T and
the thresholds, and nothing else: absolute Dw and rho follow only for an assumed age
(``assume_days``: rho = rho*T / T, Dw = lambda^2 rho) or an assumed asymptotic front speed
v = 2 sqrt(Dw rho) (``assume_speed``: Dw = lambda v / 2, rho = v / (2 lambda)), and they are
reported as assumptions. **Two or more scans** with their dates add the time scale: Dw, rho and
the age at the first scan T0 are fitted.

Search coordinates (both stages)
--------------------------------
x = (x0 in the fine box's local mm, log lambda, log r1[, log g], theta_c, theta_e) where
r1 = 2 lambda rho T0 is the asymptotic front radius at the first scan (the Fisher front moves at
2 sqrt(Dw rho) = 2 lambda rho) and g = 2 lambda rho (t_last - t_first) the front's advance
between the first and the last scan (several scans only). The box of r1 is scaled by the observed
whole-tumour radius R1 ([0.3, 3] R1) and that of g by the last scan's radius, so every trial
tumour has a plausible size and no solve is wasted on a brain-filling one (solve cost grows with
lambda^2 rho T). Back: rho T0 = r1 / (2 lambda); several scans: rho = g / (2 lambda dt_scans),
T0 = rho T0 / rho, Dw = lambda^2 rho.

Stages
------
1. **Global** (cannot be fooled by the first local minimum): CMA-ES (``cma``) on a coarse grid
   (``coarse_mm``, default 2 mm: maps block-averaged, phase field re-solved, a coarse voxel
   belongs to a region when half of its block does), from the origin at the tumour core's centroid
   and the size-consistent start, over the whole box of the search coordinates. The solver picks
   its usual stable time step per solve, so a solve costs what a forward solve costs.
2. **Local**: trust-region least squares (scipy TRF, forward-difference Jacobian) of the hinge
   residuals on the input grid from the global optimum, within a box around it. One fixed time
   step (``safety`` x the stability bound at the box's largest Dw) keeps the misfit smooth.
Both stages solve only on a sub-box around the tumour (whole tumour of all scans + ``crop_mm``);
the forecast and outputs use the whole brain.

Every solve is logged (stage, parameters, misfit, Dice of core and whole tumour per scan, wall).
Deterministic for a seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gbm.errors import InputError, require
from gbm.geometry import Geometry
from gbm.problem.coarse import (
    block_average,
    block_fraction,
    coarse_affine,
    coarse_factors,
    roi_bounds,
    sub_geometry,
)
from gbm.problem.segmentation import (
    THETA_C,
    THETA_C_BOUNDS,
    THETA_E,
    THETA_E_BOUNDS,
    SegmentationModel,
    check_thresholds,
    classes_from_regions,
)

__all__ = [
    "FitLevel",
    "PatientFitResult",
    "PatientFitSettings",
    "Unknowns",
    "fit_segmentations",
    "make_levels",
]

#: Forward-difference step of the local stage's Jacobian, as a fraction of its box in each
#: coordinate (far above the 6e-8 relative rounding of the solver's f32 coefficients, see
#: gbm.inference.fd.DIFF_STEP).
DIFF_STEP = 2e-3
#: Nominal age used to put a one-scan solve on a time axis (u at the scan does not depend on it).
NOMINAL_DAYS = 100.0


@dataclass(frozen=True)
class PatientFitSettings:
    """Settings of the fit (units: mm, days).

    lambda_range : bounds of lambda = sqrt(Dw/rho), mm.
    fit_thresholds : fit theta_c, theta_e within their bounds (else fixed at theta_c, theta_e).
    ratio : Dw/Dg (fixed).
    coarse_mm : voxel size of the global stage's grid (0: no coarse grid, global stage on the
        input grid).
    crop_mm : margin of the solve sub-box around the whole tumour of all scans.
    global_solves, local_solves : solve budgets of the two stages.
    popsize : CMA-ES population (None: cma's default 4 + 3 ln n).
    safety : time step = safety x stability bound on the input grid (local stage, outputs);
        at 0.9 the explicit scheme's time error biased lambda by +25 % on a synthetic patient
        made at 0.25, at 0.45 by +0.1 % (benches/RESULTS.md).
    coarse_safety : the same on the coarse grid (at 0.9 its time error put the global optimum
        of a synthetic two-scan patient at lambda +25 %, outside the local stage's box).
    origin_box_mm : the origin is searched within the first scan's whole-tumour bounding box
        grown by this margin.
    local_frac : half-width of the local box: factors exp(+-local_frac) on lambda, r1, g;
        +-local_mm on the origin; +-0.1 on the thresholds.
    local_rounds : at most this many local boxes (a round ending on its box's edge starts a
        new box there).
    seed : CMA-ES seed.
    """

    lambda_range: tuple[float, float] = (0.5, 12.0)
    fit_thresholds: bool = False
    theta_c: float = THETA_C
    theta_e: float = THETA_E
    theta_c_range: tuple[float, float] = THETA_C_BOUNDS
    theta_e_range: tuple[float, float] = THETA_E_BOUNDS
    ratio: float = 10.0
    coarse_mm: float = 2.0
    crop_mm: float = 15.0
    global_solves: int = 500
    local_solves: int = 60
    popsize: int | None = None
    safety: float = 0.5
    coarse_safety: float = 0.5
    origin_box_mm: float = 5.0
    local_frac: float = 0.25
    local_mm: float = 4.0
    local_rounds: int = 4
    seed: int = 0

    def validate(self) -> None:
        lo, hi = self.lambda_range
        require(0 < lo < hi, f"--lambda-range needs 0 < lo < hi, got {self.lambda_range}")
        check_thresholds(self.theta_c, self.theta_e)
        for name in ("theta_c_range", "theta_e_range"):
            a, b = getattr(self, name)
            require(0 < a < b < 1, f"--{name.replace('_', '-')} needs 0 < lo < hi < 1, got "
                    f"{(a, b)}")
        require(self.theta_e_range[1] <= self.theta_c_range[0],
                "theta_e's range must lie below theta_c's")
        require(self.global_solves >= 0 and self.local_solves >= 0,
                "solve budgets must be >= 0")
        require(self.global_solves + self.local_solves > 0, "no solves allowed")
        require(0 < self.safety <= 1 and 0 < self.coarse_safety <= 1,
                f"--safety must be in (0, 1], got {self.safety}")
        require(self.coarse_mm >= 0 and self.crop_mm > 0, "coarse_mm >= 0 and crop_mm > 0")


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
    """

    name: str
    geom: Geometry
    full: Geometry
    models: list[SegmentationModel]
    kfac: np.ndarray
    phi: np.ndarray

    @property
    def norm(self) -> float:
        """Labelled whole-tumour voxels over all scans (misfits are per labelled voxel)."""
        return float(max(sum(m.n_whole for m in self.models), 1))


def make_levels(fine_full: Geometry, regions_box: Sequence[Any], settings: PatientFitSettings,
                full_maps: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray] | None,
                regions_full: Sequence[Any] | None,
                slice_index: int | None = None, epsilon: float | None = None) -> list[FitLevel]:
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
    """
    from gbm.geometry import from_maps

    union = np.zeros(fine_full.shape, dtype=bool)
    for r in regions_box:
        union |= np.asarray(r.whole, dtype=bool)
    lo, hi = roi_bounds(fine_full, union, settings.crop_mm)
    levels = [make_level("fine", fine_full, regions_box, lo, hi, settings.ratio)]
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
        cgeom = cgeom.with_phase_field(epsilon=eps)
        cregs = []
        for r in regions_full:
            cregs.append(Regions(
                core=cgeom.crop(block_fraction(r.core, f) >= 0.5),
                whole=cgeom.crop(block_fraction(r.whole, f) >= 0.5),
                cavity=cgeom.crop(block_fraction(r.cavity, f) >= 0.5)))
        cu = np.zeros(cgeom.shape, dtype=bool)
        for r in cregs:
            cu |= r.whole
        if cu.any():
            clo, chi = roi_bounds(cgeom, cu, settings.crop_mm)
            levels.insert(0, make_level(f"coarse ({'x'.join(str(v) for v in f)} blocks, "
                                    f"{max(cgeom.spacing):g} mm)", cgeom, cregs, clo, chi,
                                    settings.ratio))
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
           hi: Sequence[int], ratio: float = 10.0) -> FitLevel:
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
    return FitLevel(name, geom, full, models,
                    np.ascontiguousarray(geom.tissue_factor(ratio)),
                    np.ascontiguousarray(geom.phi, dtype=np.float64))


@dataclass(frozen=True)
class Physical:
    """The model parameters of one search point (mm, days)."""

    origin_local: np.ndarray   # fine box local mm
    lam: float                 # sqrt(Dw/rho), mm
    rho_t0: float              # rho x age at the first scan
    dw: float                  # mm^2/day (nominal for one scan)
    rho: float                 # 1/day (nominal for one scan)
    t0: float                  # age at the first scan, days (nominal for one scan)
    theta_c: float
    theta_e: float


class Unknowns:
    """The search coordinates x of the module header and their boxes."""

    def __init__(self, ndim: int, days_rel: Sequence[float], origin0: np.ndarray,
                 origin_lo: np.ndarray, origin_hi: np.ndarray, radius1: float,
                 radius_last: float, settings: PatientFitSettings) -> None:
        self.ndim = ndim
        self.days = np.asarray(days_rel, dtype=np.float64)
        self.multi = len(self.days) > 1
        self.span = float(self.days[-1] - self.days[0]) if self.multi else 0.0
        self.fit_thresholds = settings.fit_thresholds
        self.settings = settings
        lam_lo, lam_hi = settings.lambda_range
        names = [f"origin_{'xyz'[k]}_mm" for k in range(ndim)] + ["log_lambda", "log_r1"]
        lo = list(origin_lo) + [math.log(lam_lo), math.log(0.3 * radius1)]
        hi = list(origin_hi) + [math.log(lam_hi), math.log(3.0 * radius1)]
        lam0 = float(np.clip(2.0, lam_lo, lam_hi))
        x0 = list(origin0) + [math.log(lam0), math.log(1.1 * radius1)]
        if self.multi:
            names.append("log_g")
            lo.append(math.log(0.25))
            hi.append(math.log(max(2.0 * radius_last, 5.0)))
            x0.append(math.log(float(np.clip(max(radius_last - radius1, 1.0), 0.3,
                                             math.exp(hi[-1]) * 0.9))))
        if self.fit_thresholds:
            names += ["theta_c", "theta_e"]
            lo += [settings.theta_c_range[0], settings.theta_e_range[0]]
            hi += [settings.theta_c_range[1], settings.theta_e_range[1]]
            x0 += [settings.theta_c, settings.theta_e]
        self.names = names
        self.lo = np.asarray(lo, dtype=np.float64)
        self.hi = np.asarray(hi, dtype=np.float64)
        self.x0 = np.clip(np.asarray(x0, dtype=np.float64), self.lo, self.hi)

    @property
    def n(self) -> int:
        return len(self.names)

    def physical(self, x: np.ndarray) -> Physical:
        d = self.ndim
        lam = math.exp(x[d])
        r1 = math.exp(x[d + 1])
        rho_t0 = r1 / (2.0 * lam)
        k = d + 2
        if self.multi:
            g = math.exp(x[k])
            k += 1
            rho = g / (2.0 * lam * self.span)
            t0 = rho_t0 / rho
        else:
            t0 = NOMINAL_DAYS
            rho = rho_t0 / t0
        tc, te = (x[k], x[k + 1]) if self.fit_thresholds else (self.settings.theta_c,
                                                                 self.settings.theta_e)
        return Physical(np.asarray(x[:d], dtype=np.float64), lam, rho_t0, lam * lam * rho, rho,
                        t0, float(tc), float(te))

    def times(self, p: Physical) -> list[float]:
        """Solve times (days since the seed) of the scans."""
        return [p.t0 + float(d - self.days[0]) for d in self.days]

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x) - self.lo) / (self.hi - self.lo)

    def from_unit(self, z: np.ndarray) -> np.ndarray:
        return self.lo + np.clip(np.asarray(z), 0.0, 1.0) * (self.hi - self.lo)


def solve_states(geom: Geometry, kfac: np.ndarray, phi: np.ndarray, p: Physical,
                 origin_local: np.ndarray, times: Sequence[float], dt: float | None = None,
                 safety: float = 0.9) -> tuple[list[np.ndarray], int]:
    """FD solve from the Gaussian at ``origin_local`` (``geom``'s local mm); u at ``times``."""
    from gbm import _core

    s = _core.FisherKpp(geom.initial_condition(origin_local), p.dw * kfac, phi,
                        list(geom.spacing), p.rho, safety=safety, dt=dt)
    out = []
    for t in times:
        left = s.steps_until(float(t))
        if left:
            s.advance(left)
        out.append(s.state(float(t)))
    return out, int(s.steps)


@dataclass
class PatientFitResult:
    """Outcome of :func:`fit_segmentations`."""

    x: np.ndarray
    params: Physical
    unknowns: Unknowns
    misfit: float
    dice: list[tuple[float, float]]
    solves: dict[str, int]
    seconds: dict[str, float]
    log: list[dict[str, Any]] = field(default_factory=list)
    status: str = ""
    coarse_x: np.ndarray | None = None
    dt: float | None = None      # the local stage's fixed time step (days): use it for outputs


class Evaluator:
    """Misfit of a search point on one level; logs every solve."""

    def __init__(self, level: FitLevel, fine: FitLevel, unknowns: Unknowns,
                 settings: PatientFitSettings, log: list[dict[str, Any]], stage: str,
                 t_start: float, tick: Any) -> None:
        self.level, self.fine, self.u, self.s = level, fine, unknowns, settings
        self.log, self.stage, self.t_start, self.tick = log, stage, t_start, tick
        self.dt: float | None = None
        self.safety = settings.safety if level is fine else settings.coarse_safety
        self.solves = 0
        self.best: tuple[float, np.ndarray, int] | None = None   # misfit, x, log index

    def origin_local(self, p: Physical) -> np.ndarray:
        if self.level is self.fine:
            return p.origin_local
        world = self.fine.geom.local_to_world(p.origin_local)
        return self.level.geom.world_to_local(world)

    def states(self, x: np.ndarray) -> tuple[Physical, list[np.ndarray]]:
        p = self.u.physical(x)
        states, _ = solve_states(self.level.geom, self.level.kfac, self.level.phi, p,
                                 self.origin_local(p), self.u.times(p), self.dt, self.safety)
        return p, states

    def residuals(self, x: np.ndarray) -> np.ndarray:
        p, states = self.states(x)
        r = np.concatenate([m.residuals(u, p.theta_c, p.theta_e)
                            for m, u in zip(self.level.models, states)])
        r /= math.sqrt(self.level.norm)
        self._record(x, p, states, 0.5 * float(r @ r))
        return r

    def misfit(self, x: np.ndarray) -> float:
        p, states = self.states(x)
        m = sum(mod.misfit(u, p.theta_c, p.theta_e)
                for mod, u in zip(self.level.models, states)) / self.level.norm
        self._record(x, p, states, m)
        return m

    def _record(self, x: np.ndarray, p: Physical, states: list[np.ndarray], m: float) -> None:
        self.solves += 1
        row: dict[str, Any] = {"solve": len(self.log), "stage": self.stage,
                               "seconds": time.perf_counter() - self.t_start, "misfit": m,
                               "origin_world_mm": _fmt_vec(self.fine.geom.local_to_world(
                                   p.origin_local)),
                               "lambda_mm": p.lam, "rho_t0": p.rho_t0, "dw": p.dw,
                               "rho": p.rho, "t0_days": p.t0, "theta_c": p.theta_c,
                               "theta_e": p.theta_e}
        dc, dw_ = [], []
        for k, (mod, u) in enumerate(zip(self.level.models, states)):
            c, w = mod.dice(u, p.theta_c, p.theta_e)
            row[f"dice_core_scan{k}"], row[f"dice_whole_scan{k}"] = c, w
            dc.append(c)
            dw_.append(w)
        row["dice_core"], row["dice_whole"] = float(np.mean(dc)), float(np.mean(dw_))
        self.log.append(row)
        if self.best is None or m < self.best[0]:
            self.best = (m, np.array(x, dtype=np.float64), len(self.log) - 1)
        if self.tick is not None:
            self.tick.update(1)


def _fmt_vec(v: np.ndarray) -> str:
    return " ".join(f"{float(a):.2f}" for a in np.asarray(v).reshape(-1))


class _Budget(Exception):
    pass


class Checkpoint:
    """Where a fit keeps finished stages so that an interrupted run can resume (``--resume``).

    ``load(stage)`` returns the saved dict of a finished stage or None; ``save(stage, data)``
    stores it (atomically). The in-memory default keeps nothing between runs."""

    def load(self, stage: str) -> dict[str, Any] | None:
        return None

    def save(self, stage: str, data: dict[str, Any]) -> None:
        return None


def fit_segmentations(levels: list[FitLevel], unknowns: Unknowns, settings: PatientFitSettings,
                      progress: Callable[[str, int], Any] | None = None,
                      x_start: np.ndarray | None = None,
                      checkpoint: Checkpoint | None = None) -> PatientFitResult:
    """Run the global stage (first level) and the local stage (last level); see the module
    header. ``progress(stage, total)`` returns a tqdm-like bar (``update(1)`` per solve,
    ``close()``) or None. With a ``checkpoint``, a stage finished by an earlier run is taken
    from it (its solves and log included) instead of being run again."""
    import cma
    from scipy.optimize import least_squares

    ck = checkpoint or Checkpoint()
    fine = levels[-1]
    log: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    solves: dict[str, int] = {}
    seconds: dict[str, float] = {}
    x = unknowns.x0.copy() if x_start is None else np.asarray(x_start, dtype=np.float64)
    coarse_x = None
    status: list[str] = []
    best_row: dict[str, Any] | None = None
    dt_final: float | None = None

    def restore(stage: str) -> bool:
        nonlocal x, best_row, dt_final
        saved = ck.load(stage)
        if saved is None:
            return False
        log.extend(saved["log"])
        x = np.asarray(saved["x"], dtype=np.float64)
        best_row = saved["best_row"]
        solves[stage], seconds[stage] = int(saved["solves"]), float(saved["seconds"])
        status.append(saved["status"] + " (resumed)")
        dt_final = saved.get("dt")
        return True

    def finish(stage: str, ev: Evaluator, t0: float, message: str) -> None:
        nonlocal x, best_row, dt_final
        assert ev.best is not None
        x = ev.best[1]
        best_row = log[ev.best[2]]
        solves[stage], seconds[stage] = ev.solves, time.perf_counter() - t0
        status.append(f"{stage}: {message}")
        dt_final = ev.dt
        ck.save(stage, {"x": x.tolist(), "log": log, "best_row": best_row,
                        "solves": solves[stage], "seconds": seconds[stage],
                        "status": status[-1], "dt": dt_final})

    # --- global stage: CMA-ES over the whole box, on the first level ------------------------
    if settings.global_solves > 0 and not restore("global"):
        lev = levels[0]
        tick = progress(f"global ({lev.name})", settings.global_solves) if progress else None
        ev = Evaluator(lev, fine, unknowns, settings, log, f"global {lev.name}", t_start, tick)
        opts = {"bounds": [0.0, 1.0], "seed": int(settings.seed) + 1, "verbose": -9,
                "maxfevals": settings.global_solves, "tolfun": 1e-5, "tolx": 1e-4}
        if settings.popsize:
            opts["popsize"] = int(settings.popsize)
        t0 = time.perf_counter()
        es = cma.CMAEvolutionStrategy(unknowns.to_unit(x).tolist(), 0.25, opts)
        while not es.stop():
            zs = es.ask()
            es.tell(zs, [ev.misfit(unknowns.from_unit(np.asarray(z))) for z in zs])
        if tick is not None:
            tick.close()
        finish("global", ev, t0, ", ".join(str(k) for k in es.stop()))
    if settings.global_solves > 0:
        coarse_x = x.copy()

    # --- local stage: trust-region least squares on the fine level, in boxes ---------------
    # Each round works in a box around the current estimate with its own fixed time step (the
    # stability bound at the box's largest Dw, so a solve costs about a forward solve). A
    # round that ends on the box's edge (the coarse grid's bias can exceed the box) starts the
    # next round there, until the solve budget is used up.
    if settings.local_solves > 0 and not restore("local"):
        tick = progress("local (input grid)", settings.local_solves) if progress else None
        ev = Evaluator(fine, fine, unknowns, settings, log, "local input grid", t_start, tick)
        t0 = time.perf_counter()

        box: list[np.ndarray] = []

        def fun(z: np.ndarray) -> np.ndarray:   # z: the local box's unit coordinates
            if ev.solves >= settings.local_solves:
                raise _Budget()
            return ev.residuals(box[0] + z * (box[1] - box[0]))

        messages = []
        for _round in range(settings.local_rounds):
            lo, hi = _local_box(unknowns, x, settings)
            box[:] = [lo, hi]
            ev.dt = _fixed_dt(fine, unknowns, lo, hi, settings)
            try:
                # unit coordinates: the step tolerance and the difference step are fractions of
                # the box in every coordinate (in mm and log units they would mix scales)
                sol = least_squares(fun, np.clip((x - lo) / (hi - lo), 0.0, 1.0), jac="2-point",
                                    bounds=(0.0, 1.0), method="trf", diff_step=DIFF_STEP,
                                    xtol=1e-4, ftol=1e-6, gtol=1e-10)
                messages.append(str(sol.message))
            except _Budget:
                messages.append("solve budget used up")
            assert ev.best is not None
            x = ev.best[1]
            edge = _on_edge(x, lo, hi, unknowns)
            if not edge or ev.solves >= settings.local_solves:
                break
            messages[-1] += f" (on the box edge in {', '.join(edge)}: new box)"
        if tick is not None:
            tick.close()
        finish("local", ev, t0, "; ".join(messages))

    # --- the estimate: the best solve of the last stage (its misfit and Dice as logged) -----
    assert best_row is not None
    p = unknowns.physical(x)
    n_scans = len(fine.models)
    dice = [(float(best_row[f"dice_core_scan{k}"]), float(best_row[f"dice_whole_scan{k}"]))
            for k in range(n_scans)]
    return PatientFitResult(x=x, params=p, unknowns=unknowns, misfit=float(best_row["misfit"]),
                            dice=dice, solves=solves, seconds=seconds, log=log,
                            status="; ".join(status), coarse_x=coarse_x,
                            dt=dt_final if settings.local_solves > 0 else None)


def _on_edge(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, u: Unknowns) -> list[str]:
    """Names of the coordinates where x lies within 2 % of a local box edge that is not also
    an edge of the search box."""
    w = 0.02 * (hi - lo)
    low = (x - lo <= w) & (lo > u.lo + 1e-12)
    high = (hi - x <= w) & (hi < u.hi - 1e-12)
    return [n for n, a, b in zip(u.names, low, high) if a or b]


def _local_box(u: Unknowns, x: np.ndarray, s: PatientFitSettings) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    half = np.empty(u.n)
    d = u.ndim
    half[:d] = s.local_mm
    half[d:d + (3 if u.multi else 2)] = s.local_frac
    if u.fit_thresholds:
        half[-2:] = 0.1
    lo = np.maximum(u.lo, x - half)
    hi = np.minimum(u.hi, x + half)
    return lo, np.maximum(hi, lo + 1e-9)


def _fixed_dt(level: FitLevel, u: Unknowns, lo: np.ndarray, hi: np.ndarray,
              s: PatientFitSettings) -> float:
    """safety x the stability bound at the largest Dw and rho within the local box."""
    from gbm import _core

    corners = []
    for a in (lo, hi):
        for b in (lo, hi):
            z = np.array(lo, dtype=np.float64)
            d = u.ndim
            z[d] = a[d]
            z[d + 1] = b[d + 1]
            if u.multi:
                for c in (lo, hi):
                    zz = z.copy()
                    zz[d + 2] = c[d + 2]
                    corners.append(u.physical(zz))
            else:
                corners.append(u.physical(z))
    dw = max(p.dw for p in corners)
    rho = max(p.rho for p in corners)
    solver = _core.FisherKpp(np.zeros(level.geom.shape), dw * level.kfac, level.phi,
                             list(level.geom.spacing), rho)
    return s.safety * float(solver.dt_stable)


def equivalent_radius(n_voxels: int, voxel_volume: float, ndim: int) -> float:
    """Radius (mm) of the ball (disk in 2D) with the volume of ``n_voxels`` voxels."""
    v = n_voxels * voxel_volume
    return float((v / math.pi) ** 0.5 if ndim == 2 else (3 * v / (4 * math.pi)) ** (1 / 3))


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
    return Unknowns(g.ndim, days_rel, o0, o_lo, o_hi, r1, rl, settings)
