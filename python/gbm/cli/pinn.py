"""The PINN subcommands of ``python -m gbm``: ``infer``, ``pinn-forward``, ``extrapolate``.

Each is a thin wrapper: parse flags, merge them over ``--config FILE`` (TOML) into a frozen
config (:func:`gbm.cli.common.config_from`), call the Python API (:func:`gbm.pinn.inverse.infer`, :func:`gbm.pinn.forward.pinn_forward`,
:func:`gbm.pinn.forward.extrapolate`). Bad input raises :class:`gbm.errors.InputError`, which the
CLI reports as one line and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from gbm import extras
from gbm.cli.common import (
    SEGMENTATION_FIELDS,
    add_config,
    add_fit_flags,
    add_force,
    add_observation_args,
    add_out,
    add_problem_args,
    add_segmentation_args,
    add_threads,
    config_from,
    default_of,
    float_list,
    problem_overrides,
)
from gbm.errors import require
from gbm.jobs.fit.run import FitConfig, run_fit
from gbm.pinn.config import ExtrapolateConfig, ForwardPinnConfig, InferConfig

__all__ = ["register"]


def _epilog() -> str:
    c = InferConfig()
    return (
        "units: lengths in mm (world coordinates of the input image), time in days, Dw in "
        "mm^2/day, rho in 1/day; Dg = Dw/ratio. Defaults run the paper's patient-slice experiment "
        "on the embedded ICBM152 atlas (axial slice through the default seed, T = "
        f"{c.resolved_horizon():g} d, {c.resolved_n_obs():,} synthetic FD observations at Dw "
        f"{c.dw_true:g}, rho {c.rho_true:g}) and finish within ~10 minutes on a 2-core CPU."
    )


_EPILOG = _epilog()
_CONFIG_HELP = "TOML file with settings (flags override it)"


def _common(p: argparse.ArgumentParser, cls: type) -> None:
    """Problem and training flags of ``infer`` (cls InferConfig) and ``pinn-forward``."""
    add_problem_args(p, cls)
    if cls is not InferConfig:
        p.add_argument("--seed", type=int, default=None,
                       help=f"random seed (default: {default_of(cls, 'seed')})")
    t = p.add_argument_group("training")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help=f"auto = cuda when available (default: {default_of(cls, 'device')})")
    t.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help=f"(default: {default_of(cls, 'dtype')})")
    t.add_argument("--time-budget", type=float, default=None,
                   help="wall-clock budget for training, seconds (default: "
                   f"{default_of(cls, 'time_budget')})")
    add_threads(t, "CPU threads (if omitted: all cores)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the loss (~1.3x faster iterations after a compile of a "
                   "few seconds; falls back to eager if compiling fails) (default: "
                   f"{default_of(cls, 'compile')})")
    t.add_argument("--report-days", type=float_list, default=None,
                   help="days at which u is written (if omitted: T/3, 2T/3, T)")
    add_config(p, _CONFIG_HELP)
    add_out(p, None, "output folder")
    add_force(p)


#: The training flags of ``infer`` that set InferConfig fields (besides the problem's).
INFER_FIELDS = ("device", "dtype", "time_budget", "threads", "compile", "report_days", "tol",
                "max_epochs", "check_every", "window", "optimizer", "data_weight")
#: The flags of ``infer``'s patient mode that set FitConfig fields of the same name.
PATIENT_FIELDS = ("wm", "gm", "csf", "slice", *SEGMENTATION_FIELDS, "assume_days", "forecast",
                  "device", "threads", "seed")
#: The flags of ``pinn-forward`` (ForwardPinnConfig fields).
FORWARD_FIELDS = ("problem", "wm", "gm", "csf", "slice", "three_d", "seed_mm", "horizon",
                  "ratio", "device", "dtype", "time_budget", "seed", "threads", "compile",
                  "report_days", "dw", "rho", "adam_epochs", "lbfgs_iters")
#: The flags of ``extrapolate`` (ExtrapolateConfig fields).
EXTRAPOLATE_FIELDS = ("horizon2", "adam_epochs", "lbfgs_iters", "device", "time_budget", "seed",
                      "threads", "compile")


def _add_infer(sub: Any) -> None:
    p = sub.add_parser(
        "infer", help="infer Dw and rho from observations with the PINN",
        description="Parameter inference with a physics-informed neural network (paper Sec. 2.4):"
        " trains the network and log Dw, log rho on the PDE residual and the observations, stops "
        "by Eq. 11 (--tol), the time budget or --max-epochs, and writes results.json, log.csv, "
        "figures, the tolerance table, the checkpoint and u as NIfTI.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    C = InferConfig
    _common(p, C)
    add_observation_args(p, C)
    thr = default_of(C, "region_threshold")
    p.add_argument("--region-radius", type=float, default=None,
                   help="radius (mm) of the tumour region around the seed where the PINN trains "
                   f"(if omitted: {default_of(C, 'region_factor')} x the farthest observation "
                   f"with u >= {thr}; give it for noisy observations, which exceed {thr} "
                   "everywhere)")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default=None,
                   help="lbfgs (data fit, least-squares start, joint L-BFGS) or adam (the paper's "
                   f"recipe) (default: {default_of(C, 'optimizer')})")
    p.add_argument("--data-weight", choices=["auto", "fixed"], default=None,
                   help=f"data term: fixed (w_data {default_of(C, 'w_data')} times the mean "
                   "squared misfit) or auto (the noise sigma_hat estimated from the observations' "
                   "nearest-neighbour differences; above the floor "
                   f"{default_of(C, 'noise_floor')} the misfit is averaged over the "
                   "k = ceil((sigma_hat/floor)^2) nearest observations and the data-only fit stops "
                   "at the noise level) (default: "
                   f"{default_of(C, 'data_weight')})")
    s = p.add_argument_group("stopping (paper Eq. 11)")
    s.add_argument("--tol", type=float, default=None,
                   help="stop when the Eq. 11 window sum < TOL (if omitted: run to the budget)")
    s.add_argument("--max-epochs", type=int, default=None,
                   help=f"(default: {default_of(C, 'max_epochs')})")
    s.add_argument("--check-every", type=int, default=None,
                   help="epochs between checks (if omitted: lbfgs "
                   f"{C(optimizer='lbfgs').resolved_check_every()}, adam "
                   f"{C(optimizer='adam').resolved_check_every()})")
    s.add_argument("--window", type=int, default=None,
                   help=f"checks per window (default: {default_of(C, 'window')})")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the interrupted run in DIR (its settings are reused)")
    pt = p.add_argument_group(
        "patient mode (segmentations; runs `gbm fit --method pinn`, see `gbm fit --help`)")

    add_segmentation_args(pt)
    add_fit_flags(pt, ("assume_days", "forecast"), brief=True,
                  help={"forecast": "days after the last scan to forecast"})
    p.set_defaults(func=_cmd_infer)


def _infer_patient(a: argparse.Namespace) -> int:
    """``gbm infer`` with patient flags: the PINN patient fit (``gbm fit --method pinn``)."""

    require(not a.resume, "--resume with patient flags: use gbm fit --method pinn --resume")
    cfg = config_from(FitConfig, a, PATIENT_FIELDS, extra={
        "method": "pinn", "pinn_budget": a.time_budget, "pinn_compile": a.compile})
    run_fit(cfg, a.out or "runs/infer-patient", force=a.force, progress=True)
    return 0


def _cmd_infer(a: argparse.Namespace) -> int:
    extras.require("pinn", "gbm infer")
    from gbm.pinn.inverse import infer  # torch: the PINN is an optional extra

    if a.patient or a.scans:
        return _infer_patient(a)
    over = problem_overrides(a)  # also checks --days when resuming
    if a.resume:
        from gbm.pinn.inverse import stored_config  # torch: the PINN is an optional extra

        # the run's own settings; only the stopping limits and the device may be changed
        cfg = stored_config(a.resume)
        given = {k: getattr(a, k) for k in ("max_epochs", "time_budget", "tol", "device")
                 if getattr(a, k) is not None}
        infer(dataclasses.replace(cfg, **given), a.resume, resume=a.resume)
        return 0
    cfg = config_from(InferConfig, a, INFER_FIELDS, extra=over)
    out = a.out or f"runs/infer-{cfg.problem}"
    infer(cfg, out, force=a.force)
    return 0


def _add_forward(sub: Any) -> None:
    p = sub.add_parser(
        "pinn-forward", help="solve the forward problem with the PINN (fixed Dw, rho)",
        description="Forward PINN solve (paper Sec. 3.2.1): Adam then L-BFGS at fixed Dw, rho; "
        "compares with the FD solution and writes u as NIfTI and PNG.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    C = ForwardPinnConfig
    _common(p, C)
    p.add_argument("--dw", type=float, default=None,
                   help=f"Dw, mm^2/day (default: {default_of(C, 'dw')})")
    p.add_argument("--rho", type=float, default=None,
                   help=f"rho, 1/day (default: {default_of(C, 'rho')})")
    p.add_argument("--adam-epochs", type=int, default=None,
                   help=f"Adam epochs (default: {default_of(C, 'adam_epochs')})")
    p.add_argument("--lbfgs-iters", type=int, default=None,
                   help=f"L-BFGS iterations (default: {default_of(C, 'lbfgs_iters')})")
    p.set_defaults(func=_cmd_forward)


def _cmd_forward(a: argparse.Namespace) -> int:
    extras.require("pinn", "gbm pinn-forward")
    from gbm.pinn.forward import pinn_forward  # torch: the PINN is an optional extra

    cfg = config_from(ForwardPinnConfig, a, FORWARD_FIELDS)
    pinn_forward(cfg, a.out or f"runs/pinn-forward-{cfg.problem}", force=a.force)
    return 0


def _add_extrapolate(sub: Any) -> None:
    p = sub.add_parser(
        "extrapolate", help="continue an inference run's PINN from T to T2 with fixed Dw, rho",
        description="Extrapolation (paper Sec. 3.1.2): holds the inferred Dw, rho of a `gbm "
        "infer` run, warm-starts its network, trains on [0, T2] and reports the MSE against the "
        "FD solution on (T, T2] when the truth is known.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="output folder of a `gbm infer` run")
    C = ExtrapolateConfig
    p.add_argument("--until", dest="horizon2", type=float, default=None,
                   help="new final time T2 in days (if omitted: 1.5 T)")
    p.add_argument("--adam-epochs", type=int, default=None,
                   help=f"(default: {default_of(C, 'adam_epochs')})")
    p.add_argument("--lbfgs-iters", type=int, default=None,
                   help=f"(default: {default_of(C, 'lbfgs_iters')})")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help=f"(default: {default_of(C, 'device')})")
    p.add_argument("--time-budget", type=float, default=None,
                   help=f"seconds (default: {default_of(C, 'time_budget')})")
    p.add_argument("--seed", type=int, default=None, help=f"(default: {default_of(C, 'seed')})")
    add_threads(p, "(if omitted: all cores)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help=f"torch.compile the loss (default: {default_of(C, 'compile')})")
    add_config(p, _CONFIG_HELP)
    add_out(p, None, "output folder (if omitted: <run>-extrapolated)")
    add_force(p, None)
    p.set_defaults(func=_cmd_extrapolate)


def _cmd_extrapolate(a: argparse.Namespace) -> int:
    extras.require("pinn", "gbm extrapolate")
    from gbm.pinn.forward import extrapolate  # torch: the PINN is an optional extra

    cfg = config_from(ExtrapolateConfig, a, EXTRAPOLATE_FIELDS)
    extrapolate(a.run, cfg, a.out or f"{a.run.rstrip('/')}-extrapolated", force=a.force)
    return 0


def register(subparsers: Any) -> None:
    """Add ``infer``, ``pinn-forward`` and ``extrapolate`` to the ``gbm`` CLI."""
    _add_infer(subparsers)
    _add_forward(subparsers)
    _add_extrapolate(subparsers)
