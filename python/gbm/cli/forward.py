"""``gbm forward``: the parser and the command (the job is :func:`gbm.jobs.forward.run_forward`)."""

from __future__ import annotations

import argparse
from typing import Any

from gbm.cli.common import (
    EPILOG,
    GEOMETRY_FIELDS,
    add_config,
    add_force,
    add_geometry_args,
    add_out,
    config_from,
    default_of,
    floats,
    seed_mm_text,
)
from gbm.jobs.forward import ForwardConfig, run_forward

#: The flags that set ForwardConfig fields.
FIELDS = (*GEOMETRY_FIELDS, "seed_mm", "dw", "rho", "ratio", "days", "save_every", "scheme",
          "phase_cache")


def register(sub: Any) -> None:
    """Add ``forward`` to the ``gbm`` subparsers."""
    p = sub.add_parser("forward", help="FD simulation of tumour growth (Rust solver)",
                       description="Simulate the diffuse-domain Fisher-Kolmogorov model with the "
                       "finite-volume solver and write NIfTI snapshots on the input grid, "
                       "a PNG of the snapshots and summary.json.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    C = ForwardConfig
    add_geometry_args(p, C)
    p.add_argument("--seed-mm", type=floats(3), default=None,
                   help=f"tumour origin x,y,z in world mm (if omitted: {seed_mm_text()}, right "
                   "frontal WM)")
    p.add_argument("--dw", type=float, default=None,
                   help=f"Dw, mm^2/day (default: {default_of(C, 'dw')})")
    p.add_argument("--rho", type=float, default=None,
                   help=f"rho, 1/day (default: {default_of(C, 'rho')})")
    p.add_argument("--ratio", type=float, default=None,
                   help=f"Dw/Dg (default: {default_of(C, 'ratio')})")
    p.add_argument("--days", type=float, default=None,
                   help=f"simulated time T, days (default: {default_of(C, 'days')})")
    p.add_argument("--save-every", type=float, default=None,
                   help=f"snapshot interval, days (default: {default_of(C, 'save_every')})")
    p.add_argument("--scheme", choices=["strang-rkl2", "euler"], default=None,
                   help="time integrator: strang-rkl2 (second order; steps of 0.5 / rho days) or "
                   "euler (explicit, 0.9 x the stability bound; gbm 0.1.0's) (default: "
                   f"{default_of(C, 'scheme')})")
    p.add_argument("--no-cache", dest="phase_cache", action="store_false", default=None,
                   help="solve the phase field afresh instead of reusing it from the user's "
                   "cache ($GBM_CACHE_DIR or ~/.cache/gbm)")
    add_config(p)
    add_out(p, "runs/forward", "output folder (default: %(default)s)")
    add_force(p)
    p.set_defaults(func=command)


def command(a: argparse.Namespace) -> int:
    """Simulate, write the run folder, print a one-line summary."""
    cfg = config_from(ForwardConfig, a, FIELDS)
    summary = run_forward(cfg, a.out, force=a.force, progress=True)
    last = summary["snapshots"][-1]
    s = summary["solver"]
    print(f"gbm forward: {summary['geometry']['dimension']}D box {summary['geometry']['box_shape']},"
          f" dt {s['dt_days']:.4g} d, {s['steps']} steps in {s['wall_seconds']:.2f} s; day "
          f"{last['day']:g}: max u {last['max_u']:.3f}, radius(u>=0.25) "
          f"{last['front_radius_mm']:.1f} mm -> {a.out}")
    return 0
