"""``gbm fit-fd``: the parser and the command (the method is
:func:`gbm.inference.density_fit.fit_fd`)."""

from __future__ import annotations

import argparse
from typing import Any

from gbm.cli.common import (
    EPILOG,
    add_config,
    add_force,
    add_observation_args,
    add_out,
    add_problem_args,
    config_from,
    default_of,
    floats,
    problem_overrides,
)
from gbm.inference.density_fit import FdFitConfig, fit_fd

#: The fit flags (the problem and observation flags come from ``problem_overrides``).
FIELDS = ("dw0", "rho0", "dw_range", "rho_range", "fit_seed", "seed0_mm", "max_solves", "safety")


def register(sub: Any) -> None:
    """Add ``fit-fd`` to the ``gbm`` subparsers."""
    p = sub.add_parser(
        "fit-fd", help="infer Dw and rho (and the seed) by least squares on the FD solver",
        description="FD-based parameter inference: minimise the misfit between the Rust FD "
        "solution and the observations over log Dw, log rho (and, with --fit-seed, the seed) "
        "by trust-region least squares with finite-difference Jacobians. Same problem and "
        "observations as `gbm infer` for the same flags. Writes results.json (estimates, 95 % "
        "intervals, solves, wall time), log.csv, fit.png, u_fd_day<D>.nii.gz and u_fd.png.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    C = FdFitConfig
    add_problem_args(p, C)
    add_observation_args(p, C)
    f = p.add_argument_group("fit")
    f.add_argument("--dw0", type=float, default=None,
                   help=f"initial Dw, mm^2/day (default: {default_of(C, 'dw0')})")
    f.add_argument("--rho0", type=float, default=None,
                   help=f"initial rho, 1/day (default: {default_of(C, 'rho0')})")
    f.add_argument("--dw-range", type=floats(2), default=None,
                   help="bounds lo,hi of Dw, mm^2/day; hi sets the time step (default: "
                   f"{default_of(C, 'dw_range')})")
    f.add_argument("--rho-range", type=floats(2), default=None,
                   help=f"bounds lo,hi of rho, 1/day (default: {default_of(C, 'rho_range')})")
    f.add_argument("--fit-seed", action="store_true", default=None,
                   help="also fit the seed location")
    f.add_argument("--seed0-mm", type=floats(3), default=None,
                   help="initial seed guess x,y,z in world mm for --fit-seed (if omitted: the "
                   "u^2-weighted centroid of the observations)")
    f.add_argument("--max-solves", type=int, default=None,
                   help=f"forward-solve budget (default: {default_of(C, 'max_solves')})")
    f.add_argument("--safety", type=float, default=None,
                   help="time step = SAFETY x stability bound at the upper bounds (default: "
                   f"{default_of(C, 'safety')})")
    add_config(p)
    add_out(p, None, "output folder (if omitted: runs/fit-fd-<problem>)")
    add_force(p)
    p.set_defaults(func=command)


def command(a: argparse.Namespace) -> int:
    """Fit and write the run folder."""
    cfg = config_from(FdFitConfig, a, FIELDS, extra=problem_overrides(a))
    fit_fd(cfg, a.out or f"runs/fit-fd-{cfg.problem}", force=a.force)
    return 0
