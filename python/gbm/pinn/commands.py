"""The PINN subcommands of ``python -m gbm``: ``infer``, ``pinn-forward``, ``extrapolate``.

Each is a thin wrapper: parse flags, merge them over ``--config FILE`` (TOML) into a frozen
config, call the Python API (:func:`gbm.pinn.inverse.infer`, :func:`gbm.pinn.forward.pinn_forward`,
:func:`gbm.pinn.forward.extrapolate`). Bad input raises :class:`gbm.errors.InputError`, which the
CLI reports as one line and exit status 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from gbm.cli import add_observation_args, add_problem_args, float_list, problem_overrides

__all__ = ["register"]

_EPILOG = (
    "units: lengths in mm (world coordinates of the input image), time in days, Dw in mm^2/day, "
    "rho in 1/day; Dg = Dw/ratio. Defaults run the paper's patient-slice experiment on the "
    "embedded ICBM152 atlas (axial slice through the default seed, T = 150 d, 26,830 synthetic FD "
    "observations at Dw 0.13, rho 0.025) and finish within ~10 minutes on a 2-core CPU."
)


def _common(p: argparse.ArgumentParser, infer: bool) -> None:
    add_problem_args(p)
    if not infer:
        p.add_argument("--seed", type=int, default=None, help="random seed (0)")
    t = p.add_argument_group("training")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="auto = cuda when available")
    t.add_argument("--dtype", choices=["float32", "float64"], default=None)
    t.add_argument("--time-budget", type=float, default=None,
                   help="wall-clock budget for training, seconds")
    t.add_argument("--threads", type=int, default=None, help="CPU threads (all cores)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the loss (default on; ~1.3x faster iterations after a "
                   "compile of a few seconds; falls back to eager if compiling fails)")
    t.add_argument("--report-days", type=float_list, default=None,
                   help="days at which u is written (default T/3, 2T/3, T)")
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
    _common(p, True)
    add_observation_args(p)
    p.add_argument("--region-radius", type=float, default=None,
                   help="radius (mm) of the tumour region around the seed where the PINN trains "
                   "(default: 1.25 x the farthest observation with u >= 1e-3; give it for noisy "
                   "observations, which exceed 1e-3 everywhere)")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default=None,
                   help="lbfgs (default: data fit, least-squares start, joint L-BFGS) or adam "
                   "(the paper's recipe)")
    s = p.add_argument_group("stopping (paper Eq. 11)")
    s.add_argument("--tol", type=float, default=None,
                   help="stop when the Eq. 11 window sum < TOL (default: run to the budget)")
    s.add_argument("--max-epochs", type=int, default=None)
    s.add_argument("--check-every", type=int, default=None, help="epochs between checks (1000)")
    s.add_argument("--window", type=int, default=None, help="checks per window (10)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the interrupted run in DIR (its settings are reused)")
    p.set_defaults(func=_cmd_infer)


def _overrides(a: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {n: getattr(a, n, None) for n in names}


def _load(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    from gbm.config import load_toml

    return load_toml(path)


def _cmd_infer(a: argparse.Namespace) -> int:
    from gbm.pinn.config import InferConfig, config_from_dict
    from gbm.pinn.inverse import infer

    over = problem_overrides(a) | _overrides(
        a, ["device", "dtype", "time_budget", "threads", "compile", "report_days", "tol",
            "max_epochs", "check_every", "window", "optimizer"])
    if a.resume:
        import dataclasses

        from gbm.pinn.inverse import stored_config

        # the run's own settings; only the stopping limits and the device may be changed
        cfg = stored_config(a.resume)
        given = {k: over[k] for k in ("max_epochs", "time_budget", "tol", "device")
                 if over.get(k) is not None}
        infer(dataclasses.replace(cfg, **given), a.resume, resume=a.resume)
        return 0
    cfg = config_from_dict(InferConfig, _load(a.config), over)
    out = a.out or f"runs/infer-{cfg.problem}"
    infer(cfg, out, force=a.force)
    return 0


def _add_forward(sub: Any) -> None:
    p = sub.add_parser(
        "pinn-forward", help="solve the forward problem with the PINN (fixed Dw, rho)",
        description="Forward PINN solve (paper Sec. 3.2.1): Adam then L-BFGS at fixed Dw, rho; "
        "compares with the FD solution and writes u as NIfTI and PNG.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p, False)
    p.add_argument("--dw", type=float, default=None, help="Dw, mm^2/day (0.13)")
    p.add_argument("--rho", type=float, default=None, help="rho, 1/day (0.025)")
    p.add_argument("--adam-epochs", type=int, default=None, help="Adam epochs (20,000)")
    p.add_argument("--lbfgs-iters", type=int, default=None, help="L-BFGS iterations (500)")
    p.set_defaults(func=_cmd_forward)


def _cmd_forward(a: argparse.Namespace) -> int:
    from gbm.pinn.config import ForwardPinnConfig, config_from_dict
    from gbm.pinn.forward import pinn_forward

    over = _overrides(a, ["problem", "wm", "gm", "csf", "slice", "three_d", "seed_mm", "horizon",
                          "ratio", "device", "dtype", "time_budget", "seed", "threads", "compile",
                          "report_days", "dw", "rho", "adam_epochs", "lbfgs_iters"])
    cfg = config_from_dict(ForwardPinnConfig, _load(a.config), over)
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
    p.add_argument("--until", dest="horizon2", type=float, default=None,
                   help="new final time T2 in days (default 1.5 T)")
    p.add_argument("--adam-epochs", type=int, default=None)
    p.add_argument("--lbfgs-iters", type=int, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--time-budget", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the loss (default on)")
    p.add_argument("--config", help="TOML file with settings (flags override it)")
    p.add_argument("--out", default=None, help="output folder (default: <run>-extrapolated)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=_cmd_extrapolate)


def _cmd_extrapolate(a: argparse.Namespace) -> int:
    from gbm.pinn.config import ExtrapolateConfig, config_from_dict
    from gbm.pinn.forward import extrapolate

    over = _overrides(a, ["horizon2", "adam_epochs", "lbfgs_iters", "device", "time_budget",
                          "seed", "threads", "compile"])
    cfg = config_from_dict(ExtrapolateConfig, _load(a.config), over)
    extrapolate(a.run, cfg, a.out or f"{a.run.rstrip('/')}-extrapolated", force=a.force)
    return 0


def register(subparsers: Any) -> None:
    """Add ``infer``, ``pinn-forward`` and ``extrapolate`` to the ``gbm`` CLI."""
    _add_infer(subparsers)
    _add_forward(subparsers)
    _add_extrapolate(subparsers)
