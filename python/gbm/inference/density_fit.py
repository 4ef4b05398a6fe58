"""FD-based parameter inference: fit Dw, rho (and optionally the seed) to observations by
least squares on the Rust FD solver (``python -m gbm fit-fd``).

The classical alternative to the PINN (paper Sec. 4: "traditional numerical methods ... must be
used to solve thousands of problems in order to address inverse problems"). For parameters
p = (log Dw, log rho[, seed x, y(, z) in local mm]) the forward map is

    r_i(p) = u_h(x_i, t_i; p) - u_obs_i,     i = 1..N,

where u_h is the explicit finite-volume solution of the diffuse-domain equation
(``rust/fisher_kpp/mod.rs``) from the paper's Gaussian at the seed, read off at every observation by
the space-time observation operator ``FisherKpp.observe`` (``rust/observe.rs``: the solver's own
value at (x, t), bilinear/trilinear in space, its partial Euler step in time). The misfit
0.5 sum r_i^2 (the density observation model :class:`gbm.problem.density.model.DensityL2`) is minimised by the trust-region reflective method of
:func:`scipy.optimize.least_squares` within bounds, with Jacobians by forward differences (d + 1
solves for d parameters, relative step :data:`DIFF_STEP`); every solve is counted.

Choices where the issue was silent, and why:

* **One time step for the whole fit**: dt = ``safety`` x the stability bound at the *upper*
  bounds of Dw and rho. With the solver's usual rule (dt from the actual coefficients) dt would
  change with Dw, and the misfit would be a kinked function of Dw; with one dt it is a smooth
  polynomial of the parameters, which least squares needs.
* **Log parameters**: positivity, and comparable scales for Dw and rho.
* **Uncertainty**: the Gauss-Newton covariance s^2 (J^T J)^-1 at the solution,
  s^2 = sum r^2 / (N - d) — a local (Laplace) approximation, not a Bayesian posterior; 95 %
  intervals are reported as exp(log p +- 1.96 se) for Dw and rho.
* **Initial seed** (with ``fit_seed``): ``seed0_mm`` if given, else the u^2-weighted centroid of
  the observations.

Units: mm, days, Dw in mm^2/day, rho in 1/day.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gbm import _core, io
from gbm.errors import require
from gbm.model.geometry import Geometry
from gbm.model.simulation import simulate
from gbm.problem.density.build import build_problem, reference_grid
from gbm.problem.density.config import ProblemConfig
from gbm.problem.density.model import DENSITY_L2
from gbm.provenance import versions
from gbm.viz.base import figure_bytes, pyplot
from gbm.viz.density import u_panels

__all__ = ["FdFitConfig", "FdModel", "FitResult", "fit_fd", "fit_observations", "fit_problem"]

#: Relative step of the forward-difference Jacobian. The solver stores its face coefficients
#: D phi / h^2 in f32 (``rust/fisher_kpp/mod.rs``), so u is piecewise constant in Dw at the 6e-8
#: relative scale: scipy's default step (1.5e-8) would see no change at all. 1e-4 is far above
#: that rounding and still far below the accuracy anyone needs of Dw.
DIFF_STEP = 1e-4


@dataclass(frozen=True)
class FdFitConfig(ProblemConfig):
    """FD-based inference settings; the problem fields are those of
    :class:`gbm.problem.density.config.ProblemConfig` (the same synthetic observations as ``gbm infer`` for
    the same settings).

    dw0, rho0 : initial guesses (the paper's 0.1 mm^2/day and 0.01 /day).
    dw_range, rho_range : bounds (mm^2/day, 1/day); the upper ones set the fit's time step.
    fit_seed : also fit the seed location (2 or 3 more parameters).
    seed0_mm : initial seed guess in world mm (default: u^2-weighted centroid of observations).
    safety : dt = safety x stability bound at (dw_range[1], rho_range[1]).
    max_solves : cap on forward solves (Jacobian solves included).
    xtol, ftol : stopping tolerances of the least-squares solver (relative step, relative cost).
    report_days : days at which the fitted u is written (default: the observation days, or
        T/3, 2T/3, T for observations at scattered times).

    The solver uses the Rust core's thread pool (all cores; 2D problems mostly take one).
    """

    dw0: float = 0.1
    rho0: float = 0.01
    dw_range: tuple[float, float] = (0.01, 1.0)
    rho_range: tuple[float, float] = (0.001, 0.2)
    fit_seed: bool = False
    seed0_mm: tuple[float, ...] | None = None
    safety: float = 0.9
    max_solves: int = 300
    xtol: float = 1e-6
    ftol: float = 1e-8
    report_days: tuple[float, ...] | None = None

    def validate(self) -> None:
        self.validate_problem()
        for name in ("dw_range", "rho_range"):
            r = tuple(getattr(self, name))
            require(len(r) == 2 and 0 < r[0] < r[1] < math.inf,
                    f"--{name.replace('_', '-')} must be two numbers 0 < lo < hi, got {r}")
        require(self.dw_range[0] <= self.dw0 <= self.dw_range[1],
                f"--dw0 {self.dw0} is outside --dw-range {tuple(self.dw_range)}")
        require(self.rho_range[0] <= self.rho0 <= self.rho_range[1],
                f"--rho0 {self.rho0} is outside --rho-range {tuple(self.rho_range)}")
        require(0 < self.safety <= 1, f"--safety must be in (0, 1], got {self.safety}")
        require(self.max_solves >= 3, f"--max-solves must be >= 3, got {self.max_solves}")
        require(self.xtol > 0 and self.ftol > 0, "xtol and ftol must be > 0")
        if self.seed0_mm is not None:
            require(len(self.seed0_mm) == 3,
                    f"--seed0-mm needs x,y,z in world mm, got {self.seed0_mm}")


class FdModel:
    """The forward map of FD-based inference: (Dw, rho, seed) -> u at the observations.

    Parameters
    ----------
    geom : Geometry
        With its phase field.
    points : ndarray, float64, shape (N, d)
        Observation points, local mm.
    t : ndarray, float64, shape (N,)
        Observation times, days (> 0).
    dt : float
        The fixed time step of every solve, days (see :meth:`time_step`).
    ratio : float
        Dw / Dg.
    phi_min : float
        Cells with phi < phi_min are inactive.
    """

    def __init__(self, geom: Geometry, points: np.ndarray, t: np.ndarray, dt: float,
                 ratio: float = 10.0, phi_min: float = 1e-3) -> None:
        require(geom.phi is not None, "geometry has no phase field")
        self.geom = geom
        self.points = np.ascontiguousarray(points, dtype=np.float64)
        self.t = np.ascontiguousarray(t, dtype=np.float64)
        self.dt = float(dt)
        self.kfac = np.ascontiguousarray(geom.tissue_factor(ratio))
        self.phi = np.ascontiguousarray(geom.phi, dtype=np.float64)
        self.phi_min = phi_min
        self.solves = 0
        self.solve_seconds = 0.0

    @staticmethod
    def time_step(geom: Geometry, dw_max: float, rho_max: float, ratio: float = 10.0,
                  safety: float = 0.9, phi_min: float = 1e-3) -> float:
        """``safety`` x the stability bound of the solver at Dw = dw_max, rho = rho_max (days):
        stable for every parameter within the bounds."""

        return safety * _core.stable_dt(geom.diffusivity(dw_max, ratio), geom.phi,
                                        list(geom.spacing), rho_max, phi_min=phi_min)

    def solver(self, dw: float, rho: float, seed_local: np.ndarray) -> Any:
        """A fresh :class:`gbm._core.FisherKpp` at t = 0 from the Gaussian at ``seed_local``."""

        u0 = self.geom.initial_condition(seed_local)
        return _core.FisherKpp(u0, dw * self.kfac, self.phi, list(self.geom.spacing), rho,
                               phi_min=self.phi_min, dt=self.dt)

    def predict(self, dw: float, rho: float, seed_local: np.ndarray) -> np.ndarray:
        """u_h at every observation, shape (N,) (one forward solve, counted)."""
        t0 = time.perf_counter()
        u = self.solver(dw, rho, seed_local).observe(self.points, self.t)
        self.solves += 1
        self.solve_seconds += time.perf_counter() - t0
        return u


@dataclass
class FitResult:
    """Outcome of :func:`fit_observations` (units: mm^2/day, 1/day, local mm, seconds)."""

    dw: float
    rho: float
    seed_local: np.ndarray
    solves: int
    seconds: float
    cost: float
    rmse: float
    status: str
    dt: float
    dw_ci95: tuple[float, float] | None
    rho_ci95: tuple[float, float] | None
    seed_se_mm: list[float] | None
    log: list[dict[str, float]]


def initial_seed(points: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The u^2-weighted centroid of the observations (local mm), an initial seed guess."""
    w = np.clip(u, 0.0, None) ** 2
    require(float(w.sum()) > 0, "observations: all densities are 0, no seed guess possible")
    return (points * w[:, None]).sum(axis=0) / w.sum()


def fit_observations(model: FdModel, u_obs: np.ndarray, dw0: float, rho0: float,
                     seed0: np.ndarray, dw_range: tuple[float, float],
                     rho_range: tuple[float, float], fit_seed: bool = False,
                     max_solves: int = 300, xtol: float = 1e-6, ftol: float = 1e-8,
                     truth: tuple[float, float] | None = None,
                     printer: Callable[[str], None] | None = None) -> FitResult:
    """Least-squares fit of (log Dw, log rho[, seed]) to ``u_obs`` (see the module docstring).

    Parameters
    ----------
    model : FdModel
    u_obs : ndarray, shape (N,)
        Observed densities at ``model.points``, ``model.t``.
    dw0, rho0 : float
        Initial guesses (mm^2/day, 1/day).
    seed0 : ndarray, shape (d,)
        Seed (local mm): fixed, or the initial guess when ``fit_seed``.
    dw_range, rho_range : (lo, hi)
        Bounds.
    max_solves : int
        Cap on forward solves (the fit stops with status "max_solves").
    truth : (Dw, rho), optional
        Only for the errors in the log.

    Returns
    -------
    FitResult
        ``log`` has one row per solve: solve, seconds, dw, rho, cost and, for the best
        evaluation so far (the current estimate), best_dw, best_rho (and errors when the truth is
        known).
    """
    from scipy.optimize import least_squares

    u_obs = np.asarray(u_obs, dtype=np.float64)
    d = model.points.shape[1]
    seed0 = np.asarray(seed0, dtype=np.float64).reshape(d)
    x0 = [math.log(dw0), math.log(rho0)]
    lo = [math.log(dw_range[0]), math.log(rho_range[0])]
    hi = [math.log(dw_range[1]), math.log(rho_range[1])]
    if fit_seed:
        box = (np.asarray(model.geom.shape) - 1) * np.asarray(model.geom.spacing)
        x0 += list(np.clip(seed0, 0.0, box))
        lo += [0.0] * d
        hi += list(box)
    obj = _Objective(model, u_obs, seed0 if not fit_seed else None, max_solves, truth,
                     printer or (lambda m: None))
    try:
        sol = least_squares(obj.residual, np.asarray(x0), jac="2-point", bounds=(lo, hi),
                            method="trf", x_scale="jac", xtol=xtol, ftol=ftol, gtol=1e-12,
                            max_nfev=max_solves, diff_step=DIFF_STEP)
        x, jac, r = sol.x, sol.jac, sol.fun
        status = {0: "max_solves", 1: "gtol", 2: "ftol", 3: "xtol", 4: "ftol+xtol"}.get(
            int(sol.status), f"status {sol.status}")
    except _Budget:
        status = "max_solves"
        x, jac, r = obj.best_x(), None, None  # stopped inside a Jacobian: the best evaluation
    dw, rho, seed = obj.unpack(np.asarray(x))
    seconds = time.perf_counter() - obj.t_start
    dw_ci, rho_ci, seed_se = _intervals(jac, r, len(u_obs), dw, rho, fit_seed)
    cost = obj.log[obj.best]["cost"]
    return FitResult(dw=dw, rho=rho, seed_local=np.asarray(seed, dtype=np.float64),
                     solves=model.solves, seconds=seconds, cost=cost,
                     rmse=DENSITY_L2.rmse_from_cost(cost, len(u_obs)), status=status,
                     dt=model.dt, dw_ci95=dw_ci, rho_ci95=rho_ci, seed_se_mm=seed_se,
                     log=obj.log)


class _Objective:
    """The residual function of :func:`fit_observations`: one forward solve per call, logged.

    ``seed_fixed`` None means the seed is fitted (x = log Dw, log rho, seed...); ``best`` is the
    index in ``log`` of the lowest misfit so far (the current estimate).
    """

    def __init__(self, model: FdModel, u_obs: np.ndarray, seed_fixed: np.ndarray | None,
                 max_solves: int, truth: tuple[float, float] | None,
                 say: Callable[[str], None]) -> None:
        self.model, self.u_obs, self.seed_fixed = model, u_obs, seed_fixed
        self.max_solves, self.truth, self.say = max_solves, truth, say
        self.d = model.points.shape[1]
        self.log: list[dict[str, float]] = []
        self.best = -1
        self.t_start = time.perf_counter()
        self.next_say = self.t_start + 5.0

    def unpack(self, x: np.ndarray) -> tuple[float, float, np.ndarray]:
        seed = (np.asarray(x[2:], dtype=np.float64) if self.seed_fixed is None
                else self.seed_fixed)
        return math.exp(x[0]), math.exp(x[1]), seed

    def best_x(self) -> np.ndarray:
        b = self.log[self.best]
        seed = [b[f"seed_{'xyz'[k]}"] for k in range(self.d)] if self.seed_fixed is None else []
        return np.r_[math.log(b["dw"]), math.log(b["rho"]), seed]

    def residual(self, x: np.ndarray) -> np.ndarray:
        model = self.model
        if model.solves >= self.max_solves:
            raise _Budget()
        dw, rho, seed = self.unpack(x)
        r = DENSITY_L2.residuals(model.predict(dw, rho, seed), self.u_obs)
        cost = DENSITY_L2.cost(r)
        self._record(dw, rho, seed, cost)
        return r

    def _record(self, dw: float, rho: float, seed: np.ndarray, cost: float) -> None:
        log = self.log
        row = {"solve": float(self.model.solves),
               "seconds": time.perf_counter() - self.t_start, "dw": dw, "rho": rho,
               "cost": cost}
        if self.seed_fixed is None:
            row.update({f"seed_{'xyz'[k]}": float(seed[k]) for k in range(self.d)})
        if self.best < 0 or cost < log[self.best]["cost"]:
            self.best = len(log)
        b = row if self.best == len(log) else log[self.best]
        row["best_dw"], row["best_rho"] = b["dw"], b["rho"]
        if self.truth is not None:
            row["dw_err_pct"] = 100 * (b["dw"] / self.truth[0] - 1)
            row["rho_err_pct"] = 100 * (b["rho"] / self.truth[1] - 1)
        log.append(row)
        if time.perf_counter() >= self.next_say:
            self.say(f"fit-fd: {self.model.solves} solves, cost {cost:.4e}, Dw {b['dw']:.5f}, "
                     f"rho {b['rho']:.6f}")
            self.next_say = time.perf_counter() + 5.0


def _intervals(jac: np.ndarray | None, r: np.ndarray | None, n: int, dw: float, rho: float,
               fit_seed: bool) -> tuple[tuple[float, float] | None, tuple[float, float] | None,
                                        list[float] | None]:
    """Gauss-Newton 95 % intervals of Dw and rho (and the seed's standard errors, mm) from the
    final Jacobian of the log-parameters (``n`` observations); None where not identifiable or
    not available."""
    if jac is None or r is None or n <= jac.shape[1]:
        return None, None, None
    s2 = float(r @ r) / (n - jac.shape[1])
    try:
        cov = s2 * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        return None, None, None
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    if not (np.all(np.isfinite(se)) and se[0] < 5 and se[1] < 5):  # not identifiable
        return None, None, None
    dw_ci = (dw * math.exp(-1.96 * se[0]), dw * math.exp(1.96 * se[0]))
    rho_ci = (rho * math.exp(-1.96 * se[1]), rho * math.exp(1.96 * se[1]))
    return dw_ci, rho_ci, ([float(v) for v in se[2:]] if fit_seed else None)


class _Budget(Exception):
    """The solve budget ran out."""


def fit_problem(problem: Any, cfg: FdFitConfig,
                printer: Callable[[str], None] | None = None) -> tuple[FitResult, FdModel]:
    """Fit the observations of a :class:`gbm.problem.density.build.Problem` with the settings of ``cfg``."""
    obs = problem.observations
    require(obs is not None and len(obs) > 0, "no observations to fit")
    geom = problem.geometry
    dt = FdModel.time_step(geom, cfg.dw_range[1], cfg.rho_range[1], problem.ratio, cfg.safety)
    model = FdModel(geom, obs.points, obs.t, dt, problem.ratio)
    seed0 = problem.domain.center
    if cfg.fit_seed:
        seed0 = (geom.check_seed(geom.world_to_local(cfg.seed0_mm)) if cfg.seed0_mm is not None
                 else initial_seed(obs.points, obs.u))
    res = fit_observations(model, obs.u, cfg.dw0, cfg.rho0, seed0, tuple(cfg.dw_range),
                           tuple(cfg.rho_range), cfg.fit_seed, cfg.max_solves, cfg.xtol,
                           cfg.ftol, problem.truth, printer)
    return res, model


def result_dict(problem: Any, cfg: FdFitConfig, res: FitResult,
                setup_seconds: float | None = None) -> dict[str, Any]:
    """The content of ``results.json`` of a fit (plain types)."""

    truth = problem.truth
    out: dict[str, Any] = {
        "method": "FD-based least squares (Rust FD solver, trust-region reflective, "
                  "forward-difference Jacobian)",
        "dw": res.dw, "rho": res.rho,
        "truth": {"dw": truth[0], "rho": truth[1]} if truth else None,
        "dw_error_pct": 100 * (res.dw / truth[0] - 1) if truth else None,
        "rho_error_pct": 100 * (res.rho / truth[1] - 1) if truth else None,
        "dw_ci95": list(res.dw_ci95) if res.dw_ci95 else None,
        "rho_ci95": list(res.rho_ci95) if res.rho_ci95 else None,
        "fit_seed": cfg.fit_seed,
        "seed_local_mm": res.seed_local.tolist(),
        "seed_se_mm": res.seed_se_mm,
        "seed_world_mm": problem.geometry.local_to_world(res.seed_local).tolist(),
        "solves": res.solves, "wall_seconds": res.seconds, "setup_seconds": setup_seconds,
        "seconds_per_solve": res.seconds / max(res.solves, 1), "dt_days": res.dt,
        "steps_per_solve": int(math.ceil(float(np.max(problem.observations.t)) / res.dt)),
        "cost": res.cost, "rmse": res.rmse, "status": res.status,
        "n_observations": len(problem.observations),
        "observations": problem.observations.source, "problem": problem.name,
        "horizon": problem.horizon, "threads": _threads(),
        "versions": versions(), "config": dataclasses.asdict(cfg),
        "units": {"dw": "mm^2/day", "rho": "1/day", "time": "days", "length": "mm"},
    }
    if truth and problem.domain is not None and cfg.fit_seed:
        out["seed_error_mm"] = float(np.linalg.norm(res.seed_local - problem.domain.center))
    return out


def _threads() -> int:

    return int(_core.num_threads())


def log_csv_bytes(log: list[dict[str, float]]) -> bytes:
    """The per-solve log as CSV (:func:`gbm.io.csv_bytes`; ``solve`` as an integer)."""
    if not log:
        return b""
    rows = [{**row, "solve": int(row["solve"])} if "solve" in row else row for row in log]
    return io.csv_bytes(rows, list(log[0].keys()))


def fit_figure(log: list[dict[str, float]], truth: tuple[float, float] | None,
               title: str = "") -> bytes:
    """Misfit and the current estimates of Dw, rho against forward solves."""

    plt = pyplot()
    n = [r["solve"] for r in log]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].semilogy(n, [r["cost"] for r in log], ".", ms=3, color="0.5", label="evaluation")
    axes[0].semilogy(n, np.minimum.accumulate([r["cost"] for r in log]), "k-", label="best")
    axes[0].set_ylabel("misfit 0.5 sum r^2")
    for ax, key, lab, k in ((axes[1], "best_dw", "Dw [mm$^2$/day]", 0),
                            (axes[2], "best_rho", "rho [1/day]", 1)):
        ax.plot(n, [r[key] for r in log], "k-", label="estimate")
        if truth is not None:
            ax.axhline(truth[k], color="tab:blue", ls="--", lw=1, label="truth")
        ax.set_ylabel(lab)
    for ax in axes:
        ax.set_xlabel("forward solves")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return figure_bytes(fig)


