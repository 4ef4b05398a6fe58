"""Forecasts of a fitted patient model: the density on the whole brain at the scans and at days
after the last scan, and, from posterior samples, the probability that it exceeds a level.

Days: ``out_days`` count from the first scan (the scans' own days, then each forecast day after the
last scan); the solver's time is the tumour's age, ``t0 + day``. Solves use the diffuse-domain
Fisher-Kolmogorov FD solver (:func:`gbm.problem.segmentation.levels.solve_states`) from the
paper's Gaussian at the fitted origin, with the fit's time stepping
(:class:`~gbm.problem.segmentation.levels.Stepping`). Units: mm, days, Dw mm^2/day, rho 1/day.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gbm import _core
from gbm.clinical.identifiability import Absolute, Assumption, absolute
from gbm.inference.posterior import PosteriorSettings
from gbm.model.geometry import Geometry
from gbm.problem.segmentation.levels import FitLevel, Stepping, rkl2_stages, solve_states
from gbm.problem.segmentation.unknowns import Physical, Unknowns

__all__ = ["output_days", "output_stepping", "probability_maps", "solve_model"]


def output_days(days_rel: Sequence[float], forecast: Sequence[float]) -> list[float]:
    """The scans' days (since the first scan), then ``forecast`` days after the last scan."""
    return [float(d) for d in days_rel] + [days_rel[-1] + float(f) for f in forecast]


def output_stepping(fit: Stepping | None, default: Stepping, scale: float, kfac: np.ndarray,
                    phi: np.ndarray, spacing: Sequence[float], p: Physical) -> Stepping:
    """The time stepping of the written model.

    The fit's local-stage stepping ``fit`` with its step times ``scale`` (one scan at an assumed
    age: assumed / nominal age, which keeps rho dt and Dw dt and so the fitted u at the scan), so
    that the written model is the fitted one. On the whole brain box the diffusion's stability
    bound may be lower than on the fit's sub-box: Strang-RKL2 then takes the fewest stable stages
    (more than the fit's, same step); Euler falls back to ``default`` (the solver's own rule) when
    the step is above the bound of the medium ``p.dw * kfac``, ``phi`` on this grid. ``default``
    also when there was no local stage.
    """
    if fit is None or fit.dt is None:
        return default
    out = fit.scaled(scale)
    assert out.dt is not None
    if out.scheme == "euler":
        bound = _core.stable_dt(p.dw * kfac, phi, list(spacing), p.rho)
        return out if out.dt <= bound else default
    need = rkl2_stages(out.dt, _core.stable_dt(p.dw * kfac, phi, list(spacing), 0.0))
    return out if out.stages is not None and out.stages >= need else Stepping(
        out.scheme, out.dt, need)


def solve_model(geom: Geometry, ratio: float, fitted: Physical, ab: Absolute,
                origin_world: np.ndarray, out_days: Sequence[float], fit: Stepping | None,
                default: Stepping, u0: np.ndarray | None = None
                ) -> tuple[list[np.ndarray], int]:
    """The fitted model on the whole brain box at ``out_days``.

    Parameters
    ----------
    geom : Geometry
        The brain box of the input grid, with its phase field.
    ratio : float
        Dw/Dg.
    fitted : Physical
        The estimate (nominal Dw, rho and age for one scan).
    ab : Absolute
        Its absolute Dw, rho and age (:func:`gbm.clinical.identifiability.absolute`); assumed
        ones replace the nominal ones.
    origin_world : ndarray, shape (3,)
        The fitted origin, world mm.
    out_days : sequence of float
        Days since the first scan (:func:`output_days`).
    fit : Stepping or None
        The fit's local-stage time stepping (:func:`output_stepping`).
    default : Stepping
        The stepping without a fit's (each solve its own step).
    u0 : ndarray, optional
        The density at the first scan (box shape) when the fit started there
        (``fitted.from_first_scan``); default: the paper's Gaussian at the origin at age 0.

    Returns
    -------
    states : list of ndarray, float64, box shape
        u at each of ``out_days``.
    steps : int
        Solver steps taken.
    """
    phys = ab.physical(fitted)
    kfac = np.ascontiguousarray(geom.tissue_factor(ratio))
    phi = np.ascontiguousarray(geom.phi, dtype=np.float64)
    st = output_stepping(fit, default, phys.t0 / fitted.t0, kfac, phi, geom.spacing, phys)
    return solve_states(geom, kfac, phi, phys, geom.world_to_local(origin_world),
                        phys.solve_times(out_days), st, u0=u0)


def probability_maps(samples: np.ndarray, unknowns: Unknowns, fine: FitLevel,
                     out_days: Sequence[float], settings: PosteriorSettings,
                     stepping: Stepping,
                     assumption: Assumption,
                     progress: Callable[[str, int], Any] | None = None,
                     ) -> dict[tuple[float, float], np.ndarray]:
    """P(u > level) on the input grid at each output day.

    ``settings.draws`` posterior samples (search coordinates, drawn without replacement with
    ``settings.seed``), each with its absolute Dw, rho and age under ``assumption``, are solved on
    the fit's sub-box ``fine`` (zero outside it). ``progress(stage, total)`` returns a tqdm-like bar
    or None.

    Returns
    -------
    dict
        (level, day) -> float32 array on the 3D input grid, values in [0, 1].
    """
    rng = np.random.default_rng(settings.seed)
    pick = rng.choice(len(samples), size=min(settings.draws, len(samples)), replace=False)
    acc = {(lv, d): np.zeros(fine.geom.shape) for lv in settings.levels for d in out_days}
    tick = progress("probability maps", len(pick)) if progress else None
    n_scans = len(unknowns.days)
    for i in sorted(pick):
        q = unknowns.physical(samples[i])
        q = absolute(q, n_scans, assumption).physical(q)
        states, _ = solve_states(fine.geom, fine.kfac, fine.phi, q, q.origin_local,
                                 [q.t0 + d for d in out_days], stepping)
        for d, u in zip(out_days, states):
            for lv in settings.levels:
                acc[(lv, d)] += u > lv
        if tick is not None:
            tick.update(1)
    if tick is not None:
        tick.close()
    return {key: fine.geom.to_full(a / len(pick)) for key, a in acc.items()}
