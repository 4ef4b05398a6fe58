"""Posterior of a patient fit: MCMC on the coarse grid, anchored at the fine-grid estimate.

Likelihood. The segmentation's hinge residuals r_v (:mod:`gbm.problem.segmentation.model`) are read as
Gaussian errors of the density at the labelled boundaries, with variance sigma^2, and voxels are
taken as correlated over a length ``corr_mm`` (labels come in blobs, not voxel by voxel), so the
log-likelihood counts one independent observation per correlation volume:

    log L(x) = - (1/2 sum_v r_v(x)^2) / (sigma^2 c),      c = max(1, prod_a corr_mm / h_a).

sigma^2 is estimated from the coarse optimum, sigma^2 = max(sum r^2 / n_b, SIGMA_FLOOR^2), with
n_b the segmentation's boundary voxels (the only ones that can carry a residual), and floored
at :data:`SIGMA_FLOOR` = 0.02: a contour located anywhere within a voxel moves u at the contour
by about |grad u| h / sqrt(12), which is of that size on these grids. Priors: uniform within the
search box of :class:`gbm.problem.segmentation.unknowns.Unknowns` (log-uniform in lambda and the
front radii).

Sampler: the affine-invariant ensemble sampler (``emcee``), walkers started in a small ball
around the coarse optimum, ``steps`` steps of which ``burn`` are dropped.

Anchor: the coarse grid's discretisation moves the optimum by a few per cent; the samples are
therefore shifted by (fine optimum - coarse optimum) in the search coordinates, i.e. the
coarse posterior's *shape* around the fine estimate. Intervals are the 5 % and 95 % quantiles of
the shifted samples; per-voxel probabilities P(u > level) are the fraction of ``draws``
posterior samples, each solved on the input grid, whose u exceeds the level.

The calibration of these intervals on synthetic patients is measured in benches/RESULTS.md: it
is only as good as this likelihood (an assumption: sigma from the fit itself, independent blobs
of ``corr_mm``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gbm.errors import require
from gbm.inference.segmentation_fit import Evaluator
from gbm.problem.segmentation.levels import FitLevel
from gbm.problem.segmentation.unknowns import PatientFitSettings, Unknowns

__all__ = ["SIGMA_FLOOR", "Posterior", "PosteriorSettings", "sample_posterior"]

SIGMA_FLOOR = 0.02


@dataclass(frozen=True)
class PosteriorSettings:
    """walkers (None: 2 n + 2), steps per walker, burn-in steps, correlation length (mm),
    draws solved on the input grid for the probability maps, their density levels, seed."""

    walkers: int | None = None
    steps: int = 60
    burn: int = 20
    corr_mm: float = 4.0
    draws: int = 16
    levels: tuple[float, ...] = (0.25,)
    seed: int = 0

    def validate(self) -> None:
        require(self.steps > self.burn >= 0, "posterior steps must exceed the burn-in")
        require(self.corr_mm > 0, "--corr-mm must be > 0")
        require(self.draws >= 0, "--draws must be >= 0")
        require(self.walkers is None or self.walkers >= 4, "walkers must be >= 4")
        for lv in self.levels:
            require(0 < lv < 1, f"probability-map levels must be in (0, 1), got {lv}")


@dataclass
class Posterior:
    """Shifted samples (search coordinates), the likelihood's scale and the chain's health."""

    samples: np.ndarray          # (n, d), anchored at the fine estimate
    sigma: float
    temper: float                # c
    acceptance: float
    solves: int
    seconds: float
    autocorr: list[float | None] | None


def _boundary_voxels(cls: np.ndarray) -> int:
    """Voxels with a face neighbour of another class (IGNORED excluded)."""
    c = np.asarray(cls)
    b = np.zeros(c.shape, dtype=bool)
    for ax in range(c.ndim):
        a = np.swapaxes(c, 0, ax)
        bb = np.swapaxes(b, 0, ax)
        diff = (a[1:] != a[:-1]) & (a[1:] >= 0) & (a[:-1] >= 0)
        bb[1:] |= diff
        bb[:-1] |= diff
    return int(b.sum())


def sample_posterior(level: FitLevel, fine: FitLevel, unknowns: Unknowns,
                     fit_settings: PatientFitSettings, x_coarse: np.ndarray, x_fine: np.ndarray,
                     settings: PosteriorSettings, log: list[dict[str, Any]],
                     progress: Callable[[str, int], Any] | None = None) -> Posterior:
    """Run the ensemble sampler on ``level`` (see the module header)."""
    import emcee

    settings.validate()
    n = unknowns.n
    walkers = settings.walkers or 2 * n + 2
    walkers += walkers % 2
    total = walkers * settings.steps
    tick = progress("posterior", total) if progress else None
    t_start = time.perf_counter()
    ev = Evaluator(level, fine, unknowns, fit_settings, log, f"posterior {level.name}",
                    t_start, tick)
    norm = level.norm
    m0 = ev.misfit(np.asarray(x_coarse)) * norm          # raw 1/2 sum r^2 at the optimum
    nb = max(sum(_boundary_voxels(m.classes) for m in level.models), 1)
    sigma2 = max(2.0 * m0 / nb, SIGMA_FLOOR ** 2)
    h = np.asarray(level.geom.spacing, dtype=np.float64)
    temper = float(max(1.0, np.prod(settings.corr_mm / h)))
    lo, hi = unknowns.lo, unknowns.hi

    def log_prob(x: np.ndarray) -> float:
        if np.any(x < lo) or np.any(x > hi):
            return -math.inf
        return -ev.misfit(np.asarray(x)) * norm / (sigma2 * temper)

    rng = np.random.default_rng(settings.seed)
    width = 0.02 * (hi - lo)
    p0 = np.clip(np.asarray(x_coarse) + width * rng.standard_normal((walkers, n)), lo, hi)
    sampler = emcee.EnsembleSampler(walkers, n, log_prob)
    sampler.random_state = np.random.RandomState(settings.seed).get_state()
    sampler.run_mcmc(p0, settings.steps, progress=False)
    if tick is not None:
        tick.close()
    chain = sampler.get_chain(discard=settings.burn, flat=True)
    try:
        with np.errstate(invalid="ignore", divide="ignore"):   # a coordinate that never moved
            raw = sampler.get_autocorr_time(discard=settings.burn, quiet=True)
        tau = [float(v) if np.isfinite(v) else None for v in raw]
    except Exception:  # noqa: BLE001 - emcee raises its own AutocorrError on short chains
        tau = None
    shifted = np.clip(chain + (np.asarray(x_fine) - np.asarray(x_coarse)), lo, hi)
    return Posterior(samples=shifted, sigma=math.sqrt(sigma2), temper=temper,
                     acceptance=float(np.mean(sampler.acceptance_fraction)), solves=ev.solves,
                     seconds=time.perf_counter() - t_start, autocorr=tau)


def quantities(unknowns: Unknowns, samples: np.ndarray) -> dict[str, np.ndarray]:
    """Reported quantities of each sample: lambda_mm, rho_t0 (and dw, rho, t0_days with several
    scans), theta_c, theta_e, origin (fine local mm)."""
    rows = [unknowns.physical(x) for x in samples]
    out = {"lambda_mm": np.array([p.lam for p in rows]),
           "rho_t0": np.array([p.rho_t0 for p in rows]),
           "theta_c": np.array([p.theta_c for p in rows]),
           "theta_e": np.array([p.theta_e for p in rows]),
           "origin_local": np.array([p.origin_local for p in rows])}
    if unknowns.multi:
        out.update(dw=np.array([p.dw for p in rows]), rho=np.array([p.rho for p in rows]),
                   t0_days=np.array([p.t0 for p in rows]))
    return out


def interval(values: np.ndarray, level: float = 0.9) -> tuple[float, float]:
    """Central ``level`` quantile interval."""
    a = (1 - level) / 2
    lo, hi = np.quantile(np.asarray(values, dtype=np.float64), [a, 1 - a])
    return float(lo), float(hi)
