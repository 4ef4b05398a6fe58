"""Noise level of scattered observations, estimated without a model (no torch needed).

Nearest-neighbour difference estimator (Rice 1984, Munk et al. 2005 for scattered designs) with a
robust scale::

    z_i     = ((x_i - x_c) / L, t_i / T)            the PINN's scaled space-time coordinates
    j(i)    = the nearest other observation to z_i (Euclidean, k-d tree)
    d_i     = u_i - u_j(i)
    sigma_hat = median_i |d_i| / (sqrt(2) Phi^-1(3/4))        Phi^-1(3/4) = 0.67449

For u_i = s(z_i) + e_i with e_i i.i.d. N(0, sigma^2), d_i = s(z_i) - s(z_j) + e_i - e_j: where the
signal is flat between neighbours (outside the tumour, u = 0, and inside its saturated core,
u = 1, which hold most observations), d_i ~ N(0, 2 sigma^2), whose median absolute value is
sqrt(2) sigma Phi^-1(3/4). The median ignores the minority of pairs that straddle the front. The
signal adds a small upward bias (at 1 % noise +4 % on the atlas slice, +16 % on the disk, where
the front holds more of the points); on clean observations sigma_hat is ~1e-4 (the interpolation
of the reference solution). The estimate needs no fitted network, so it does not shrink when a
network fits part of the noise (the misfit of such a network does).
"""

from __future__ import annotations

import numpy as np

from gbm.errors import InputError

__all__ = ["estimate_noise", "neighbours"]

#: Phi^-1(3/4): the median of |N(0, 1)|.
_MEDIAN_ABS_NORMAL = 0.6744897501960817


def estimate_noise(points: np.ndarray, t: np.ndarray, u: np.ndarray, center, length: float,
                   horizon: float) -> float:
    """Standard deviation of the observation noise from nearest-neighbour differences.

    Parameters
    ----------
    points : ndarray (N, d), mm
    t : ndarray (N,), days
    u : ndarray (N,), observed density
    center : sequence of d floats, mm
        The scaling centre x_c (the PINN's: the seed).
    length : float, mm
        The length scale L (the PINN's region radius).
    horizon : float, days
        The time scale T.

    Returns
    -------
    float
        sigma_hat, in units of u (see the module docstring for the formula).
    """
    pts = np.asarray(points, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    if pts.ndim != 2 or pts.shape[0] != u.shape[0] or t.shape[0] != u.shape[0]:
        raise InputError(f"noise estimate: points {pts.shape}, t {t.shape} and u {u.shape} "
                         "must describe the same N observations")
    if u.shape[0] < 2:
        raise InputError(f"noise estimate: needs at least 2 observations, got {u.shape[0]}")
    if not (length > 0 and horizon > 0):
        raise InputError(f"noise estimate: length and horizon must be > 0, got {length}, "
                         f"{horizon}")
    idx = neighbours(pts, t, center, length, horizon, 2)
    d = u - u[idx[:, 1]]
    return float(np.median(np.abs(d)) / (np.sqrt(2.0) * _MEDIAN_ABS_NORMAL))


def neighbours(points: np.ndarray, t: np.ndarray, center, length: float, horizon: float,
               k: int) -> np.ndarray:
    """Indices (N, k) of the k nearest observations of each (itself first), in the scaled
    coordinates z = ((x - x_c) / L, t / T) of the module docstring."""
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    z = np.column_stack([(pts - np.asarray(center, dtype=np.float64)) / length,
                         np.asarray(t, dtype=np.float64).reshape(-1) / horizon])
    k = int(min(max(k, 1), len(z)))
    _, idx = cKDTree(z).query(z, k=k)
    return np.asarray(idx, dtype=np.int64).reshape(len(z), k)
