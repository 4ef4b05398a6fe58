"""``python -m gbm <command>``: thin wrappers over the Python API.

Every command validates its input first; bad input ends with one line ``gbm: error: ...`` on stderr and
exit status 2 (no traceback, no partial output).  Units: mm, days, Dw in mm^2/day, rho in 1/day.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .errors import InputError

EPILOG = """units: lengths in mm (world/MNI coordinates of the input image), time in days,
Dw (white-matter diffusivity) in mm^2/day, rho (proliferation rate) in 1/day; gray-matter
diffusivity Dg = Dw/ratio. Defaults are the paper's (Table 1): Dw 0.13, rho 0.025, ratio 10."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gbm: error: {message} (see --help)\n")


def _floats(n: int) -> Callable[[str], tuple[float, ...]]:
    def parse(text: str) -> tuple[float, ...]:
        try:
            vals = tuple(float(v) for v in text.replace(" ", "").split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
        if len(vals) != n:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
        return vals

    return parse


def add_geometry_args(p: argparse.ArgumentParser) -> None:
    """--wm/--gm/--csf/--slice/--margin/--epsilon shared by the commands."""
    g = p.add_argument_group("geometry (default: embedded ICBM152 2009a atlas, 1 mm)")
    g.add_argument("--wm", help="white-matter map (NIfTI, fractions 0..1 or uint8 0..255)")
    g.add_argument("--gm", help="gray-matter map (same grid as --wm)")
    g.add_argument("--csf", help="optional CSF map: voxels where CSF dominates are excluded")
    g.add_argument("--slice", type=int, default=None,
                   help="axial slice index (RAS z voxel index) for a 2D run; omit for 3D")
    g.add_argument("--margin", type=int, default=None, help="voxels around the brain box (5)")
    g.add_argument("--epsilon", type=float, default=None,
                   help="Cahn-Hilliard interface parameter in mm (0.5)")


def _forward_parser(sub: Any) -> None:
    p = sub.add_parser("forward", help="FD simulation of tumour growth (Rust solver)",
                       description="Simulate the diffuse-domain Fisher-Kolmogorov model with the "
                       "explicit finite-volume solver and write NIfTI snapshots on the input grid, "
                       "a PNG of the snapshots and summary.json.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_geometry_args(p)
    p.add_argument("--seed-mm", type=_floats(3), default=None,
                   help="tumour origin x,y,z in world mm (default 28,18,27: right frontal WM)")
    p.add_argument("--dw", type=float, default=None, help="Dw, mm^2/day (0.13)")
    p.add_argument("--rho", type=float, default=None, help="rho, 1/day (0.025)")
    p.add_argument("--ratio", type=float, default=None, help="Dw/Dg (10)")
    p.add_argument("--days", type=float, default=None, help="simulated time T, days (0.5)")
    p.add_argument("--save-every", type=float, default=None, help="snapshot interval, days (50)")
    p.add_argument("--config", help="TOML file with these settings (flags override it)")
    p.add_argument("--out", default="runs/forward", help="output folder (runs/forward)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.set_defaults(func=_cmd_forward)


def _cmd_forward(a: argparse.Namespace) -> int:
    from .config import build, load_toml
    from .runs import ForwardConfig, run_forward

    file_values = load_toml(a.config) if a.config else {}
    cfg = build(ForwardConfig, file_values, {
        "wm": a.wm, "gm": a.gm, "csf": a.csf, "slice": a.slice, "margin": a.margin,
        "epsilon": a.epsilon, "seed_mm": a.seed_mm, "dw": a.dw, "rho": a.rho, "ratio": a.ratio,
        "days": a.days, "save_every": a.save_every})
    summary = run_forward(cfg, a.out, force=a.force, progress=True)
    last = summary["snapshots"][-1]
    s = summary["solver"]
    print(f"gbm forward: {summary['geometry']['dimension']}D box {summary['geometry']['box_shape']},"
          f" dt {s['dt_days']:.4g} d, {s['steps']} steps in {s['wall_seconds']:.2f} s; day "
          f"{last['day']:g}: max u {last['max_u']:.3f}, radius(u>=0.25) "
          f"{last['front_radius_mm']:.1f} mm -> {a.out}")
    return 0


def _phase_parser(sub: Any) -> None:
    p = sub.add_parser("phase-field", help="Cahn-Hilliard phase field of the brain mask",
                       description="Solve the Cahn-Hilliard equation (paper Eq. 4-5) on the "
                       "binary brain mask in its cropped box and write phi on the input grid.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_geometry_args(p)
    p.add_argument("--out", default="phi.nii.gz", help="output NIfTI (phi.nii.gz)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=_cmd_phase)


def _cmd_phase(a: argparse.Namespace) -> int:
    from .geometry import DEFAULT_EPSILON_MM
    from .runs import run_phase_field

    info = run_phase_field(a.wm, a.gm, a.out, csf=a.csf, slice_index=a.slice,
                           epsilon=a.epsilon if a.epsilon is not None else DEFAULT_EPSILON_MM,
                           margin=a.margin if a.margin is not None else 5, force=a.force)
    print(f"gbm phase-field: box {info['box_shape']}, {info['steps']} steps, converged "
          f"{info['converged']}, volume(phi>0.5)/mask - 1 = {info['volume_rel_diff']:+.3%} "
          f"-> {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full ``gbm`` argument parser."""
    from . import __version__

    p = _Parser(prog="python -m gbm", description="Glioblastoma growth model (diffuse-domain "
                "Fisher-Kolmogorov) with an FD solver and PINN parameter inference.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"gbm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _forward_parser(sub)
    _phase_parser(sub)
    try:
        from .pinn import commands as pinn_commands
    except ImportError:  # pragma: no cover - the PINN needs torch, a declared dependency
        pinn_commands = None
    if pinn_commands is not None:
        pinn_commands.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    argv = _glue_negative_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed, one line)
        return int(e.code or 0)
    try:
        return int(args.func(args) or 0)
    except (InputError, ValueError) as e:
        print(f"gbm: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2
    except OSError as e:
        print(f"gbm: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gbm: interrupted", file=sys.stderr)
        return 130


def _glue_negative_values(argv: list[str]) -> list[str]:
    """Let ``--seed-mm -29,-8,33`` work: argparse would take ``-29,...`` for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = str(argv[i])
        if a in _VECTOR_OPTIONS and i + 1 < len(argv) and str(argv[i + 1]).startswith("-"):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
        else:
            out.append(a)
            i += 1
    return out


_VECTOR_OPTIONS = {"--seed-mm"}


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
