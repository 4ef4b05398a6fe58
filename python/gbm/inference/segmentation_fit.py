"""Fit the growth model to a patient's tumour segmentations (``python -m gbm fit``).

Model: the diffuse-domain Fisher-Kolmogorov equation on the patient's tissue maps
(``rust/fisher_kpp/mod.rs``), from the paper's Gaussian ``0.1 exp(-|x - x0|^2 / 10 mm^2)`` at the
origin x0; data: one or more segmentations read through the nested-threshold observation model
(:mod:`gbm.problem.segmentation.model`).

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
from collections.abc import Callable
from typing import Any

import numpy as np

from gbm import _core
from gbm.problem.segmentation.levels import FitLevel, make_levels, solve_states
from gbm.problem.segmentation.unknowns import PatientFitResult, PatientFitSettings, Physical, Unknowns

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


