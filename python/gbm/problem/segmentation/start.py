"""A start defined by the first scan (``gbm fit --start first-scan``): the density at the first
scan built from its segmentation, so that later scans are solved forward from the first one and
the tumour's unknown start (its initial condition at age 0) drops out of the fit.

Why: gbm's default start is the paper's Gaussian ``0.1 exp(-|x - x0|^2 / 10 mm^2)`` at age 0.
A tumour that began otherwise (a larger or denser seed, another solver's start) reaches the size
of the first scan at another age and with a front that is at another stage of its slow approach
to the Fisher speed 2 sqrt(Dw rho); fitting it from the paper's start shifts Dw and rho.  Solving
from the first scan instead leaves only what happened between the scans to explain.

The density at the first scan (``first_scan_density``): u = P(s(x)), with P the radial profile
of gbm's own model for a tumour of the scan's size (below) and s a signed wave coordinate in
units of lambda = sqrt(Dw/rho), 0 on the whole tumour's boundary, positive outside:

* outside the whole tumour: s = (d - h) / (lambda sqrt(k)), d the distance (mm) to the whole
  tumour, h half a voxel (distances run between voxel centres, the boundary lies between them),
  k = wm + gm/ratio clipped to [0.1, 1], the local D/Dw: the tail is steeper where D is smaller,
  as the model's own tail is in grey matter;
* in the edema: s = s_c (1 - f), f = (d_c - h) / ((d_c - h) + (d_w - h)), d_c the distance to
  the core and d_w to the outside; so u = theta_c on the core's boundary and theta_e on the whole
  tumour's, both as segmented, whatever lambda;
* in the core: s = s_c - (d_in - h) / lambda, d_in the distance to the non-core voxels (and u at
  least theta_c, for a lambda whose profile never reaches theta_c);
* no core: s = -(d_in - h) / lambda inside the whole tumour.

P and s_c: the radially symmetric model (``gbm._core.radial_solve``, ball in 3D, disk in 2D) in
scaled units (length lambda, time 1/rho, so D = rho = 1), from the paper's start, snapshot at the
scaled time rho t* at which its whole tumour (u >= theta_e) has the radius R/lambda of the scan's
equivalent ball (linear in time between two snapshots 0.05 apart); P(s) = u(r_e + s) with r_e
where that profile falls through theta_e, and s_c where it falls through theta_c.  P decreases in
r, so thresholding u gives the first scan back exactly.  rho t* is also the age a
tumour from the paper's start needs to reach the first scan's size: the fit reports it as rho*T
(and T = rho t* / rho as the age at the first scan), the same meaning as the default fit's.

Units: mm, days; s and rho t are dimensionless.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gbm import _core
from gbm.model.geometry import IC_AMPLITUDE, IC_WIDTH_MM2

__all__ = ["FirstScanStart", "WaveProfile", "equivalent_radius", "wave_profile"]

#: Cell width of the radial solve, in units of lambda.
RADIAL_DR = 0.1
#: Clip of the tissue factor k = D/Dw in the tail's scaling (pure grey matter at Dw/Dg = 10).
K_MIN = 0.1


@dataclass(frozen=True, eq=False)
class WaveProfile:
    """The model's radial profile at the first scan's size (module header).

    s : ndarray, increasing; the wave coordinate (units of lambda, 0 on the whole tumour's edge).
    u : ndarray; the density there (decreasing in s).
    s_core : float; where u = theta_c (<= 0).
    rho_t : float; rho x the time from the paper's start to this size (dimensionless).
    """

    s: np.ndarray
    u: np.ndarray
    s_core: float
    rho_t: float


def wave_profile(lam: float, radius_mm: float, theta_c: float, theta_e: float,
                 ndim: int) -> WaveProfile:
    """The radial model's profile when its whole tumour has radius ``radius_mm`` (module header).

    Parameters
    ----------
    lam : float
        lambda = sqrt(Dw/rho), mm (> 0).
    radius_mm : float
        Radius of the ball (disk in 2D) with the first scan's whole-tumour volume, mm.
    theta_c, theta_e : float
        Thresholds of the core and the whole tumour.
    ndim : int
        2 or 3.
    """
    target = radius_mm / lam
    dr = RADIAL_DR
    nr = math.ceil((target + 30.0) / dr)
    r = (np.arange(nr) + 0.5) * dr
    u0 = IC_AMPLITUDE * np.exp(-(r * lam) ** 2 / IC_WIDTH_MM2)
    t_max = 0.75 * target + 30.0          # front speed 2 in these units, with a margin
    times = np.arange(0.0, t_max, 0.05)
    ones = np.ones(nr)
    u, _ = _core.radial_solve(ones, ones, u0, dr, ndim, 1.0, list(times), safety=0.5)
    edge = np.array([_edge(r, ui, theta_e) for ui in u])
    k = int(np.clip(np.searchsorted(edge, target), 1, len(times) - 1))
    lo, hi = edge[k - 1], edge[k]
    w = float(np.clip((target - lo) / (hi - lo), 0.0, 1.0)) if hi > lo else 1.0
    prof = (1.0 - w) * u[k - 1] + w * u[k]
    s = r - _edge(r, prof, theta_e)      # 0 exactly where this profile falls through theta_e
    return WaveProfile(s=s, u=prof, s_core=_crossing(s, prof, theta_c),
                       rho_t=float((1.0 - w) * times[k - 1] + w * times[k]))


def _edge(r: np.ndarray, u: np.ndarray, level: float) -> float:
    """Outermost radius where u >= level, linearly interpolated (0 if nowhere)."""
    above = np.flatnonzero(u >= level)
    if above.size == 0:
        return 0.0
    i = int(above[-1])
    if i + 1 >= len(r):
        return float(r[-1])
    return float(r[i] + (u[i] - level) / (u[i] - u[i + 1]) * (r[i + 1] - r[i]))


def _crossing(s: np.ndarray, u: np.ndarray, level: float) -> float:
    """The outermost s <= 0 where u falls through ``level`` (the profile's maximum if it never
    reaches it)."""
    inside = s <= 0
    si, ui = s[inside], u[inside]
    above = np.flatnonzero(ui >= level)
    if above.size == 0:
        return float(si[int(np.argmax(ui))])
    i = int(above[-1])
    if i + 1 >= len(si):
        return float(si[i])
    return float(si[i] + (ui[i] - level) / (ui[i] - ui[i + 1]) * (si[i + 1] - si[i]))


class FirstScanStart:
    """The density at the first scan from its segmentation on one grid (module header).

    Parameters
    ----------
    core, whole : ndarray of bool, box shape
        The first scan's core and whole tumour.
    spacing : sequence of float
        Voxel size, mm.
    kfac : ndarray, box shape
        Tissue factor D/Dw = wm + gm/ratio.
    """

    def __init__(self, core: np.ndarray, whole: np.ndarray, spacing: Sequence[float],
                 kfac: np.ndarray) -> None:
        from scipy import ndimage

        core = np.asarray(core, dtype=bool)
        whole = np.asarray(whole, dtype=bool) | core
        sp = tuple(float(h) for h in spacing)
        h = 0.5 * min(sp)
        self.ndim = core.ndim
        self.voxel_volume = float(np.prod(sp))
        self.radius_mm = equivalent_radius(int(whole.sum()), self.voxel_volume, self.ndim)
        self._last: tuple[tuple[float, float, float], WaveProfile] | None = None
        self.has_core = bool(core.any())
        self.outside = ~whole
        self.edema = whole & ~core
        self.core = core
        scale = np.sqrt(np.clip(kfac, K_MIN, 1.0))
        self.d_out = (ndimage.distance_transform_edt(~whole, sampling=sp) - h) / scale
        d_w = ndimage.distance_transform_edt(whole, sampling=sp) - h
        if self.has_core:
            d_c = ndimage.distance_transform_edt(~core, sampling=sp) - h
            self.frac = np.where(self.edema, d_c / np.maximum(d_c + d_w, 1e-12), 0.0)
            self.d_in = ndimage.distance_transform_edt(core, sampling=sp) - h
        else:
            self.frac = np.zeros(core.shape)
            self.d_in = d_w

    def profile(self, lam: float, theta_c: float, theta_e: float) -> WaveProfile:
        """The model's radial profile at this scan's size for this lambda (the last one is
        kept: a solve asks for it twice, for its age and for its start)."""
        key = (float(lam), float(theta_c), float(theta_e))
        if self._last is None or self._last[0] != key:
            self._last = (key, wave_profile(lam, self.radius_mm, theta_c, theta_e, self.ndim))
        return self._last[1]

    def density(self, lam: float, theta_c: float, theta_e: float,
                prof: WaveProfile | None = None) -> np.ndarray:
        """u at the first scan (float64, box shape) for lambda ``lam`` (mm)."""
        p = self.profile(lam, theta_c, theta_e) if prof is None else prof
        s = np.where(self.outside, self.d_out / lam, 0.0)
        if self.has_core:
            s = np.where(self.edema, p.s_core * (1.0 - self.frac), s)
            s = np.where(self.core, p.s_core - self.d_in / lam, s)
        else:
            s = np.where(self.outside, s, -self.d_in / lam)
        u = np.interp(s, p.s, p.u)
        # a profile that never reaches theta_c (a lambda too long for this core): the core
        # still reads back as core
        return np.where(self.core, np.maximum(u, theta_c), u)


def equivalent_radius(n_voxels: int, voxel_volume: float, ndim: int) -> float:
    """Radius (mm) of the ball (disk in 2D) with the volume of ``n_voxels`` voxels."""
    v = n_voxels * voxel_volume
    return float((v / math.pi) ** 0.5 if ndim == 2 else (3 * v / (4 * math.pi)) ** (1 / 3))
