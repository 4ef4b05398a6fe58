"""gbm: glioblastoma growth modelling and patient-specific parameter inference.

The diffuse-domain Fisher-Kolmogorov model  d(phi u)/dt = div(D phi grad u) + phi rho u (1 - u)
on brain geometries (units: mm, days; D in mm^2/day, rho in 1/day), with a Rust core for the
phase field, interpolation, sampling and the finite-difference solver, and a PyTorch PINN
(:mod:`gbm.pinn`) for parameter inference; FD-based inference (:mod:`gbm.inference`), the
inference problem both methods share (:mod:`gbm.problem`) and the PINN-vs-FD study
(:mod:`gbm.jobs.bench`).
"""

from __future__ import annotations

from gbm.errors import InputError
from gbm.inference.density_fit import FdFitConfig, fit_fd
from gbm.jobs.forward import ForwardConfig, run_forward, run_phase_field
from gbm.model.geometry import (
                       DEFAULT_SEED_WORLD_MM,
                       DEFAULT_SLICE,
                       Geometry,
                       disk,
                       from_maps,
                       load_geometry,
)
from gbm.model.simulation import FdResult, simulate, snapshot_times, summarize
from gbm.provenance import __version__

__all__ = [
    "DEFAULT_SEED_WORLD_MM", "DEFAULT_SLICE", "FdFitConfig", "FdResult", "ForwardConfig",
    "Geometry", "InputError", "__version__", "disk", "fit_fd", "from_maps", "load_geometry",
    "run_forward", "run_phase_field", "simulate", "snapshot_times", "summarize",
]
