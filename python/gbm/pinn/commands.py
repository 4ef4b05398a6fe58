"""The PINN subcommands of ``python -m gbm``: ``infer``, ``pinn-forward``, ``extrapolate``.

Each is a thin wrapper: parse flags, merge them over ``--config FILE`` (TOML) into a frozen
config, call the Python API (:func:`gbm.pinn.inverse.infer`, :func:`gbm.pinn.forward.pinn_forward`,
:func:`gbm.pinn.forward.extrapolate`). Bad input raises :class:`gbm.errors.InputError`, which the
CLI reports as one line and exit status 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from gbm.cli_args import (
    add_observation_args,
    add_problem_args,
    default_of,
    float_list,
    problem_overrides,
)
from gbm.config import build, load_toml
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
    t.add_argument("--threads", type=int, default=None,
                   help="CPU threads (if omitted: all cores)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the loss (~1.3x faster iterations after a compile of a "
                   "few seconds; falls back to eager if compiling fails) (default: "
                   f"{default_of(cls, 'compile')})")
    t.add_argument("--report-days", type=float_list, default=None,
                   help="days at which u is written (if omitted: T/3, 2T/3, T)")
    p.add_argument("--config", help="TOML file with settings (flags override it)")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")


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
    from gbm.fit import add_segmentation_args

    add_segmentation_args(pt)
    pt.add_argument("--assume-days", type=float, default=None,
                    help="one scan: assumed tumour age at the scan, days")
    pt.add_argument("--forecast", type=float_list, default=None,
                    help="days after the last scan to forecast")
    p.set_defaults(func=_cmd_infer)


def _infer_patient(a: argparse.Namespace) -> int:
    """``gbm infer`` with patient flags: the PINN patient fit (``gbm fit --method pinn``)."""
    from gbm.errors import require
    from gbm.fit import FitConfig, run_fit

    require(not a.resume, "--resume with patient flags: use gbm fit --method pinn --resume")
    over = {"wm": a.wm, "gm": a.gm, "csf": a.csf, "slice": a.slice, "patient": a.patient,
            "scans": tuple(a.scan) if a.scan else None, "labels": a.labels,
            "tumour_tissue": a.tumour_tissue, "recurrence": a.recurrence,
            "assume_days": a.assume_days, "forecast": a.forecast, "method": "pinn",
            "device": a.device, "threads": a.threads, "pinn_budget": a.time_budget,
            "pinn_compile": a.compile, "seed": a.seed}
    cfg = build(FitConfig, _load(a.config), over)
    run_fit(cfg, a.out or "runs/infer-patient", force=a.force, progress=True)
    return 0


def _overrides(a: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {n: getattr(a, n, None) for n in names}


def _load(path: str | None) -> dict[str, Any]:
    return load_toml(path) if path else {}


def _cmd_infer(a: argparse.Namespace) -> int:
    from gbm.pinn.inverse import infer

    if a.patient or a.scan:
        return _infer_patient(a)
    over = problem_overrides(a) | _overrides(
        a, ["device", "dtype", "time_budget", "threads", "compile", "report_days", "tol",
            "max_epochs", "check_every", "window", "optimizer", "data_weight"])
    if a.resume:
        import dataclasses

        from gbm.pinn.inverse import stored_config

        # the run's own settings; only the stopping limits and the device may be changed
        cfg = stored_config(a.resume)
        given = {k: over[k] for k in ("max_epochs", "time_budget", "tol", "device")
                 if over.get(k) is not None}
        infer(dataclasses.replace(cfg, **given), a.resume, resume=a.resume)
        return 0
    cfg = build(InferConfig, _load(a.config), over)
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
    from gbm.pinn.forward import pinn_forward

    over = _overrides(a, ["problem", "wm", "gm", "csf", "slice", "three_d", "seed_mm", "horizon",
                          "ratio", "device", "dtype", "time_budget", "seed", "threads", "compile",
                          "report_days", "dw", "rho", "adam_epochs", "lbfgs_iters"])
    cfg = build(ForwardPinnConfig, _load(a.config), over)
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
    p.add_argument("--threads", type=int, default=None, help="(if omitted: all cores)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help=f"torch.compile the loss (default: {default_of(C, 'compile')})")
    p.add_argument("--config", help="TOML file with settings (flags override it)")
    p.add_argument("--out", default=None, help="output folder (if omitted: <run>-extrapolated)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=_cmd_extrapolate)


def _cmd_extrapolate(a: argparse.Namespace) -> int:
    from gbm.pinn.forward import extrapolate

    over = _overrides(a, ["horizon2", "adam_epochs", "lbfgs_iters", "device", "time_budget",
                          "seed", "threads", "compile"])
    cfg = build(ExtrapolateConfig, _load(a.config), over)
    extrapolate(a.run, cfg, a.out or f"{a.run.rstrip('/')}-extrapolated", force=a.force)
    return 0


def register(subparsers: Any) -> None:
    """Add ``infer``, ``pinn-forward`` and ``extrapolate`` to the ``gbm`` CLI."""
    _add_infer(subparsers)
    _add_forward(subparsers)
    _add_extrapolate(subparsers)
