"""``python -m gbm <command>``: thin wrappers over the Python API.

Every command validates its input first; bad input ends with one line ``gbm: error: ...`` on stderr
and exit status 2 (no traceback, no partial output).  Units: mm, days, Dw in mm^2/day, rho in 1/day.
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


def float_list(text: str) -> tuple[float, ...]:
    """``"1,2.5,3"`` -> ``(1.0, 2.5, 3.0)`` (any length)."""
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def _items(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out.extend(p for p in v.split(",") if p)
    return tuple(out)


def _day_list(values: list[str] | None) -> tuple[float, ...] | None:
    items = _items(values)
    if items is None:
        return None
    try:
        return tuple(float(v) for v in items)
    except ValueError:
        raise InputError(f"--days: expected numbers, got {', '.join(items)}") from None


def add_problem_args(p: argparse.ArgumentParser) -> None:
    """The inference problem's flags (``infer``, ``pinn-forward``, ``fit-fd``)."""
    g = p.add_argument_group("problem")
    g.add_argument("--problem", choices=["atlas", "disk"], default=None,
                   help="atlas (default: embedded ICBM152 or --wm/--gm) or the paper's disk")
    g.add_argument("--wm", help="white-matter map (NIfTI)")
    g.add_argument("--gm", help="gray-matter map (NIfTI, same grid)")
    g.add_argument("--csf", help="optional CSF map")
    g.add_argument("--slice", type=int, default=None, help="axial slice index (2D)")
    g.add_argument("--3d", dest="three_d", action="store_true", default=None,
                   help="3D problem instead of the axial slice through the seed")
    g.add_argument("--seed-mm", type=float_list, default=None,
                   help="tumour origin x,y,z in world mm (default: right frontal white matter)")
    g.add_argument("--horizon", type=float, default=None,
                   help="final time T in days (atlas 150, disk 300)")
    g.add_argument("--ratio", type=float, default=None, help="Dw/Dg (10)")


def add_observation_args(p: argparse.ArgumentParser) -> None:
    """Observation flags of the inference commands (``infer``, ``fit-fd``)."""
    o = p.add_argument_group("observations (default: synthetic, from the FD solver)")
    o.add_argument("--observations", nargs="+", default=None,
                   help="NIfTI density maps (one per --days entry) or one CSV x,y,z,t,u "
                   "(world mm, days)")
    o.add_argument("--days", nargs="+", default=None, help="day of each NIfTI map")
    o.add_argument("--noise", type=float, default=None,
                   help="std of Gaussian noise on synthetic observations, in units of u "
                   "(0; 0.01 = 1 %%)")
    o.add_argument("--n-obs", type=int, default=None,
                   help="number of observations (26,830 atlas, 20,000 disk)")
    o.add_argument("--dw-true", type=float, default=None, help="Dw of synthetic data (0.13)")
    o.add_argument("--rho-true", type=float, default=None, help="rho of synthetic data (0.025)")
    o.add_argument("--seed", type=int, default=None,
                   help="random seed: observation sampling, noise (and the network) (0)")


PROBLEM_FIELDS = ["problem", "wm", "gm", "csf", "slice", "three_d", "seed_mm", "horizon", "ratio",
                  "noise", "n_obs", "dw_true", "rho_true", "seed", "region_radius"]


def problem_overrides(a: argparse.Namespace) -> dict[str, Any]:
    """The problem/observation flags given on the command line (None = not given)."""
    over = {n: getattr(a, n, None) for n in PROBLEM_FIELDS}
    over["observations"] = _items(getattr(a, "observations", None))
    over["days"] = _day_list(getattr(a, "days", None))
    return over


