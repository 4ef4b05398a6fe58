"""``python -m gbm <command>``: thin wrappers over the Python API.

Every command validates its input first; bad input ends with one line ``gbm: error: ...`` on stderr
and exit status 2 (no traceback, no partial output).  Units: mm, days, Dw in mm^2/day, rho in 1/day.

The flag groups shared with :mod:`gbm.pinn.commands` live in :mod:`gbm.cli_args`; each subcommand
is added by one function of :data:`COMMANDS` (``register(subparsers)``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .cli_args import (
    EPILOG,
    Parser,
    add_geometry_args,
    add_observation_args,
    add_problem_args,
    default_of,
    float_list,
    floats,
    glue_negative_values,
    items,
    problem_overrides,
    seed_mm_text,
)
from .config import build, load_toml
from .errors import InputError
from .inference.fd import FdFitConfig
from .runs import ForwardConfig


def _fit_parser(sub: Any) -> None:
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
    p.add_argument("--config", help="TOML file with these settings (flags override it)")
    p.add_argument("--out", default=None,
                   help="output folder (if omitted: runs/fit-fd-<problem>)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.set_defaults(func=_cmd_fit)


def _cmd_fit(a: argparse.Namespace) -> int:
    from .inference.fd import fit_fd

    over = problem_overrides(a) | {k: getattr(a, k) for k in (
        "dw0", "rho0", "dw_range", "rho_range", "fit_seed", "seed0_mm", "max_solves", "safety")}
    cfg = build(FdFitConfig, load_toml(a.config) if a.config else {}, over)
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
    p.add_argument("--domains", type=lambda s: tuple(items([s]) or ()), default=None,
                   help="comma-separated subset of disk,slice (default: "
                   f"{default_of(BenchConfig, 'domains')})")
    p.add_argument("--noise", type=float_list, default=None,
                   help="noise levels (std in units of u), comma-separated (default: "
                   f"{default_of(BenchConfig, 'noise')})")
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
    p.add_argument("--seed", type=int, default=None,
                   help=f"random seed (default: {default_of(BenchConfig, 'seed')})")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="PINN device, auto = cuda when available (default: "
                   f"{default_of(BenchConfig, 'device')})")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (if omitted: all)")
    from .bench.patient_study import CASES, PatientStudyConfig

    ps = p.add_argument_group(
        "patient study (--study patient: both methods on the same synthetic atlas patients)")
    ps.add_argument("--study", choices=["paper", "patient"], default="paper",
                    help="paper: the paper's experiments (default); patient: FD-based fit vs "
                    "PINN on gbm synth patients (one/two scans, clean/noisy labels)")
    ps.add_argument("--downsample", type=int, default=None,
                    help="atlas block-averaging factor of the patients (default: "
                    f"{default_of(PatientStudyConfig, 'downsample')}; quick 3)")
    ps.add_argument("--cases", type=lambda s: tuple(items([s]) or ()), default=None,
                    help=f"comma-separated subset of {','.join(CASES)}")
    ps.add_argument("--pinn-budget", type=float, default=None,
                    help="PINN training budget per fit, s (default: "
                    f"{default_of(PatientStudyConfig, 'pinn_budget')}; quick 120)")
    p.add_argument("--config", help="TOML file with the settings of gbm.bench.BenchConfig")
    p.add_argument("--out", default="bench", help="output folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted study in --out: finished runs are kept, an "
                   "interrupted PINN run continues from its checkpoint")
    p.add_argument("--force", action="store_true", help="discard an existing output folder")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(a: argparse.Namespace) -> int:
    from .bench import BenchConfig, run_bench

    if a.study == "patient":
        from .bench.patient_study import PatientStudyConfig, run_patient_study

        quick = {"downsample": 3, "pinn_budget": 120.0, "cases": ("one", "two")} if a.quick \
            else {}
        over = {k: getattr(a, k) for k in ("downsample", "cases", "pinn_budget", "threads",
                                           "device", "seed")}
        cfg_p = build(PatientStudyConfig, quick, over)
        run_patient_study(cfg_p, a.out, force=a.force)
        return 0
    over = {k: getattr(a, k) for k in ("quick", "domains", "noise", "pinn_optimizer",
                                       "pinn_epochs", "extrapolate_epochs", "seed", "device",
                                       "threads")}
    over["quick"] = True if a.quick else None
    cfg = build(BenchConfig, load_toml(a.config) if a.config else {}, over)
    run_bench(cfg, a.out, force=a.force, resume=a.resume)
    return 0


def _forward_parser(sub: Any) -> None:
    p = sub.add_parser("forward", help="FD simulation of tumour growth (Rust solver)",
                       description="Simulate the diffuse-domain Fisher-Kolmogorov model with the "
                       "explicit finite-volume solver and write NIfTI snapshots on the input grid, "
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
    p.add_argument("--config", help="TOML file with these settings (flags override it)")
    p.add_argument("--out", default="runs/forward", help="output folder (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.set_defaults(func=_cmd_forward)


def _cmd_forward(a: argparse.Namespace) -> int:
    from .runs import run_forward

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
    add_geometry_args(p, ForwardConfig)
    p.add_argument("--out", default="phi.nii.gz", help="output NIfTI (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=_cmd_phase)


def _cmd_phase(a: argparse.Namespace) -> int:
    from .runs import run_phase_field

    d = ForwardConfig()  # the geometry defaults the --help shows
    info = run_phase_field(a.wm, a.gm, a.out, csf=a.csf, slice_index=a.slice,
                           epsilon=a.epsilon if a.epsilon is not None else d.epsilon,
                           margin=a.margin if a.margin is not None else d.margin, force=a.force)
    print(f"gbm phase-field: box {info['box_shape']}, {info['steps']} steps, converged "
          f"{info['converged']}, volume(phi>0.5)/mask - 1 = {info['volume_rel_diff']:+.3%} "
          f"-> {a.out}")
    return 0


def _pinn_commands(sub: Any) -> None:
    """``infer``, ``pinn-forward``, ``extrapolate`` (:mod:`gbm.pinn.commands`; no torch import)."""
    try:
        from .pinn import commands
    except ImportError:  # pragma: no cover - the PINN needs torch, a declared dependency
        return
    commands.register(sub)


def _patient_fit_parser(sub: Any) -> None:
    """``fit``: a patient's segmentations -> calibrated model, forecast, plans (:mod:`gbm.fit`)."""
    from .fit import add_parser

    add_parser(sub)


def _synth_parser(sub: Any) -> None:
    """``synth``: synthetic patients with known truth (:mod:`gbm.synth`)."""
    from .synth import add_parser

    add_parser(sub)


def _cohort_parser(sub: Any) -> None:
    """``cohort``: one ``fit`` per patient of a cohort, local or on Ray (:mod:`gbm.cohort`)."""
    from .cohort import add_parser

    add_parser(sub)


#: The subcommands, in the order ``--help`` lists them: one ``register(subparsers)`` each.
COMMANDS: list[Callable[[Any], None]] = [
    _forward_parser, _phase_parser, _patient_fit_parser, _synth_parser, _fit_parser,
    _bench_parser, _pinn_commands, _cohort_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """The full ``gbm`` argument parser."""
    from . import __version__

    p = Parser(prog="python -m gbm", description="Glioblastoma growth model (diffuse-domain "
               "Fisher-Kolmogorov) with an FD solver and PINN parameter inference.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"gbm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for register in COMMANDS:
        register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    argv = glue_negative_values(list(sys.argv[1:] if argv is None else argv))
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


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
