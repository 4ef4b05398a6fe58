"""Observations of the tumour density for inference: synthetic (FD at the true parameters) or the
user's (NIfTI density maps at given days, or a CSV of points).

All observations are held as local-mm points ``(N, d)``, times ``(N,)`` in days and densities
``(N,)`` in [0, 1]. User inputs are validated and every problem raises
:class:`gbm.errors.InputError` with a one-line message naming the input.

Reference solutions (:class:`GridReference`, :class:`RadialReference`) evaluate an FD solution at
arbitrary (x, t): linear in time between snapshots, bilinear/trilinear in space (Rust
``interpolate``) or linear in r for the radial solver.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gbm import _core, io
from gbm.errors import InputError
from gbm.model.simulation import make_solver, simulate
from gbm.problem.domain import Domain, draw_seed

__all__ = [
    "GridReference",
    "Observations",
    "RadialReference",
    "SolverReference",
    "observations_from_csv",
    "observations_from_nifti",
    "synthetic_observations",
]


@dataclass(frozen=True, eq=False)
class Observations:
    """Observed tumour density at space-time points.

    Attributes
    ----------
    points : ndarray (N, d), local mm
    t : ndarray (N,), days
    u : ndarray (N,), dimensionless
    source : str
    """

    points: np.ndarray
    t: np.ndarray
    u: np.ndarray
    source: str = "synthetic"

    def __len__(self) -> int:
        return int(self.u.shape[0])

    def region_radius(self, center: np.ndarray, threshold: float = 1e-3) -> float:
        """Largest distance (mm) from ``center`` of an observation with u >= threshold (or 0)."""
        m = self.u >= threshold
        if not np.any(m):
            return 0.0
        return float(np.linalg.norm(self.points[m] - center, axis=1).max())


class GridReference:
    """An FD solution on the box grid at snapshot times, evaluated at any (x, t).

    Parameters
    ----------
    times : ndarray (nt,), days, increasing
    u : ndarray (nt, nx, ny[, nz])
    spacing : sequence of float, mm
    """

    def __init__(self, times: np.ndarray, u: np.ndarray, spacing) -> None:
        self.times = np.asarray(times, dtype=np.float64)
        self.u = np.ascontiguousarray(u, dtype=np.float64)
        self.spacing = [float(s) for s in spacing]

    def __call__(self, points: np.ndarray, t: np.ndarray) -> np.ndarray:

        points = np.ascontiguousarray(points, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        i = np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, len(self.times) - 2)
        out = np.empty(len(t))
        for k in np.unique(i):
            sel = np.nonzero(i == k)[0]
            vals, _ = _core.interpolate(self.u[k : k + 2], self.spacing, points[sel])
            t0, t1 = self.times[k], self.times[k + 1]
            w = np.clip((t[sel] - t0) / (t1 - t0), 0.0, 1.0)
            out[sel] = (1.0 - w) * vals[:, 0] + w * vals[:, 1]
        return out

    def snapshot(self, day: float) -> np.ndarray:
        """The field at ``day`` on the grid (linear in time between snapshots)."""
        i = int(np.clip(np.searchsorted(self.times, day, side="right") - 1, 0, len(self.times) - 2))
        w = float(np.clip((day - self.times[i]) / (self.times[i + 1] - self.times[i]), 0, 1))
        return (1 - w) * self.u[i] + w * self.u[i + 1]


class SolverReference:
    """The FD truth without daily snapshots (3D synthetic problems; memory bound of issue 9).

    A 3D box holds millions of voxels: 151 daily float64 snapshots of the 1 mm atlas are ~5 GB.
    Instead each query runs a fresh solve from the seed and reads the answer off the solver:

    * ``reference(points, t)``: the FD observation operator (``FisherKpp.observe``, one solve to
      max t): u at every (x_i, t_i), exactly the interpolated partial step ``state(t_i)`` (no
      linear interpolation in time between snapshots);
    * ``snapshot(day)``: the field at ``day`` (:func:`gbm.model.simulation.simulate` with that single time;
      cached per day).

    Memory: one solver state plus the cached fields. Parameters as :func:`gbm.model.simulation.simulate`.
    """

    def __init__(self, geom, dw: float, rho: float, seed_local, ratio: float,
                 safety: float) -> None:
        self.geom, self.dw, self.rho, self.ratio, self.safety = geom, dw, rho, ratio, safety
        self.seed_local = np.asarray(seed_local, dtype=np.float64)
        self.spacing = [float(h) for h in geom.spacing]
        self._fields: dict[float, np.ndarray] = {}
        self.dt: float | None = None

    def __call__(self, points: np.ndarray, t: np.ndarray) -> np.ndarray:

        t = np.asarray(t, dtype=np.float64).reshape(-1)
        if t.size and float(t.min()) == float(t.max()) and float(t[0]) in self._fields:
            field = self._fields[float(t[0])]   # one day already solved: interpolate it
            vals, _ = _core.interpolate(field[None], self.spacing,
                                        np.ascontiguousarray(points, dtype=np.float64))
            return np.asarray(vals[:, 0])

        solver = make_solver(self.geom, self.dw, self.rho,
                             self.geom.initial_condition(self.seed_local), ratio=self.ratio,
                             safety=self.safety)
        self.dt = float(solver.dt)
        return np.asarray(solver.observe(np.ascontiguousarray(points, dtype=np.float64),
                                         np.ascontiguousarray(t)))

    def snapshot(self, day: float) -> np.ndarray:
        """The field at ``day`` on the grid (one solve per new day)."""
        key = float(day)
        if key not in self._fields:

            res = simulate(self.geom, self.dw, self.rho, [key], seed_local=self.seed_local,
                           ratio=self.ratio, safety=self.safety)
            self.dt = float(res.dt)
            self._fields[key] = res.u[0]
        return self._fields[key]


class RadialReference:
    """A radially-symmetric solution u(r_i, t_j) around ``center``, evaluated at any (x, t)."""

    def __init__(self, times: np.ndarray, r: np.ndarray, u: np.ndarray, center) -> None:
        self.times = np.asarray(times, dtype=np.float64)
        self.r = np.asarray(r, dtype=np.float64)
        self.u = np.asarray(u, dtype=np.float64)
        self.center = np.asarray(center, dtype=np.float64)

    def __call__(self, points: np.ndarray, t: np.ndarray) -> np.ndarray:
        rr = np.linalg.norm(np.asarray(points) - self.center, axis=1)
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        i = np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, len(self.times) - 2)
        w = np.clip((t - self.times[i]) / (self.times[i + 1] - self.times[i]), 0.0, 1.0)
        j = np.clip(np.searchsorted(self.r, rr, side="right") - 1, 0, len(self.r) - 2)
        a = np.clip((rr - self.r[j]) / (self.r[j + 1] - self.r[j]), 0.0, 1.0)
        u0 = (1 - a) * self.u[i, j] + a * self.u[i, j + 1]
        u1 = (1 - a) * self.u[i + 1, j] + a * self.u[i + 1, j + 1]
        return (1 - w) * u0 + w * u1


def synthetic_observations(
    domain: Domain,
    reference,
    n: int,
    radius: float,
    horizon: float,
    seed: int,
    noise: float = 0.0,
    phi_min: float = 0.5,
) -> Observations:
    """``n`` observations of ``reference`` at radially-sampled points around the seed.

    Points: :func:`gbm._core.sample_radial` (radius ``radius`` mm, t ~ U(0, T)), kept where
    phi >= phi_min. Values: the reference solution plus optional Gaussian noise of standard
    deviation ``noise`` (not clipped, so the noise stays unbiased).
    """

    pts, t = _core.sample_radial(
        domain.phi,
        list(domain.spacing),
        [float(c) for c in domain.center],
        float(radius),
        int(n),
        float(horizon),
        draw_seed(seed, 0, stream=7),
        phi_min,
    )
    u = reference(pts, t)
    if noise > 0:
        rng = np.random.default_rng(draw_seed(seed, 1, stream=7))
        u = u + rng.normal(0.0, noise, size=u.shape)
    src = "synthetic FD" + (f" + N(0, {noise:g}^2) noise" if noise > 0 else "")
    return Observations(pts, t, u, src)


def _check_values(name: str, u: np.ndarray) -> None:
    if not np.all(np.isfinite(u)):
        raise InputError(f"{name}: contains NaN or Inf values")
    lo, hi = float(np.min(u)), float(np.max(u))
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(
            f"{name}: tumour densities must be in [0, 1], found range [{lo:.4g}, {hi:.4g}]"
        )


def _check_times(name: str, t: np.ndarray, horizon: float) -> None:
    if not np.all(np.isfinite(t)):
        raise InputError(f"{name}: times contain NaN or Inf values")
    bad = (t <= 0) | (t > horizon + 1e-9)
    if np.any(bad):
        raise InputError(
            f"{name}: observation time {float(t[np.argmax(bad)]):g} d is outside (0, T = "
            f"{horizon:g} d]"
        )


def observations_from_nifti(
    paths: list[str],
    days: list[float],
    geom,
    horizon: float,
    n: int | None,
    seed: int,
    phi_min: float = 0.5,
    center: np.ndarray | None = None,
    threshold: float = 1e-3,
    margin: float = 1.5,
) -> Observations:
    """Observations from NIfTI density maps on the input grid, one map per day.

    Brain voxels (phi >= phi_min) of each map become observations at their voxel centres. With a
    ``center`` (the seed), only voxels within ``margin`` x the largest distance from it of a voxel
    with u >= ``threshold`` (any map) are kept: far from the tumour the maps are zero and would
    only dilute the data term. If more than ``n`` remain, a seeded random subset of ``n`` is kept.
    """

    if len(paths) == 0:
        raise InputError("--observations: no file given")
    if len(days) != len(paths):
        raise InputError(
            f"--days: {len(days)} day(s) given for {len(paths)} observation map(s); give one "
            "day per map"
        )
    t_all = np.asarray(days, dtype=np.float64)
    _check_times("--days", t_all, horizon)
    assert geom.phi is not None
    inside = geom.phi >= phi_min
    axes = [np.arange(s) * h for s, h in zip(geom.shape, geom.spacing)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)[inside]
    pts, ts, us = [], [], []
    i0, j0, k0 = geom.offset
    for path, day in zip(paths, t_all):
        name = f"--observations {path}"
        data, _aff = io.load_nifti(path, name)
        if tuple(data.shape) != tuple(geom.full_shape):
            raise InputError(
                f"{name}: shape {tuple(data.shape)} differs from the tissue maps' grid "
                f"{tuple(geom.full_shape)}"
            )
        if geom.ndim == 2:
            box = data[i0 : i0 + geom.shape[0], j0 : j0 + geom.shape[1], k0]
        else:
            box = data[
                i0 : i0 + geom.shape[0], j0 : j0 + geom.shape[1], k0 : k0 + geom.shape[2]
            ]
        _check_values(name, data)
        pts.append(grid)
        ts.append(np.full(len(grid), day))
        us.append(box[inside])
    points, t, u = np.concatenate(pts), np.concatenate(ts), np.concatenate(us)
    if center is not None:
        dist = np.linalg.norm(points - np.asarray(center, dtype=np.float64), axis=1)
        hot = u >= threshold
        if not np.any(hot):
            raise InputError(f"--observations: no density reaches {threshold:g} in the brain; "
                             "nothing to fit")
        keep = dist <= margin * float(dist[hot].max())
        points, t, u = points[keep], t[keep], u[keep]
    if n is not None and len(u) > n:
        rng = np.random.default_rng(draw_seed(seed, 2, stream=7))
        keep = np.sort(rng.choice(len(u), size=n, replace=False))
        points, t, u = points[keep], t[keep], u[keep]
    return Observations(np.ascontiguousarray(points), t, np.clip(u, 0.0, 1.0), "NIfTI: "
                        + ", ".join(f"{Path(p).name}@{d:g}d" for p, d in zip(paths, t_all)))


def observations_from_csv(path: str, geom, horizon: float, phi_min: float = 0.5) -> Observations:
    """Observations from a CSV with a header: ``x,y,z,t,u`` (world mm, days) — or ``x,y,t,u`` for
    a 2D slice (z is the slice's). Points must lie in the brain (phi >= phi_min)."""
    name = f"--observations {path}"
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{name}: file not found")
    try:
        with p.open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{name}: cannot read ({e})") from None
    if not rows:
        raise InputError(f"{name}: empty file")
    header = [h.strip().lower() for h in rows[0]]
    allowed = (["x", "y", "z", "t", "u"], ["x", "y", "t", "u"])
    if header not in allowed:
        raise InputError(
            f"{name}: header must be x,y,z,t,u (or x,y,t,u for a 2D slice), got {','.join(header)}"
        )
    if header == ["x", "y", "t", "u"] and geom.ndim == 3:
        raise InputError(f"{name}: a 3D problem needs x,y,z,t,u columns")
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise InputError(f"{name}: no data rows")
    try:
        arr = np.array([[float(c) for c in r] for r in body], dtype=np.float64)
    except ValueError:
        raise InputError(f"{name}: non-numeric value in the data rows") from None
    if arr.ndim != 2 or arr.shape[1] != len(header):
        raise InputError(f"{name}: every row needs {len(header)} values")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name}: contains NaN or Inf values")
    u, t = arr[:, -1], arr[:, -2]
    _check_values(name, u)
    _check_times(name, t, horizon)
    xyz = arr[:, :-2]
    if xyz.shape[1] == 2:
        z = geom.local_to_world(np.zeros(geom.ndim))[2]
        xyz = np.c_[xyz, np.full(len(xyz), z)]
    try:
        local = np.atleast_2d(geom.world_to_local(xyz))
    except InputError as e:
        raise InputError(f"{name}: {e}") from None
    hi = (np.asarray(geom.shape) - 1) * np.asarray(geom.spacing)
    outside = np.any((local < 0) | (local > hi), axis=1)
    if not np.any(outside):

        phi_at, _ = _core.interpolate(
            np.ascontiguousarray(geom.phi, dtype=np.float64), list(geom.spacing), local
        )
        outside = np.asarray(phi_at).reshape(-1) < phi_min
    if np.any(outside):
        k = int(np.argmax(outside))
        raise InputError(
            f"{name}: point {tuple(round(float(c), 2) for c in xyz[k])} mm (row {k + 2}) is outside the brain"
        )
    return Observations(np.ascontiguousarray(local), t, u, f"CSV: {p.name}")
