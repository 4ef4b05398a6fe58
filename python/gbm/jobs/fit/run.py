"""The job behind ``python -m gbm fit``: a patient's segmentations -> calibrated model, forecast,
radiotherapy targets, files.

:func:`fit_patient` runs the steps of :mod:`gbm.jobs.fit.steps` in order: load and validate the
patient (:func:`gbm.problem.segmentation.patient.load_patient`), build the geometry and its phase
field, the fit's grids and unknowns, fit (:mod:`gbm.inference.segmentation_fit`: CMA-ES on a 2 mm
grid, then trust-region least squares on the input grid; or, with ``method="pinn"``, the PINN of
:mod:`gbm.pinn.patient` on the same fine box and observation model), optionally sample the
posterior (:mod:`gbm.inference.posterior`), solve the fitted model on the whole brain at the scans
and the forecast days (:mod:`gbm.clinical.forecasts`), draw the plans (:mod:`gbm.clinical.plans`),
and write everything (:mod:`gbm.jobs.fit.outputs`), staged and renamed into place; it returns the
typed :class:`gbm.jobs.fit.report.FitReport` that ``results.json`` is written from.
:func:`run_fit` returns the same as the ``results.json`` dict.

Identifiability (:mod:`gbm.clinical.identifiability`): one scan fixes the origin, lambda =
sqrt(Dw/rho), rho*T and the thresholds; absolute Dw, rho and any forecast in days need an assumed
age (``assume_days``) or front speed (``assume_speed``). Two or more scans with dates fix Dw, rho
and the age at the first scan.

Quality check (:mod:`gbm.clinical.quality`): ``results.json`` ``quality`` holds the lowest
whole-tumour Dice of the model at the estimate over the scans; below
:data:`gbm.clinical.quality.MIN_MODEL_DICE` the fit is not supported by its scans and a one-line
``gbm fit: warning: ...`` goes to stderr (the outputs are still written).

Resuming: finished stages are checkpointed beside ``out``
(:class:`gbm.jobs.fit.checkpoint.FileCheckpoint`); with ``resume`` a run with the same settings and
inputs continues after its last finished stage, and with nothing to resume says so on stderr
(``gbm fit: note: --resume: nothing to resume ...``) and starts a new fit.

A BraTS case folder without tissue maps (:mod:`gbm.problem.segmentation.brats`) gets them on the
way (:func:`gbm.jobs.tissue.cache.case_maps`: ``gbm tissue`` with ``tissue_preset``, cached in
``.<out>.tissue`` beside ``out``, reused by ``resume``, copied into ``out/tissue/``).

Days in file names count from the first scan: ``u_day0`` is the first scan, ``u_day<D>`` a later
scan or a forecast D days after the first scan.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gbm import io
from gbm.jobs.fit import outputs, steps
from gbm.jobs.fit.checkpoint import FileCheckpoint
from gbm.jobs.fit.config import FitConfig
from gbm.jobs.fit.report import FitReport
from gbm.jobs.tissue.cache import case_maps
from gbm.provenance import versions

__all__ = ["FitConfig", "fit_patient", "run_fit"]


def _say_default(m: str) -> None:
    print(m, flush=True)


def fit_patient(cfg: FitConfig, out: str | Path, force: bool = False, progress: bool = False,
                printer: Callable[[str], None] | None = None, resume: bool = False
                ) -> FitReport:
    """Fit a patient and write ``out`` (see the module header and README "Fit a patient").

    Parameters
    ----------
    cfg : FitConfig
        The settings (validated here).
    out : path
        Output folder; an existing one is replaced only with ``force``.
    progress : bool
        tqdm bars over the stages' solves.
    printer : callable, optional
        Where the progress lines go (default: stdout).
    resume : bool
        Continue an interrupted run with the same settings and inputs after its last finished
        stage (a note on stderr when there is none).

    Returns
    -------
    FitReport
        What ``results.json`` holds.
    """
    say = printer or _say_default
    cfg.validate()
    io.check_output(out, force)
    t_all = time.perf_counter()
    maps = case_maps(cfg.patient, out, resume, cfg.labels, cfg.threads, say,  # BraTS case: maps
                     preset=cfg.tissue_preset)
    inputs = steps.load_inputs(cfg if maps is None else maps.fit_config(cfg))
    inputs = inputs if maps is None else maps.relabel(inputs)
    t_setup = time.perf_counter()
    setup = steps.build_levels(cfg, inputs)
    setup_seconds = time.perf_counter() - t_all
    say(steps.describe(inputs, setup))
    ck = FileCheckpoint(out, cfg, resume)
    if ck.nothing_to_resume is not None:
        print(f"gbm fit: note: --resume: nothing to resume in {out} ({ck.nothing_to_resume}), "
              "starting a new fit", file=sys.stderr, flush=True)
    fitted = steps.fit(cfg, setup, ck, ck.pinn_path, progress, say, resume)
    fit_seconds = time.perf_counter() - t_setup
    sampled = steps.sample(cfg, setup, fitted, ck, progress) if cfg.uncertainty else None
    t_fwd = time.perf_counter()
    model = steps.solve(cfg, inputs, fitted)
    fwd_seconds = time.perf_counter() - t_fwd
    network = steps.network_maps(inputs, setup, fitted)
    plans = steps.make_plans(cfg, inputs, model)
    prob_maps = steps.probability_maps(cfg, setup, sampled, model, progress)
    o = steps.Outcome(inputs, setup, fitted, sampled, model, network, plans, prob_maps)
    timing = steps.Timing(setup_seconds, fit_seconds, fwd_seconds, time.perf_counter() - t_all)
    report = steps.assemble(cfg, o, timing, versions(), ck.resumed)
    outputs.write_outputs(out, force, cfg, o, report, None if maps is None else maps.folder)
    ck.remove()
    if maps is not None:
        maps.remove_cache()
    say(_summary(report, out))
    if report.quality.warning:
        print(f"gbm fit: warning: {report.quality.warning}", file=sys.stderr, flush=True)
    return report


def run_fit(cfg: FitConfig, out: str | Path, force: bool = False, progress: bool = False,
            printer: Callable[[str], None] | None = None, resume: bool = False
            ) -> dict[str, Any]:
    """:func:`fit_patient`, returning the content of ``results.json`` as a dict."""
    return fit_patient(cfg, out, force=force, progress=progress, printer=printer,
                       resume=resume).to_json()


def _summary(r: FitReport, out: str | Path) -> str:
    """The closing line: estimates, Dice per scan, solves and wall time."""
    e = r.estimates
    dice_txt = "; ".join(f"day {s.day:g}: core {s.dice_core:.3f}, whole {s.dice_whole:.3f}"
                         for s in r.scans)
    abs_txt = (f", Dw {e.dw:.4g} mm^2/day, rho {e.rho:.4g} /day, age "
               f"{e.age_days_at_first_scan:.0f} d ({e.dw_rho_basis})" if e.dw is not None else "")
    return (f"gbm fit: lambda {e.lambda_mm:.3g} mm, rho*T {e.rho_T:.3g}{abs_txt}; origin "
            f"{tuple(round(float(v), 1) for v in e.origin_world_mm)} mm; Dice {dice_txt}; "
            f"{r.total_solves - r.solves['posterior']} solves, {r.seconds['total']:.0f} s "
            f"-> {out}")
