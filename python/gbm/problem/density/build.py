"""Set up an inference problem (PINN or FD-based): geometry, seed, horizon, observations, truth.

* ``atlas``: an axial slice (default: the embedded ICBM152 slice through the documented seed,
  :data:`gbm.model.geometry.DEFAULT_SEED_WORLD_MM`) or the 3D brain, or the user's --wm/--gm maps.
  Synthetic observations come from the Rust FD solver (:func:`gbm.model.simulation.simulate`) at the true
  parameters with a reduced time step (``safety = 0.1``, dt ~ 0.18 d): at the default safety
  0.9 (dt ~ 1.65 d) the explicit scheme's time error moves the front by up to 0.03 in u at day
  300, enough to bias an inferred D by several percent. 2D: daily snapshots, linear in time
  between them; 3D: no snapshots held (:class:`~gbm.problem.density.observations.SolverReference`: the
  observations come from the FD observation operator, fields at a day from one solve each).
* ``disk``: the paper's simple domain (Sec. 3.1), phi = 0.5 + 0.5 tanh(50 - r) (r in mm), pure
  white matter, seed at the centre, T = 300 d; ground truth from the Rust radial solver
  (:func:`gbm._core.radial_solve`, dr = 0.1 mm) as in the paper.

The *region* of the problem is the disk/ball around the seed where the tumour lives: its radius
R = region_factor * (largest distance from the seed of an observation with u >= 1e-3), or the
configured ``region_radius`` (noisy observations exceed 1e-3 everywhere). The PINN's
length scale L is R, and collocation points are sampled in it. For synthetic observations the
sampling radius is first estimated from the reference at T (u >= 1e-4 region, x 1.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gbm import _core
from gbm.errors import InputError
from gbm.model.geometry import (
    DEFAULT_SEED_WORLD_MM,
    DEFAULT_SLICE,
    disk,
    grid_points,
    load_geometry,
)
from gbm.model.simulation import simulate
from gbm.problem.density.observations import (
    GridReference,
    Observations,
    RadialReference,
    SolverReference,
    observations_from_csv,
    observations_from_nifti,
    synthetic_observations,
)
from gbm.problem.domain import Domain

__all__ = ["Problem", "build_problem", "reference_grid", "region_radius_from_reference"]

FD_SAFETY = 0.1
RADIAL_DR = 0.1


@dataclass(frozen=True, eq=False)
class Problem:
    """Everything an inference run (PINN or FD-based) needs besides its settings.

    Attributes
    ----------
    name : str
    geometry : gbm.model.geometry.Geometry
    domain : Domain
    horizon : float, days
    observations : Observations or None
    truth : (Dw, rho) or None
    reference : callable (points (N, d) mm, t (N,) d) -> u (N,), or None
    seed_world : tuple or None
    ratio : float
    radius : float, mm (the region radius R = L)
    info : dict
    """

    name: str
    geometry: Any
    domain: Domain
    horizon: float
    observations: Observations | None
    truth: tuple[float, float] | None
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    seed_world: tuple[float, ...] | None
    ratio: float
    radius: float
    info: dict


def region_radius_from_reference(reference, domain: Domain, horizon: float,
                                 threshold: float = 1e-4, n_rays: int = 64) -> float:
    """Largest distance (mm) from the seed where the reference u(x, T) >= threshold (ray march)."""
    d = domain.ndim
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(n_rays, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    radii = np.arange(0.0, 200.0, 0.5)
    pts = domain.center + dirs[:, None, :] * radii[None, :, None]
    pts = pts.reshape(-1, d)
    hi = (np.asarray(domain.phi.shape) - 1) * np.asarray(domain.spacing)
    ok = np.all((pts >= 0) & (pts <= hi), axis=1)
    u = np.zeros(len(pts))
    u[ok] = reference(pts[ok], np.full(ok.sum(), horizon))
    rr = np.tile(radii, n_rays)
    sel = u >= threshold
    return float(rr[sel].max()) if np.any(sel) else 10.0


def _atlas_geometry(cfg) -> tuple[Any, np.ndarray, tuple[float, ...] | None]:

    seed_world = tuple(cfg.seed_mm) if cfg.seed_mm is not None else DEFAULT_SEED_WORLD_MM
    if cfg.three_d:
        slice_index = None
    elif cfg.slice is not None:
        slice_index = cfg.slice
    elif cfg.wm is None:
        slice_index = DEFAULT_SLICE if cfg.seed_mm is None else None
    else:
        slice_index = None
    geom = load_geometry(cfg.wm, cfg.gm, cfg.csf, slice_index=slice_index)
    if slice_index is None and not cfg.three_d:
        # 2D by default: the axial slice through the seed
        vox = np.linalg.inv(geom.input_affine) @ np.r_[np.asarray(seed_world, float), 1.0]
        k = int(round(vox[2]))
        geom = load_geometry(cfg.wm, cfg.gm, cfg.csf, slice_index=k)
    geom = geom.with_phase_field()
    seed_local = geom.check_seed(geom.world_to_local(seed_world))
    return geom, seed_local, seed_world


def build_problem(cfg, with_observations: bool = True) -> Problem:
    """Build the problem described by a :class:`~gbm.problem.density.config.ProblemConfig`-like config
    (:class:`~gbm.pinn.config.InferConfig`, :class:`~gbm.inference.density_fit.FdFitConfig`,
    :class:`~gbm.pinn.config.ForwardPinnConfig`)."""
    horizon = cfg.resolved_horizon()
    ratio = float(getattr(cfg, "ratio", 10.0))
    dw_true = float(getattr(cfg, "dw_true", getattr(cfg, "dw", 0.13)))
    rho_true = float(getattr(cfg, "rho_true", getattr(cfg, "rho", 0.025)))
    info: dict[str, Any] = {}
    if cfg.problem == "disk":

        geom = disk()
        seed_local = (np.asarray(geom.shape, dtype=np.float64) - 1) / 2 * np.asarray(geom.spacing)
        seed_world = None
        domain = Domain.from_geometry(geom, seed_local, ratio)
        nr = int(round(70.0 / RADIAL_DR))
        r = (np.arange(nr) + 0.5) * RADIAL_DR
        phi_r = 0.5 + 0.5 * np.tanh(50.0 - r)
        u0 = 0.1 * np.exp(-(r**2) / 10.0)
        times = np.arange(0.0, np.ceil(horizon) + 1.0, 1.0)
        u, sinfo = _core.radial_solve(phi_r, dw_true, u0, RADIAL_DR, 2, rho_true, list(times))
        r_ext = np.r_[0.0, r]
        u_ext = np.c_[u[:, :1], u]
        reference = RadialReference(times, r_ext, u_ext, seed_local)
        info["reference"] = f"radial FD, dr {RADIAL_DR} mm, dt {sinfo['dt']:.4g} d"
    else:
        geom, seed_local, seed_world = _atlas_geometry(cfg)
        domain = Domain.from_geometry(geom, seed_local, ratio)
        reference = None
        if getattr(cfg, "observations", None) is None or not with_observations:

            if geom.ndim == 3:
                # no daily 3D snapshots (~5 GB at 1 mm): every query is a fresh solve
                reference = SolverReference(geom, dw_true, rho_true, seed_local, ratio,
                                            FD_SAFETY)
                reference.snapshot(horizon)
                info["reference"] = (f"FD (Rust), dt {reference.dt:.4g} d, observed at (x, t) "
                                     "by FisherKpp.observe")
            else:
                times = np.arange(0.0, np.ceil(horizon) + 1.0, 1.0)
                res = simulate(geom, dw_true, rho_true, times, seed_local=seed_local,
                               ratio=ratio, safety=FD_SAFETY)
                reference = GridReference(res.times, res.u, geom.spacing)
                info["reference"] = f"FD (Rust), dt {res.dt:.4g} d, {res.steps} steps"
    obs = None
    truth: tuple[float, float] | None = (dw_true, rho_true)
    if with_observations and getattr(cfg, "observations", None):
        paths = list(cfg.observations)
        if len(paths) == 1 and paths[0].lower().endswith(".csv"):
            if cfg.days is not None:
                raise InputError("--days is only for NIfTI observations (a CSV has a t column)")
            obs = observations_from_csv(paths[0], geom, horizon)
        else:
            if cfg.days is None:
                raise InputError("--observations with NIfTI maps needs --days (one day per map)")
            obs = observations_from_nifti(paths, list(cfg.days), geom, horizon,
                                          cfg.resolved_n_obs(), cfg.seed, center=domain.center,
                                          threshold=getattr(cfg, "region_threshold", 1e-3))
        truth = None
        reference = None
    radius_est = 30.0
    if reference is not None:
        radius_est = 1.1 * region_radius_from_reference(reference, domain, horizon)
    if with_observations and obs is None:
        assert reference is not None
        obs = synthetic_observations(domain, reference, cfg.resolved_n_obs(), radius_est, horizon,
                                     cfg.seed, cfg.noise)
    if obs is not None:
        r_obs = obs.region_radius(domain.center, getattr(cfg, "region_threshold", 1e-3))
        if r_obs <= 0:
            raise InputError("observations: no observed density reaches "
                             f"{getattr(cfg, 'region_threshold', 1e-3):g}; nothing to fit")
        radius = max(getattr(cfg, "region_factor", 1.25) * r_obs, 10.0)
        if getattr(cfg, "region_radius", None) is not None:
            radius = float(cfg.region_radius)
    else:
        radius = getattr(cfg, "radius", None) or radius_est
    name = "disk" if cfg.problem == "disk" else (
        f"{'3D' if geom.ndim == 3 else '2D slice'} {geom.source}")
    info.update(region_radius_mm=radius, n_obs=0 if obs is None else len(obs))
    return Problem(name, geom, domain, horizon, obs, truth, reference, seed_world, ratio,
                   float(radius), info)


def reference_grid(problem: Problem) -> Callable[[float], np.ndarray] | None:
    """The ground truth of a problem as a function day -> u on the box grid (None if unknown)."""
    ref = problem.reference
    if ref is None:
        return None

    pts = grid_points(problem.domain.phi.shape, problem.domain.spacing)

    def at(day: float) -> np.ndarray:
        if hasattr(ref, "snapshot"):
            return ref.snapshot(day)
        return ref(pts, np.full(len(pts), day)).reshape(problem.domain.phi.shape)

    return at
