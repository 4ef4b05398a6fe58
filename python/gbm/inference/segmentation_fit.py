"""Fit the growth model to a patient's tumour segmentations (``python -m gbm fit``).

Model: the diffuse-domain Fisher-Kolmogorov equation on the patient's tissue maps
(``rust/fisher_kpp/mod.rs``), from the paper's Gaussian ``0.1 exp(-|x - x0|^2 / 10 mm^2)`` at the
origin x0; data: one or more segmentations read through the nested-threshold observation model
(:mod:`gbm.problem.segmentation.model`).
With ``start="first-scan"`` (several scans) the solves start at the first scan instead, from
a density built from its segmentation (:mod:`gbm.problem.segmentation.start`), and the search
coordinates are (log lambda, log g[, theta_c, theta_e]): the tumour's unknown start drops out.

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
   and the size-consistent start, over the whole box of the search coordinates. Each solve takes
   its own time step (:class:`~gbm.problem.segmentation.levels.Stepping`: Strang-RKL2 at
   rho dt = 0.5 by default), so a solve costs what a forward solve costs.
2. **Local**: trust-region least squares (scipy TRF, forward-difference Jacobian) of the hinge
   residuals on the input grid from the global optimum, within a box around it. One fixed time
   step and stage count (Strang-RKL2: the step of the box's largest lambda and rho, the stages
   of its largest Dw; Euler: ``safety`` x the stability bound at its largest Dw) keeps the
   misfit smooth.
Both stages solve only on a sub-box around the tumour (whole tumour of all scans + ``crop_mm``);
the forecast and outputs use the whole brain.

Every solve is logged (stage, parameters, misfit, Dice of core and whole tumour per scan, wall).
Deterministic for a seed.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gbm import _core
from gbm.problem.segmentation.levels import (
    FitLevel,
    Stepping,
    make_levels,
    rkl2_stages,
    solve_states,
    start_state,
    strang_dt,
)
from gbm.problem.segmentation.model import half_sum_of_squares
from gbm.problem.segmentation.unknowns import (
    PatientFitResult,
    PatientFitSettings,
    Physical,
    Unknowns,
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
#: gbm.inference.density_fit.DIFF_STEP).
DIFF_STEP = 2e-3


class Evaluator:
    """Misfit of a search point on one level; logs every solve."""

    def __init__(self, level: FitLevel, fine: FitLevel, unknowns: Unknowns,
                 settings: PatientFitSettings, log: list[dict[str, Any]], stage: str,
                 t_start: float, tick: Any) -> None:
        self.level, self.fine, self.u, self.s = level, fine, unknowns, settings
        self.log, self.stage, self.t_start, self.tick = log, stage, t_start, tick
        self.stepping = Stepping(settings.scheme, safety=settings.safety if level is fine
                                 else settings.coarse_safety)
        self.solves = 0
        self.best: tuple[float, np.ndarray, int] | None = None   # misfit, x, log index

    def origin_local(self, p: Physical) -> np.ndarray:
        if self.level is self.fine:
            return p.origin_local
        world = self.fine.geom.local_to_world(p.origin_local)
        return self.level.geom.world_to_local(world)

    def states(self, x: np.ndarray) -> tuple[Physical, list[np.ndarray]]:
        p = self.u.physical(x)
        origin = self.origin_local(p)
        states, _ = solve_states(self.level.geom, self.level.kfac, self.level.phi, p, origin,
                                 self.u.times(p), self.stepping,
                                 u0=start_state(self.level, p, origin))
        return p, states

    def residuals(self, x: np.ndarray) -> np.ndarray:
        p, states = self.states(x)
        r = np.concatenate([m.residuals(u, p.theta_c, p.theta_e)
                            for m, u in zip(self.level.models, states)])
        r /= math.sqrt(self.level.norm)
        self._record(x, p, states, half_sum_of_squares(r))
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


class _Stages:
    """What the stages share: the log, the current estimate, the best logged solve, per-stage
    solves, seconds and status, the last stage's time stepping; finished stages go to (and come back
    from) the checkpoint."""

    def __init__(self, x: np.ndarray, checkpoint: Checkpoint) -> None:
        self.ck = checkpoint
        self.x = x
        self.log: list[dict[str, Any]] = []
        self.solves: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.status: list[str] = []
        self.best_row: dict[str, Any] | None = None
        self.stepping: Stepping | None = None

    def restore(self, stage: str) -> bool:
        """Take ``stage`` from the checkpoint; False when it holds none."""
        saved = self.ck.load(stage)
        if saved is None:
            return False
        self.log.extend(saved["log"])
        self.x = np.asarray(saved["x"], dtype=np.float64)
        self.best_row = saved["best_row"]
        self.solves[stage], self.seconds[stage] = int(saved["solves"]), float(saved["seconds"])
        self.status.append(saved["status"] + " (resumed)")
        self.stepping = Stepping.from_dict(saved.get("stepping"))
        return True

    def finish(self, stage: str, ev: Evaluator, t0: float, message: str) -> None:
        """Close ``stage`` at its best solve and checkpoint it."""
        assert ev.best is not None
        self.x = ev.best[1]
        self.best_row = self.log[ev.best[2]]
        self.solves[stage], self.seconds[stage] = ev.solves, time.perf_counter() - t0
        self.status.append(f"{stage}: {message}")
        self.stepping = ev.stepping
        self.ck.save(stage, {"x": self.x.tolist(), "log": self.log, "best_row": self.best_row,
                             "solves": self.solves[stage], "seconds": self.seconds[stage],
                             "status": self.status[-1], "stepping": self.stepping.to_dict()})


def fit_segmentations(levels: list[FitLevel], unknowns: Unknowns, settings: PatientFitSettings,
                      progress: Callable[[str, int], Any] | None = None,
                      x_start: np.ndarray | None = None,
                      checkpoint: Checkpoint | None = None) -> PatientFitResult:
    """Run the global stage (first level) and the local stage (last level); see the module
    header. ``progress(stage, total)`` returns a tqdm-like bar (``update(1)`` per solve,
    ``close()``) or None. With a ``checkpoint``, a stage finished by an earlier run is taken
    from it (its solves and log included) instead of being run again."""
    import cma  # noqa: F401 - loaded before the clock starts: the log's seconds are the fit's
    import scipy.optimize  # noqa: F401

    x = unknowns.x0.copy() if x_start is None else np.asarray(x_start, dtype=np.float64)
    st = _Stages(x, checkpoint or Checkpoint())
    t_start = time.perf_counter()
    coarse_x = None
    if settings.global_solves > 0 and not st.restore("global"):
        _global_stage(levels, unknowns, settings, st, t_start, progress)
    if settings.global_solves > 0:
        coarse_x = st.x.copy()
    if settings.local_solves > 0 and not st.restore("local"):
        _local_stage(levels[-1], unknowns, settings, st, t_start, progress)

    # --- the estimate: the best solve of the last stage (its misfit and Dice as logged) -----
    best = st.best_row
    assert best is not None
    n_scans = len(levels[-1].models)
    dice = [(float(best[f"dice_core_scan{k}"]), float(best[f"dice_whole_scan{k}"]))
            for k in range(n_scans)]
    return PatientFitResult(x=st.x, params=unknowns.physical(st.x), unknowns=unknowns,
                            misfit=float(best["misfit"]), dice=dice, solves=st.solves,
                            seconds=st.seconds, log=st.log, status="; ".join(st.status),
                            coarse_x=coarse_x,
                            stepping=st.stepping if settings.local_solves > 0 else None)


def _global_stage(levels: list[FitLevel], unknowns: Unknowns, settings: PatientFitSettings,
                  st: _Stages, t_start: float, progress: Callable[[str, int], Any] | None
                  ) -> None:
    """CMA-ES over the whole box, on the first level."""
    import cma

    lev = levels[0]
    tick = progress(f"global ({lev.name})", settings.global_solves) if progress else None
    ev = Evaluator(lev, levels[-1], unknowns, settings, st.log, f"global {lev.name}", t_start,
                   tick)
    opts = {"bounds": [0.0, 1.0], "seed": int(settings.seed) + 1, "verbose": -9,
            "maxfevals": settings.global_solves, "tolfun": 1e-5, "tolx": 1e-4}
    if settings.popsize:
        opts["popsize"] = int(settings.popsize)
    t0 = time.perf_counter()
    es = cma.CMAEvolutionStrategy(unknowns.to_unit(st.x).tolist(), 0.25, opts)
    while not es.stop():
        zs = es.ask()
        es.tell(zs, [ev.misfit(unknowns.from_unit(np.asarray(z))) for z in zs])
    if tick is not None:
        tick.close()
    st.finish("global", ev, t0, ", ".join(str(k) for k in es.stop()))


class _BoxResiduals:
    """The local stage's residuals in the current box's unit coordinates, within the budget."""

    def __init__(self, ev: Evaluator, budget: int) -> None:
        self.ev, self.budget = ev, budget
        self.lo = self.hi = np.zeros(0)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        if self.ev.solves >= self.budget:
            raise _Budget()
        return self.ev.residuals(self.lo + z * (self.hi - self.lo))


def _local_stage(fine: FitLevel, unknowns: Unknowns, settings: PatientFitSettings,
                 st: _Stages, t_start: float, progress: Callable[[str, int], Any] | None
                 ) -> None:
    """Trust-region least squares on the fine level, in boxes.

    Each round works in a box around the current estimate with its own fixed time stepping
    (:func:`_fixed_stepping`, so a solve costs about a forward solve). A round
    that ends on the box's edge (the coarse grid's bias can exceed the box) starts the next
    round there, until the solve budget is used up."""
    from scipy.optimize import least_squares

    tick = progress("local (input grid)", settings.local_solves) if progress else None
    ev = Evaluator(fine, fine, unknowns, settings, st.log, "local input grid", t_start, tick)
    t0 = time.perf_counter()
    fun = _BoxResiduals(ev, settings.local_solves)
    messages = []
    x = st.x
    for _round in range(settings.local_rounds):
        lo, hi = _local_box(unknowns, x, settings)
        fun.lo, fun.hi = lo, hi
        ev.stepping = _fixed_stepping(fine, unknowns, lo, hi, settings)
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
    st.finish("local", ev, t0, "; ".join(messages))


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
    half[:u.sizes.start] = s.local_mm
    half[u.sizes] = s.local_frac
    if u.fit_thresholds:
        half[-2:] = 0.1
    lo = np.maximum(u.lo, x - half)
    hi = np.minimum(u.hi, x + half)
    return lo, np.maximum(hi, lo + 1e-9)


def _fixed_stepping(level: FitLevel, u: Unknowns, lo: np.ndarray, hi: np.ndarray,
                    s: PatientFitSettings) -> Stepping:
    """One time stepping for every solve in the local box: Strang-RKL2 at the step of the
    box's largest lambda and rho (:func:`strang_dt`) with the stages of its largest Dw; Euler at
    ``safety`` x the stability bound at its largest Dw and rho."""

    corners = []
    idx = range(u.n)[u.sizes]
    for ends in itertools.product((lo, hi), repeat=len(idx)):
        z = np.array(lo, dtype=np.float64)
        for i, e in zip(idx, ends):
            z[i] = e[i]
        corners.append(u.physical(z))
    dw = max(p.dw for p in corners)
    rho = max(p.rho for p in corners)
    spacing = list(level.geom.spacing)
    if s.scheme == "euler":
        return Stepping("euler", s.safety * _core.stable_dt(dw * level.kfac, level.phi, spacing,
                                                            rho), safety=s.safety)
    dt = strang_dt(max(p.lam for p in corners), rho)
    stages = rkl2_stages(dt, _core.stable_dt(dw * level.kfac, level.phi, spacing, 0.0))
    return Stepping(s.scheme, dt, stages)