def fit_fd(cfg: FdFitConfig, out: str | Path, force: bool = False,
           printer: Callable[[str], None] | None = None) -> dict[str, Any]:
    """FD-based inference of Dw, rho (and the seed with ``cfg.fit_seed``); writes ``out``.

    Writes, as a whole (assembled in a temporary folder, renamed into place): ``results.json``
    (estimates, 95 % intervals, errors when the truth is known, solves, wall time, dt, status,
    versions, configuration), ``log.csv`` (one row per forward solve), ``fit.png`` (misfit and
    estimates against solves), ``u_fd_day<D>.nii.gz`` (the fitted model on the input grid at the
    report days) and ``u_fd.png`` (axial panels, with the truth when known).

    Returns
    -------
    dict
        The content of ``results.json``.
    """

    say = printer or (lambda m: print(m, flush=True))
    cfg.validate()
    io.check_output(out, force)
    t0 = time.perf_counter()
    problem = build_problem(cfg)
    setup = time.perf_counter() - t0
    obs = problem.observations
    say(f"gbm fit-fd: {problem.name}, {len(obs)} observations ({obs.source}), fitting "
        f"{'Dw, rho, seed' if cfg.fit_seed else 'Dw, rho'} from ({cfg.dw0:g}, {cfg.rho0:g})")
    res, model = fit_problem(problem, cfg, say)
    summary = result_dict(problem, cfg, res, setup)
    days = _report_days(cfg, problem)
    with io.staged_outdir(out, force) as tmp:
        write_fitted_fields(tmp, problem, model, res, days)
        io.write_bytes_atomic(tmp / "log.csv", log_csv_bytes(res.log))
        io.write_bytes_atomic(tmp / "fit.png", fit_figure(res.log, problem.truth,
                                                          f"FD-based fit, {problem.name}"))
        io.write_json_atomic(tmp / "results.json", summary)
    msg = f"gbm fit-fd: Dw {res.dw:.4f} mm^2/day, rho {res.rho:.5f} /day"
    if problem.truth:
        msg += (f" (errors {summary['dw_error_pct']:+.2f}% / "
                f"{summary['rho_error_pct']:+.2f}%)")
    say(msg + f" after {res.solves} solves, {res.seconds:.1f} s ({res.status}) -> {out}")
    return summary


