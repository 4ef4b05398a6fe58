"""``gbm phase-field``: the parser and the command (the job is
:func:`gbm.jobs.forward.run_phase_field`)."""

from __future__ import annotations

import argparse
from typing import Any

from gbm.cli.common import (
    EPILOG,
    GEOMETRY_FIELDS,
    add_force,
    add_geometry_args,
    add_out,
    config_from,
)
from gbm.jobs.forward import ForwardConfig, run_phase_field


def register(sub: Any) -> None:
    """Add ``phase-field`` to the ``gbm`` subparsers."""
    p = sub.add_parser("phase-field", help="Cahn-Hilliard phase field of the brain mask",
                       description="Solve the Cahn-Hilliard equation (paper Eq. 4-5) on the "
                       "binary brain mask in its cropped box and write phi on the input grid.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_geometry_args(p, ForwardConfig)
    add_out(p, "phi.nii.gz", "output NIfTI (default: %(default)s)")
    add_force(p, "overwrite existing outputs")
    p.set_defaults(func=command)


def command(a: argparse.Namespace) -> int:
    """Solve the phase field, write it, print a one-line summary."""
    g = config_from(ForwardConfig, a, GEOMETRY_FIELDS)  # no --config: the defaults --help shows
    info = run_phase_field(g.wm, g.gm, a.out, csf=g.csf, slice_index=g.slice, epsilon=g.epsilon,
                           margin=g.margin, force=a.force)
    print(f"gbm phase-field: box {info['box_shape']}, {info['steps']} steps, converged "
          f"{info['converged']}, volume(phi>0.5)/mask - 1 = {info['volume_rel_diff']:+.3%} "
          f"-> {a.out}")
    return 0