def _fit_parser(sub: Any) -> None:
    p = sub.add_parser(
        "fit-fd", help="infer Dw and rho (and the seed) by least squares on the FD solver",
        description="FD-based parameter inference: minimise the misfit between the Rust FD "
        "solution and the observations over log Dw, log rho (and, with --fit-seed, the seed) "
        "by trust-region least squares with finite-difference Jacobians. Same problem and "
        "observations as `gbm infer` for the same flags. Writes results.json (estimates, 95 % "
        "intervals, solves, wall time), log.csv, fit.png, u_fd_day<D>.nii.gz and u_fd.png.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_args(p)
    add_observation_args(p)
    f = p.add_argument_group("fit")
    f.add_argument("--dw0", type=float, default=None, help="initial Dw, mm^2/day (0.1)")
    f.add_argument("--rho0", type=float, default=None, help="initial rho, 1/day (0.01)")
    f.add_argument("--dw-range", type=_floats(2), default=None,
                   help="bounds lo,hi of Dw, mm^2/day (0.01,1); hi sets the time step")
    f.add_argument("--rho-range", type=_floats(2), default=None,
                   help="bounds lo,hi of rho, 1/day (0.001,0.2)")
    f.add_argument("--fit-seed", action="store_true", default=None,
                   help="also fit the seed location")
    f.add_argument("--seed0-mm", type=_floats(3), default=None,
                   help="initial seed guess x,y,z in world mm for --fit-seed (default: "
                   "u^2-weighted centroid of the observations)")
    f.add_argument("--max-solves", type=int, default=None, help="forward-solve budget (300)")
    f.add_argument("--safety", type=float, default=None,
                   help="time step = SAFETY x stability bound at the upper bounds (0.9)")
    p.add_argument("--config", help="TOML file with these settings (flags override it)")
    p.add_argument("--out", default=None, help="output folder (runs/fit-fd-<problem>)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.set_defaults(func=_cmd_fit)


def _cmd_fit(a: argparse.Namespace) -> int:
    from .config import load_toml
    from .fdfit import FdFitConfig, fit_fd
    from .pinn.config import config_from_dict

    over = problem_overrides(a) | {k: getattr(a, k) for k in (
        "dw0", "rho0", "dw_range", "rho_range", "fit_seed", "seed0_mm", "max_solves", "safety")}
    cfg = config_from_dict(FdFitConfig, load_toml(a.config) if a.config else {}, over)
    fit_fd(cfg, a.out or f"runs/fit-fd-{cfg.problem}", force=a.force)
    return 0


def _bench_parser(sub: Any) -> None:
    from .bench.study import BenchConfig

    q, f = BenchConfig(quick=True).budgets(), BenchConfig().budgets()
    p = sub.add_parser(
        "bench", help="the paper's experiments, PINN vs FD-based inference, one report",
        description="Reproduce the paper's experiments (Sec. 3.1 disk, Sec. 3.2 patient slice) "
        "and compare PINN inference with FD-based inference on the same observations, at each "
        "noise level, on this machine; writes report.md (tables and figures comparable to the "
        "paper's), report.json and figures/.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small budgets: the whole report in <= 15 minutes on 2 CPU cores")
    p.add_argument("--domains", type=lambda s: tuple(_items([s]) or ()), default=None,
                   help="comma-separated: disk,slice (both)")
    p.add_argument("--noise", type=float_list, default=None,
                   help="noise levels (std in units of u), comma-separated (0,0.01,0.05)")
    adam = BenchConfig(pinn_optimizer="adam").budgets()["pinn_epochs"]
    p.add_argument("--pinn-optimizer", choices=["lbfgs", "adam"], default=None,
                   help="lbfgs (gbm's recipe) or adam (the paper's: Adam 1e-3 halved half-way; "
                   f"full budget the paper's {adam:,} epochs)")
    p.add_argument("--pinn-epochs", type=int, default=None,
                   help=f"PINN epochs per run (L-BFGS iterations: quick {q['pinn_epochs']}, "
                   f"full {f['pinn_epochs']})")
    p.add_argument("--extrapolate-epochs", type=int, default=None,
                   help="epochs of the 300 -> 450 d extrapolation (quick "
                   f"{q['extrapolate_epochs']}, full {f['extrapolate_epochs']})")
    p.add_argument("--seed", type=int, default=None, help="random seed (0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="PINN device (auto = cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (all)")
    p.add_argument("--config", help="TOML file with the settings of gbm.bench.BenchConfig")
    p.add_argument("--out", default="bench", help="output folder (bench)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted study in --out: finished runs are kept, an "
                   "interrupted PINN run continues from its checkpoint")
    p.add_argument("--force", action="store_true", help="discard an existing output folder")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(a: argparse.Namespace) -> int:
    from .bench import BenchConfig, run_bench
    from .config import load_toml
    from .pinn.config import config_from_dict

    over = {k: getattr(a, k) for k in ("quick", "domains", "noise", "pinn_optimizer",
                                       "pinn_epochs", "extrapolate_epochs", "seed", "device",
                                       "threads")}
    over["quick"] = True if a.quick else None
    cfg = config_from_dict(BenchConfig, load_toml(a.config) if a.config else {}, over)
    run_bench(cfg, a.out, force=a.force, resume=a.resume)
    return 0


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
    _fit_parser(sub)
    _bench_parser(sub)
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


_VECTOR_OPTIONS = {"--seed-mm", "--seed0-mm"}


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
