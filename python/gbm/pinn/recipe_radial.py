"""PINN-GBM's characteristic fit (:mod:`gbm.pinn.recipe`, step 1), torch-free: lambda and rho*T
of a radially symmetric tumour whose core and whole-tumour radii match the scan's.

Model: gbm's own radially symmetric Fisher-Kolmogorov solve from the paper's Gaussian start
``0.1 exp(-r^2 / 10 mm^2)`` in a homogeneous medium (D = Dw everywhere, as PINN-GBM's 1D fit:
the tissue enters only later, through the PDE residual), ball in 3D, disk in 2D
(:func:`gbm.problem.segmentation.start.wave_profile`: scaled units, length lambda = sqrt(Dw/rho),
time 1/rho). For a given lambda, the profile at the moment its whole tumour (u >= theta_e) has the
observed radius R_e gives the model's core radius R_c(lambda) (where it falls through theta_c) and
rho t at that moment.

Fit (one scan): lambda solves R_c(lambda) = R_c,observed (bracketed on a log grid over the
lambda range, then Brent's method in log lambda; the closest grid point when no bracket exists,
e.g. a scan without core), and rho*T is the profile's rho t. Radii are the equivalent radii
(ball / disk of the region's volume / area), PINN-GBM's ``radius_method='rvol'``; its default
``'rmax'`` (largest distance from the centroid) overstates an elongated tumour.

Several scans: lambda per scan as above, their geometric mean; rho t_k of each scan's whole
radius at that lambda; rho = (rho t_last - rho t_first) / (d_last - d_first) (days), the age at
the first scan T0 = rho t_first / rho, Dw = lambda^2 rho. (PINN-GBM fits one scan; this is the
natural extension, gbm's choice.)

Units: mm, days, Dw mm^2/day, rho 1/day.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from gbm.errors import require
from gbm.problem.segmentation.start import equivalent_radius, wave_profile
from gbm.problem.segmentation.unknowns import NOMINAL_DAYS

__all__ = ["RadialFit", "core_radius", "fit_lambda", "radial_fit", "region_radii"]

#: Points of the log-spaced lambda grid that brackets the root.
GRID_POINTS = 14


@dataclass(frozen=True)
class RadialFit:
    """The radial fit of :func:`radial_fit`.

    Attributes
    ----------
    lam : float
        lambda = sqrt(Dw/rho), mm.
    rho_t0 : float
        rho x the age at the first scan.
    dw, rho, t0 : float
        Dw (mm^2/day), rho (1/day), age at the first scan (days); nominal for one scan
        (t0 = :data:`NOMINAL_DAYS`).
    radii : list of (float, float)
        Per scan, the observed equivalent radii (core, whole tumour), mm.
    model_core_radii : list of float
        Per scan, the fitted model's core radius at the scan's whole-tumour radius, mm.
    solves : int
        Radial solves used.
    """

    lam: float
    rho_t0: float
    dw: float
    rho: float
    t0: float
    radii: list[tuple[float, float]]
    model_core_radii: list[float]
    solves: int


def region_radii(core: np.ndarray, whole: np.ndarray, voxel_volume: float,
                 ndim: int) -> tuple[float, float]:
    """Equivalent radii (mm) of a scan's core and whole tumour (bool arrays, any shape; voxel
    volume in mm^3, or mm^2 for a 2D slice)."""
    return (equivalent_radius(int(np.count_nonzero(core)), voxel_volume, ndim),
            equivalent_radius(int(np.count_nonzero(whole)), voxel_volume, ndim))


def core_radius(lam: float, r_whole: float, theta_c: float, theta_e: float,
                ndim: int) -> tuple[float, float]:
    """The radial model's core radius (mm; 0 when its profile never reaches theta_c) and rho t
    when its whole tumour has radius ``r_whole`` (mm), for lambda = ``lam`` (mm)."""
    w = wave_profile(lam, r_whole, theta_c, theta_e, ndim)
    return max(r_whole + lam * w.s_core, 0.0), w.rho_t


def fit_lambda(r_core: float, r_whole: float, theta_c: float, theta_e: float, ndim: int,
               lambda_range: tuple[float, float]) -> tuple[float, int]:
    """lambda (mm) whose radial model has core radius ``r_core`` at whole radius ``r_whole``
    (module header); returns (lambda, radial solves used)."""
    require(r_whole > 0, "PINN-GBM's radial fit needs a whole tumour")
    lams = np.geomspace(lambda_range[0], lambda_range[1], GRID_POINTS)
    g = np.array([core_radius(float(v), r_whole, theta_c, theta_e, ndim)[0] - r_core
                  for v in lams])
    n = GRID_POINTS
    change = np.flatnonzero((g[:-1] >= 0) & (g[1:] < 0))
    if change.size == 0:
        return float(lams[int(np.argmin(np.abs(g)))]), n
    i = int(change[0])
    calls = [0]

    def f(log_lam: float) -> float:
        calls[0] += 1
        return core_radius(math.exp(log_lam), r_whole, theta_c, theta_e, ndim)[0] - r_core

    root = brentq(f, math.log(lams[i]), math.log(lams[i + 1]), xtol=1e-3)
    return math.exp(float(root)), n + calls[0]


def radial_fit(radii: Sequence[tuple[float, float]], days: Sequence[float], theta_c: float,
               theta_e: float, ndim: int,
               lambda_range: tuple[float, float] = (0.5, 12.0)) -> RadialFit:
    """Fit lambda and rho*T (one scan) or lambda, rho and the age (several dated scans) to the
    scans' equivalent radii (module header).

    Parameters
    ----------
    radii : sequence of (core, whole) radii, mm, one per scan
    days : sequence of float
        Days since the first scan, one per scan (first 0).
    theta_c, theta_e : float
        The thresholds of core and whole tumour.
    ndim : int
        2 or 3.
    lambda_range : (float, float)
        Where lambda is searched, mm.

    Raises
    ------
    InputError
        A scan without whole tumour, or several scans whose whole tumour does not grow.
    """
    require(len(radii) == len(days) and len(radii) >= 1, "one (core, whole) radius pair per scan")
    fits = [fit_lambda(rc, rw, theta_c, theta_e, ndim, lambda_range) for rc, rw in radii]
    lam = math.exp(float(np.mean([math.log(v) for v, _ in fits])))
    solves = sum(n for _, n in fits)
    per_scan = [core_radius(lam, rw, theta_c, theta_e, ndim) for _, rw in radii]
    solves += len(radii)
    rho_t = [rt for _, rt in per_scan]
    if len(radii) == 1:
        rho = rho_t[0] / NOMINAL_DAYS
        t0 = NOMINAL_DAYS
    else:
        span = float(days[-1] - days[0])
        growth = rho_t[-1] - rho_t[0]
        require(span > 0 and growth > 0, "PINN-GBM's radial fit needs a whole tumour that grows "
                "between the first and the last scan")
        rho = growth / span
        t0 = rho_t[0] / rho
    return RadialFit(lam=lam, rho_t0=rho_t[0], dw=lam * lam * rho, rho=rho, t0=t0,
                     radii=[(float(a), float(b)) for a, b in radii],
                     model_core_radii=[float(rc) for rc, _ in per_scan], solves=solves)
