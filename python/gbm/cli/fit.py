"""``gbm fit``: the parser and the command (the job is :func:`gbm.jobs.fit.run.run_fit`).

The flags that set :class:`~gbm.jobs.fit.run.FitConfig` fields are declared once, in
:data:`gbm.cli.common.FIT_FLAGS`; this module only groups them for ``--help``.
"""

from __future__ import annotations

import argparse
from typing import Any

from gbm.cli.common import (
    SEGMENTATION_FIELDS,
    add_config,
    add_fit_flags,
    add_force,
    add_out,
    add_threads,
    config_from,
)
from gbm.jobs.fit import IDENTIFIABILITY, FitConfig, run_fit
from gbm.pinn.settings import RECIPES

#: ``--help`` groups of ``gbm fit``: title, FitConfig fields (``--threads`` ends "method").
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("patient (tissue maps + segmentations on one grid, or a folder)",
     (*SEGMENTATION_FIELDS, "tissue_preset", "wm", "gm", "csf", "slice")),
    ("model and unknowns",
     ("ratio", "lambda_range", "fit_thresholds", "theta_c", "theta_e", "theta_c_range",
      "theta_e_range", "assume_days", "assume_speed", "start")),
    ("fit", ("coarse_mm", "crop_mm", "global_solves", "local_solves", "popsize", "scheme",
             "safety", "phase_cache", "seed")),
    ("uncertainty", ("uncertainty", "steps", "burn", "walkers", "corr_mm", "draws", "prob_levels")),
    ("forecast and plans", ("forecast", "margin_mm", "iso_levels")),
    ("method", ("method", "pinn_budget", "pinn_iters", "pinn_colloc", "pinn_data_points",
                "pinn_w_data", "pinn_compile", "device")),
)
#: Every flag of ``gbm fit`` that sets a FitConfig field.
FIELDS = tuple(n for _, names in GROUPS for n in names) + ("threads", "recipe")


def register(sub: Any) -> None:
    """Add ``fit`` to the ``gbm`` subparsers."""
    p = sub.add_parser(
        "fit", help="calibrate the model to a patient's segmentations; forecast and plans",
        description="Fit origin, lambda = sqrt(Dw/rho) and rho*T (one scan) or Dw, rho and the "
        "age (two or more dated scans) to tumour segmentations with the FD solver (CMA-ES on a "
        "2 mm grid, then least squares on the input grid); write the fitted density at the "
        "scans and forecast days, the standard (core + margin) and model (top-k density) CTVs, "
        "coverage of a recurrence, figures, results.json and log.csv. --method pinn fits the "
        "same unknowns with the physics-informed network instead (same observation model; "
        "outputs as for fd plus the network's own u_pinn_day<D>). " + IDENTIFIABILITY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="units: mm (world coordinates), days, Dw mm^2/day, rho 1/day, volumes ml. "
        "Days in file names count from the first scan.")
    for title, names in GROUPS:
        g = p.add_argument_group(title)
        add_fit_flags(g, names)
    add_threads(g, "PINN CPU threads (all cores)")  # the last group: "method"
    g.add_argument("--recipe", choices=list(RECIPES), default=None,
                   help="--method pinn: gbm (gbm.pinn.patient: joint L-BFGS) or pinn-gbm "
                   "(PINN-GBM's recipe, gbm.pinn.recipe: radial 1D fit, pre-training on its FD "
                   "solution, weak sigmoid segmentation loss, parameter factors in [0.75, 1.25]) "
                   "(gbm)")
    add_config(p)
    add_out(p, "runs/fit", "output folder (runs/fit)")
    add_force(p, "replace an existing output folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the same settings and inputs from its "
                   "last finished stage (kept in .<out>.checkpoint.json beside --out)")
    p.set_defaults(func=command)


def command(a: argparse.Namespace) -> int:
    """Fit the patient and write the run folder."""
    cfg = config_from(FitConfig, a, FIELDS)
    run_fit(cfg, a.out, force=a.force, progress=True, resume=a.resume)
    return 0
