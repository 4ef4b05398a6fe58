"""Finite-difference forward simulation on a :class:`~gbm.model.geometry.Geometry` (wraps the Rust solver).

The equation is the diffuse-domain Fisher-Kolmogorov model (paper Eq. 6)

    d(phi u)/dt = div(D phi grad u) + phi rho u (1 - u),

solved by :class:`gbm._core.FisherKpp` (explicit finite volumes; see ``rust/fisher_kpp/mod.rs`` for the
discretisation and the time-step rule).  Units: mm, days, D in mm^2/day, rho in 1/day.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gbm import _core
from gbm.errors import positive, require
from gbm.model.geometry import DEFAULT_RATIO, Geometry


@dataclass(frozen=True)
class FdResult:
    """Snapshots of an FD run.

    Attributes
    ----------
    times : ndarray, shape (nt,)
        Snapshot times in days.
    u : ndarray, float64, shape (nt, nx, ny[, nz])
        Tumour cell density in [0, 1] on the box at each snapshot.
    dt : float
        Time step in days (fixed by the coefficients, independent of the run length).
    steps : int
        Whole time steps taken.
    seconds : float
        Wall time of the time stepping (coefficient set-up included).
    seed_local : ndarray or None
        Seed in local mm, when the Gaussian initial condition was used.
    """

    times: np.ndarray
    u: np.ndarray
    dt: float
    steps: int
    seconds: float
    active_cells: int
    seed_local: np.ndarray | None = None


def snapshot_times(days: float, save_every: float | None) -> np.ndarray:
    """``[0, s, 2s, ..., days]`` (days always included); ``save_every=None`` gives ``[0, days]``."""
    days = positive("--days", days)
    if save_every is None:
        return np.array([0.0, days])
    s = positive("--save-every", save_every)
    t = np.arange(0.0, days, s)
    return np.unique(np.r_[t, days])


def make_solver(geom: Geometry, dw: float, rho: float, u0: np.ndarray, *,
                ratio: float = DEFAULT_RATIO, phi_min: float = 1e-3, safety: float = 0.9,
                dt: float | None = None, face_mean: str = "harmonic", scheme: str = "euler",
                stages: int | None = None) -> Any:
    """The Rust solver ``_core.FisherKpp`` of :func:`simulate` at time 0 (no checks of the
    arguments: :func:`simulate` makes them)."""

    return _core.FisherKpp(u0, geom.diffusivity(dw, ratio), geom.phi, list(geom.spacing), rho,
                           phi_min=phi_min, safety=safety, dt=dt, scheme=scheme, stages=stages,
                           face_mean=face_mean)


def simulate(geom: Geometry, dw: float, rho: float, times: Sequence[float], *,
             seed_world: Sequence[float] | None = None, seed_local: Sequence[float] | None = None,
             u0: np.ndarray | None = None, ratio: float = DEFAULT_RATIO, phi_min: float = 1e-3,
             safety: float = 0.9, dt: float | None = None, scheme: str = "euler",
             stages: int | None = None, progress: bool = False,
             face_mean: str = "harmonic") -> FdResult:
    """Run the FD solver from the paper's Gaussian at a seed, or from a given ``u0``.

    Parameters
    ----------
    geom : Geometry
        Domain with ``phi`` set (see :meth:`Geometry.with_phase_field`).
    dw : float
        White-matter diffusivity Dw, mm^2/day (> 0); Dg = Dw/ratio.
    rho : float
        Proliferation rate, 1/day (> 0).
    times : sequence of float
        Snapshot times in days, >= 0, increasing.
    seed_world, seed_local : sequence of float, optional
        Seed x_ic in world mm or local box mm (exactly one of these or ``u0``).
    u0 : ndarray, optional
        Initial density on the box, values in [0, 1].
    safety : float
        Time step ``safety`` x the stability bound, when ``dt`` is not given.
    dt : float, optional
        Fixed time step in days (for ``"euler"`` refused above the stability bound).
    scheme : {"euler", "strang-rkl2"}
        Time integrator of :class:`gbm._core.FisherKpp` (``"strang-rkl2"``: second order, steps
        of ``0.5 / rho`` days by default).
    stages : int, optional
        RKL2 stages per step for ``"strang-rkl2"`` (default: the fewest stable ones).
    progress : bool
        Show a progress bar on stderr.
    face_mean : str
        Mean of D phi on a cell face: ``"harmonic"`` (default) or ``"arithmetic"`` (see
        :class:`gbm._core.FisherKpp`).
    """
    require(geom.phi is not None, "geometry has no phase field: call with_phase_field() first")
    dw = positive("Dw", dw)
    rho = positive("rho", rho)
    positive("ratio", ratio)
    t = np.asarray(times, dtype=np.float64)
    require(t.ndim == 1 and t.size > 0, "times must be a non-empty 1D sequence")
    require(bool(np.all(np.isfinite(t))) and bool(np.all(t >= 0)), "times must be finite and >= 0")
    require(bool(np.all(np.diff(t) > 0)), "times must be strictly increasing")
    given = [x is not None for x in (seed_world, seed_local, u0)]
    require(sum(given) == 1, "give exactly one of seed_world, seed_local or u0")
    seed = None
    if u0 is None:
        s = geom.world_to_local(seed_world) if seed_world is not None else seed_local
        seed = geom.check_seed(s)
        u0 = geom.initial_condition(seed)
    else:
        u0 = np.ascontiguousarray(u0, dtype=np.float64)
        require(u0.shape == geom.shape, f"u0 has shape {u0.shape}, the box is {geom.shape}")
        require(bool(np.all(np.isfinite(u0))), "u0 contains NaN or Inf values")
        require(float(u0.min()) >= 0 and float(u0.max()) <= 1,
                f"u0 values must be in [0, 1], found [{u0.min():.3g}, {u0.max():.3g}]")
    t0 = time.perf_counter()
    solver = make_solver(geom, dw, rho, u0, ratio=ratio, phi_min=phi_min, safety=safety, dt=dt,
                         scheme=scheme, stages=stages, face_mean=face_mean)
    total = solver.steps_until(float(t[-1]))
    bar = _progress(total, progress)
    chunk = max(24, total // 50)  # several steps per call: the 3D kernel fuses 6 steps per pass
    out = np.empty((len(t),) + geom.shape)
    for n, tn in enumerate(t):
        while (left := solver.steps_until(float(tn))) > 0:
            k = min(chunk, left)
            solver.advance(k)
            if bar is not None:
                bar.update(k)
        out[n] = solver.state(float(tn))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    return FdResult(times=t, u=out, dt=float(solver.dt), steps=int(solver.steps),
                    seconds=seconds, active_cells=int(solver.active_cells), seed_local=seed)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="step", desc="FD", leave=False, dynamic_ncols=True)


def summarize(geom: Geometry, result: FdResult) -> list[dict[str, float]]:
    """Per-snapshot tumour figures.

    Returns
    -------
    list of dict
        ``day``; ``volume_u025`` and ``volume_u07``: volume (mm^3; area in mm^2 for 2D) where
        u >= 0.25 / 0.7; ``max_u``; ``burden``: integral of phi*u (mm^3 or mm^2), the tumour cell
        count in units of carrying capacity, which diffusion conserves and growth increases; ``front_radius_mm``: radius of the ball (disk) with the volume of
        {u >= 0.25}; ``max_extent_mm``: largest distance from the seed of a voxel with u >= 0.25.
    """
    rows = []
    dv = geom.voxel_volume
    d = geom.ndim
    coords = None
    if result.seed_local is not None:
        axes = [np.arange(n) * h for n, h in zip(geom.shape, geom.spacing)]
        coords = np.meshgrid(*axes, indexing="ij")
    for day, u in zip(result.times, result.u):
        v25 = float((u >= 0.25).sum() * dv)
        v70 = float((u >= 0.7).sum() * dv)
        r_eq = (v25 / np.pi) ** 0.5 if d == 2 else (3 * v25 / (4 * np.pi)) ** (1 / 3)
        row = {"day": float(day), "volume_u025": v25, "volume_u07": v70,
               "max_u": float(u.max()), "front_radius_mm": float(r_eq)}
        if geom.phi is not None:
            row["burden"] = float((geom.phi * u).sum() * dv)
        if coords is not None and v25 > 0:
            r = np.sqrt(sum((g - c) ** 2 for g, c in zip(coords, result.seed_local)))
            row["max_extent_mm"] = float(r[u >= 0.25].max())
        rows.append(row)
    return rows