def _report_days(cfg: FdFitConfig, problem: Any) -> list[float]:
    if cfg.report_days:
        return [float(d) for d in cfg.report_days]
    if cfg.days:
        return sorted(float(d) for d in cfg.days)
    t = problem.horizon
    return [round(t / 3, 6), round(2 * t / 3, 6), float(t)]


def fitted_fields(problem: Any, model: FdModel, res: FitResult,
                  days: list[float]) -> list[np.ndarray]:
    """The fitted model's u on the box at ``days`` (one more solve, not counted in the fit)."""

    r = simulate(problem.geometry, res.dw, res.rho, sorted(set([0.0] + list(days))),
                 seed_local=res.seed_local, ratio=problem.ratio, dt=model.dt)
    return [r.u[int(np.searchsorted(r.times, d))] for d in days]


def write_fitted_fields(folder: Path, problem: Any, model: FdModel, res: FitResult,
                        days: list[float]) -> None:
    """``u_fd_day<D>.nii.gz`` on the input grid and ``u_fd.png`` (with the truth when known)."""

    geom = problem.geometry
    fields = fitted_fields(problem, model, res, days)
    for day, u in zip(days, fields):
        io.save_nifti_atomic(folder / f"u_fd_day{day:g}.nii.gz", geom.to_full(u),
                             geom.input_affine, description=f"gbm FD fit u day {day:g}")
    ref = reference_grid(problem)
    refs = [ref(d) for d in days] if ref is not None else None
    png = u_panels(geom, days, fields, refs, res.seed_local,
                   f"FD fit: Dw {res.dw:.4f} mm^2/d, rho {res.rho:.5f} /d",
                   labels=("FD fit", "truth"))
    io.write_bytes_atomic(folder / "u_fd.png", png)
