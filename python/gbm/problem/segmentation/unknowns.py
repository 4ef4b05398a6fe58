"""The unknowns of a patient fit, shared by the FD-based fit (:mod:`gbm.inference.segmentation_fit`) and the PINN (:mod:`gbm.pinn.patient`): search coordinates, their physical meaning and boxes, the start, the result.

Search coordinates: x = (x0 in the fine box's local mm, log lambda, log r1[, log g], theta_c,
theta_e) with r1 = 2 lambda rho T0 the asymptotic front radius at the first scan and g = 2 lambda
rho (t_last - t_first) the front's advance between the first and the last scan (several scans
only); see :mod:`gbm.inference.segmentation_fit` for why. With the start defined by the first
scan (``start = "first-scan"``, several scans, :mod:`gbm.problem.segmentation.start`): x = (log
lambda, log g[, theta_c, theta_e]); the origin is not fitted (reported: the first scan's core
centroid) and rho*T0 is the paper start's time to the first scan's size. Units: mm, days.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gbm.errors import require
from gbm.problem.segmentation.model import (
    THETA_C,
    THETA_C_BOUNDS,
    THETA_E,
    THETA_E_BOUNDS,
    check_thresholds,
)
from gbm.problem.segmentation.start import FirstScanStart, equivalent_radius

__all__ = ["NOMINAL_DAYS", "STARTS", "PatientFitResult", "PatientFitSettings", "Physical",
           "Unknowns", "equivalent_radius"]

#: Nominal age used to put a one-scan solve on a time axis (u at the scan does not depend on it).
NOMINAL_DAYS = 100.0

#: The starts a fit can assume: the paper's Gaussian at the origin at age 0, or the first scan.
STARTS = ("paper", "first-scan")


@dataclass(frozen=True)
class PatientFitSettings:
    """Settings of the fit (units: mm, days).

    lambda_range : bounds of lambda = sqrt(Dw/rho), mm.
    fit_thresholds : fit theta_c, theta_e within their bounds (else fixed at theta_c, theta_e).
    ratio : Dw/Dg (fixed).
    coarse_mm : voxel size of the global stage's grid (0: no coarse grid, global stage on the
        input grid).
    crop_mm : margin of the solve sub-box around the whole tumour of all scans.
    global_solves, local_solves : solve budgets of the two stages (local 30 since the
        Strang-RKL2 default: on the 1 mm atlas patient its lambda error after 30 local solves,
        +1.2 %, is below the Euler fit's after 60, +2.1 %; 60 give +0.8 %, benches/RESULTS.md
        "Speed").
    popsize : CMA-ES population (None: cma's default 4 + 3 ln n).
    scheme : time integrator of every solve: "strang-rkl2" (second order, the default) or
        "euler" (:mod:`gbm.problem.segmentation.levels`, "Time stepping").
    safety : ``scheme="euler"`` only: time step = safety x stability bound on the input grid
        (local stage, outputs); at 0.9 the explicit scheme's time error biased lambda by +25 %
        on a synthetic patient made at 0.25, at 0.45 by +0.1 % (benches/RESULTS.md).
    coarse_safety : the same on the coarse grid (at 0.9 its time error put the global optimum
        of a synthetic two-scan patient at lambda +25 %, outside the local stage's box).
    phase_cache : reuse phase fields from the user's cache (:mod:`gbm.model.phase_cache`).
    origin_box_mm : the origin is searched within the first scan's whole-tumour bounding box
        grown by this margin.
    local_frac : half-width of the local box: factors exp(+-local_frac) on lambda, r1, g;
        +-local_mm on the origin; +-0.1 on the thresholds.
    local_rounds : at most this many local boxes (a round ending on its box's edge starts a
        new box there).
    seed : CMA-ES seed.
    start : "paper" (the paper's Gaussian at the fitted origin at age 0) or "first-scan" (the
        density at the first scan from its segmentation; several scans;
        :mod:`gbm.problem.segmentation.start`).
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
    local_solves: int = 30
    popsize: int | None = None
    scheme: str = "strang-rkl2"
    safety: float = 0.5
    coarse_safety: float = 0.5
    phase_cache: bool = False
    origin_box_mm: float = 5.0
    local_frac: float = 0.25
    local_mm: float = 4.0
    local_rounds: int = 4
    seed: int = 0
    start: str = "paper"

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
        require(self.scheme in ("strang-rkl2", "euler"),
                f"--scheme must be strang-rkl2 or euler, got {self.scheme!r}")
        require(self.coarse_mm >= 0 and self.crop_mm > 0, "coarse_mm >= 0 and crop_mm > 0")
        require(self.start in STARTS, f"--start must be {' or '.join(STARTS)}, got "
                f"{self.start!r}")


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
    from_first_scan: bool = False   # the solve starts at the first scan (``start="first-scan"``)

    def solve_times(self, days_rel: Sequence[float]) -> list[float]:
        """Solver times (days) of days since the first scan: the age t0 + d from the start at
        age 0, or d itself when the solve starts at the first scan."""
        if self.from_first_scan:
            return [float(d) for d in days_rel]
        return [self.t0 + float(d) for d in days_rel]


class Unknowns:
    """The search coordinates x of the module header and their boxes.

    ``first`` (the fine level's :class:`FirstScanStart`) makes the start the first scan: x has no
    origin and no r1 then (module header)."""

    def __init__(self, ndim: int, days_rel: Sequence[float], origin0: np.ndarray,
                 origin_lo: np.ndarray, origin_hi: np.ndarray, radius1: float,
                 radius_last: float, settings: PatientFitSettings,
                 first: FirstScanStart | None = None) -> None:
        self.ndim = ndim
        self.days = np.asarray(days_rel, dtype=np.float64)
        self.multi = len(self.days) > 1
        self.span = float(self.days[-1] - self.days[0]) if self.multi else 0.0
        self.fit_thresholds = settings.fit_thresholds
        self.settings = settings
        self.first = first
        self.origin0 = np.asarray(origin0, dtype=np.float64)
        require(first is None or self.multi, "--start first-scan needs two or more dated scans "
                "(the first is the start, the later ones are fitted)")
        lam_lo, lam_hi = settings.lambda_range
        names = [f"origin_{'xyz'[k]}_mm" for k in range(ndim)] + ["log_lambda", "log_r1"]
        lo = list(origin_lo) + [math.log(lam_lo), math.log(0.3 * radius1)]
        hi = list(origin_hi) + [math.log(lam_hi), math.log(3.0 * radius1)]
        lam0 = float(np.clip(2.0, lam_lo, lam_hi))
        x0 = list(origin0) + [math.log(lam0), math.log(1.1 * radius1)]
        if first is not None:   # neither an origin nor r1: log lambda first
            names, lo, hi, x0 = names[ndim:-1], lo[ndim:-1], hi[ndim:-1], x0[ndim:-1]
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

    @property
    def sizes(self) -> slice:
        """Where the log-size coordinates lie in x: log lambda, log r1[, log g] (first-scan
        start: log lambda, log g); the origin comes before them, the thresholds after."""
        k = 0 if self.first is not None else self.ndim
        return slice(k, k + (2 if self.first is not None or not self.multi else 3))

    def physical(self, x: np.ndarray) -> Physical:
        if self.first is not None:
            return self._physical_first(x)
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

    def _physical_first(self, x: np.ndarray) -> Physical:
        """x = (log lambda, log g[, theta_c, theta_e]) of the first-scan start."""
        assert self.first is not None
        lam, g = math.exp(x[0]), math.exp(x[1])
        rho = g / (2.0 * lam * self.span)
        tc, te = (x[2], x[3]) if self.fit_thresholds else (self.settings.theta_c,
                                                             self.settings.theta_e)
        rho_t0 = self.first.profile(lam, float(tc), float(te)).rho_t
        return Physical(self.origin0.copy(), lam, rho_t0, lam * lam * rho, rho, rho_t0 / rho,
                        float(tc), float(te), from_first_scan=True)

    def times(self, p: Physical) -> list[float]:
        """Solve times of the scans: days since the seed (the paper's start), or since the
        first scan (the first-scan start)."""
        return p.solve_times([float(d - self.days[0]) for d in self.days])

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x) - self.lo) / (self.hi - self.lo)

    def from_unit(self, z: np.ndarray) -> np.ndarray:
        return self.lo + np.clip(np.asarray(z), 0.0, 1.0) * (self.hi - self.lo)


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
    stepping: Any = None         # the local stage's fixed Stepping (levels.Stepping): outputs use it



