"""Parameter inference with the PINN (paper Sec. 2.4): ``python -m gbm infer``.

:func:`infer` builds the problem (geometry, seed, observations, truth when synthetic), trains the
PINN with trainable log Dw, log rho (:class:`gbm.pinn.train.Trainer`), and writes into its output
folder:

* ``results.json``: inferred Dw, rho, errors when the truth is known, epochs, wall time, stop
  reason, the tolerance table, losses, device, thread count, versions, the full configuration;
* ``log.csv``: one row per check (epoch, seconds, losses, Dw, rho, lr, phase[, errors]);
* ``parameters.png``, ``errors.png`` (truth known), ``loss.png``: like the paper's Figs. 5-7, 12;
* ``table.md``: the Table-4-like tolerance table;
* ``checkpoint.pt``: network, parameters, optimiser, log and RNG states (``--resume`` continues it;
  ``extrapolate`` starts from it);
* ``u_pinn_day<D>.nii.gz``: the PINN's u at the report days on the input grid, and
  ``u_pinn.png``: axial panels (with the FD reference and the difference when known).

While training, ``checkpoint.pt`` and ``config.json`` are the only files in the folder; the results
are written when training ends.

Steps of :func:`infer`: :func:`resumed_config` (with ``--resume``), the problem
(:func:`gbm.problem.density.build.build_problem`) and network (:func:`make_network`), the
:class:`gbm.pinn.train.Trainer` on the density loss, :func:`infer_results` (results.json's
content) and :func:`write_infer_outputs` (the files).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gbm import io
from gbm.errors import InputError
from gbm.pinn import report
from gbm.pinn.checkpoint import load_checkpoint
from gbm.pinn.config import InferConfig
from gbm.pinn.density_loss import DensityLoss
from gbm.pinn.network import PinnNet
from gbm.pinn.report import u_on_grid
from gbm.pinn.stopping import tolerance_table
from gbm.pinn.train import (
    Trainer,
    TrainResult,
    TrainSettings,
    resolve_device,
    setup_threads,
    trainable_checks,
)
from gbm.problem.density.build import Problem, build_problem, reference_grid
from gbm.problem.density.model import DENSITY_L2
from gbm.provenance import versions as base
from gbm.viz.density import u_panels

__all__ = [
    "RunInfo",
    "infer",
    "infer_results",
    "make_network",
    "resumed_config",
    "stored_config",
    "train_settings",
    "versions",
    "write_infer_outputs",
    "write_u_outputs",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def versions() -> dict[str, Any]:
    """:func:`gbm.provenance.versions` plus torch and the CUDA device, when one is used."""

    v = base() | {"torch": torch.__version__}
    if torch.cuda.is_available():
        v["gpu"] = torch.cuda.get_device_name(0)
    return v


def train_settings(cfg: Any, **over: Any) -> TrainSettings:
    """TrainSettings from the matching fields of a config (plus overrides)."""
    names = {f.name for f in dataclasses.fields(TrainSettings)}
    vals = {k: getattr(cfg, k) for k in names if hasattr(cfg, k)}
    vals.update(over)
    return TrainSettings(**vals)


def make_network(cfg: Any, problem: Problem, dtype: torch.dtype) -> PinnNet:
    return PinnNet(problem.domain.ndim, problem.domain.center, problem.radius, problem.horizon,
                   cfg.width, cfg.depth, cfg.fourier, cfg.sigma_x, cfg.sigma_t, cfg.seed, dtype)


def network_meta(net: PinnNet, cfg: Any) -> dict[str, Any]:
    """Plain-typed description of the network, enough to rebuild it from a checkpoint."""
    return {"dim": net.dim, "center": [float(c) for c in net.center.cpu().double().tolist()],
            "length": net.length, "horizon": net.horizon, "width": cfg.width, "depth": cfg.depth,
            "fourier": cfg.fourier, "sigma_x": cfg.sigma_x, "sigma_t": cfg.sigma_t,
            "seed": cfg.seed, "dtype": cfg.dtype}


def _default_days(horizon: float) -> list[float]:
    return [round(horizon / 3, 6), round(2 * horizon / 3, 6), float(horizon)]


def write_u_outputs(out: Path, net: PinnNet, problem: Problem, days: list[float], force: bool,
                    reference_days: Callable[[float], np.ndarray] | None,
                    title: str, prefix: str = "u_pinn") -> dict[str, Any]:
    """u at ``days`` as NIfTI on the input grid + PNG panels; against the reference grid (inside
    the brain, phi >= 0.5): per day "mse", "max_abs" and "rel_l2" = ||u - u_ref|| / ||u_ref||."""

    geom = problem.geometry
    fields, refs, metrics = [], [], {}
    net.eval()
    for day in days:
        u = u_on_grid(net, problem.domain, day, problem.radius)
        fields.append(u)
        io.save_nifti_atomic(out / f"{prefix}_day{day:g}.nii.gz", geom.to_full(u),
                             geom.input_affine, force=force,
                             description=f"gbm PINN u day {day:g}")
        if reference_days is not None:
            r = reference_days(day)
            refs.append(r)
            inside = problem.domain.phi >= 0.5
            diff = (u - r)[inside]
            norm = float(np.linalg.norm(r[inside]))
            metrics[f"{day:g}"] = {"mse": float(np.mean(diff**2)),
                                   "max_abs": float(np.abs(diff).max()),
                                   "rel_l2": float(np.linalg.norm(diff)) / norm if norm > 0
                                   else float("nan")}
    io.write_bytes_atomic(out / f"{prefix}.png",
                          u_panels(geom, days, fields, refs if refs else None,
                                   problem.domain.center, title), force=force)
    return metrics


def stored_config(run_dir: str | Path) -> InferConfig:
    """The configuration of the run in ``run_dir`` (from its checkpoint)."""
    return _config_of(_checkpoint_of(run_dir))


def _checkpoint_of(run_dir: str | Path) -> dict[str, Any]:
    """The checkpoint of the run in ``run_dir`` (InputError without one)."""
    ck = Path(run_dir) / "checkpoint.pt"
    if not ck.is_file():
        raise InputError(f"--resume: no checkpoint.pt in {run_dir}")
    return load_checkpoint(ck)


def _config_of(state: dict[str, Any]) -> InferConfig:
    """The configuration stored in a checkpoint (lists back to tuples)."""
    stored = dict(state["extra"]["config"])
    return InferConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in stored.items()})


def infer(cfg: InferConfig, out: str | Path, force: bool = False, resume: str | Path | None = None,
          printer: Callable[[str], None] | None = None,
          problem: Problem | None = None) -> dict[str, Any]:
    """Infer Dw and rho with the PINN and write the results folder (see the module docstring).

    Parameters
    ----------
    cfg : InferConfig
    out : path
        Output folder (refused if it exists and is not empty, unless ``force``).
    force : bool
    resume : path, optional
        Folder of an interrupted run: its checkpoint and configuration are loaded and training
        continues (bit-identically on CPU); ``cfg`` then only contributes max_epochs,
        time_budget, tol and device.
    printer : callable, optional
        Receives the progress lines (default: print).
    problem : Problem, optional
        The problem built from ``cfg`` by :func:`gbm.problem.density.build.build_problem`, when
        the caller has it already (``gbm bench`` shares it with the FD-based fit); built here
        otherwise.

    Returns
    -------
    dict
        The content of ``results.json``.
    """

    say = printer or (lambda m: print(m, flush=True))
    state = None
    if resume is not None:
        cfg, state = resumed_config(cfg, resume)
        out, force = resume, True
    cfg.validate()
    outp = Path(out)
    if state is None:
        io.check_output(outp, force)
    threads = setup_threads(cfg.threads)
    device = resolve_device(cfg.device)
    dtype = DTYPES[cfg.dtype]
    t0 = time.perf_counter()
    if problem is None:
        problem = build_problem(cfg)
    setup_s = time.perf_counter() - t0
    net = make_network(cfg, problem, dtype)
    obs = problem.observations
    assert obs is not None
    extra = {"config": dataclasses.asdict(cfg), "network": network_meta(net, cfg),
             "problem": {"name": problem.name, "horizon": problem.horizon,
                         "radius": problem.radius,
                         "truth": list(problem.truth) if problem.truth else None}}
    _start_output(outp, cfg, fresh=state is None, force=force)
    settings = train_settings(cfg, check_every=cfg.resolved_check_every())
    trainer = Trainer(net, problem.domain, settings, cfg.dw0, cfg.rho0, problem.radius,
                      problem.horizon, (obs.points, obs.t, obs.u), device, dtype, problem.truth,
                      outp / "checkpoint.pt", extra, say)
    if state is not None:
        trainer.load_state_dict(state)
        say(f"gbm infer: resuming {outp} at epoch {trainer.epoch}")
    say(f"gbm infer: {problem.name}, T = {problem.horizon:g} d, {len(obs)} observations "
        f"({obs.source}), region radius {problem.radius:.1f} mm, device {device}, "
        f"{threads} threads, {cfg.dtype}")
    result = trainer.run()
    res = infer_results(cfg, problem, trainer.loss, result, RunInfo(extra["problem"], setup_s,
                                                                     str(device), threads))
    write_infer_outputs(outp, cfg, problem, trainer.net, res, result.log)
    msg = f"gbm infer: Dw {res['dw']:.4f} mm^2/day, rho {res['rho']:.5f} /day"
    if problem.truth:
        msg += f" (errors {res['dw_error_pct']:+.1f}% / {res['rho_error_pct']:+.1f}%)"
    msg += f" after {result.epochs} epochs, {result.seconds:.0f} s ({result.stopped}) -> {outp}"
    say(msg)
    return json.loads(json.dumps(res, default=float))


def resumed_config(cfg: InferConfig, resume: str | Path) -> tuple[InferConfig, dict[str, Any]]:
    """The configuration and checkpoint of the interrupted run in ``resume``: its stored
    configuration, with max_epochs, time_budget, tol and device from ``cfg``.

    Raises
    ------
    InputError
        Without a checkpoint.pt in ``resume``.
    """
    state = _checkpoint_of(Path(resume))
    keep = {"max_epochs": cfg.max_epochs, "time_budget": cfg.time_budget, "tol": cfg.tol,
            "device": cfg.device}
    return dataclasses.replace(_config_of(state), **keep), state


def _start_output(outp: Path, cfg: InferConfig, fresh: bool, force: bool) -> None:
    """Create the output folder (a fresh run with ``force`` empties it of files) and write
    config.json."""
    outp.mkdir(parents=True, exist_ok=True)
    if fresh and force:
        for old in outp.iterdir():
            if old.is_file():
                old.unlink()
    io.write_json_atomic(outp / "config.json", dataclasses.asdict(cfg), force=True)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What results.json reports about a run besides the training: the problem's summary, the
    set-up time (s), the device and the thread count."""

    problem: dict[str, Any]
    setup_seconds: float
    device: str
    threads: int


def infer_results(cfg: InferConfig, problem: Problem, loss: DensityLoss, result: TrainResult,
                  run: RunInfo) -> dict[str, Any]:
    """The content of results.json (without "u_vs_reference", added by
    :func:`write_infer_outputs`): estimates, errors against the truth, the tolerance table
    (Table 4), losses, the data weighting, the run's facts and the configuration."""
    dw, rho = loss.dw, loss.rho
    truth = problem.truth
    log = result.log
    table = tolerance_table([int(r["epoch"]) for r in log], [r["seconds"] for r in log],
                            [r["dw"] for r in log], [r["rho"] for r in log],
                            cfg.tolerances, cfg.window, truth, trainable_checks(log))
    with torch.no_grad():
        o = loss.obs
        assert o is not None
        pred = loss.net(o.ps.xs, o.ps.ts)
        data_mse = float(DENSITY_L2.loss(pred, o.u).item())
    obs = problem.observations
    assert obs is not None
    return {
        "dw": dw, "rho": rho,
        "truth": {"dw": truth[0], "rho": truth[1]} if truth else None,
        "dw_error_pct": 100 * (dw / truth[0] - 1) if truth else None,
        "rho_error_pct": 100 * (rho / truth[1] - 1) if truth else None,
        "epochs": result.epochs, "wall_seconds": result.seconds,
        "setup_seconds": run.setup_seconds,
        "compile_seconds": result.compile_seconds, "stopped": result.stopped,
        "final_loss": log[-1]["loss"], "final_loss_res": log[-1]["loss_res"],
        "final_loss_data": log[-1]["loss_data"], "data_mse": data_mse,
        "data_weighting": {"rule": cfg.data_weight, "w_data": loss.w_data,
                           "noise_estimate": loss.noise_estimate,
                           "noise_floor": cfg.noise_floor, "w_data_clean": cfg.w_data,
                           "average_k": loss.average_k, "fit_stop": loss.fit_stop},
        "tolerance_table": table, "problem": run.problem | {
            "n_observations": len(obs), "observations": obs.source,
            "seed_world_mm": list(problem.seed_world) if problem.seed_world else None,
            "seed_local_mm": problem.domain.center.tolist(), **problem.info},
        "device": run.device, "threads": run.threads, "dtype": cfg.dtype,
        "versions": versions(), "config": dataclasses.asdict(cfg),
        "units": {"dw": "mm^2/day", "rho": "1/day", "time": "days", "length": "mm"},
    }


def write_infer_outputs(outp: Path, cfg: InferConfig, problem: Problem, net: PinnNet,
                        res: dict[str, Any], log: list[dict[str, float]]) -> None:
    """Write u at the report days (adds ``res["u_vs_reference"]``), log.csv, the figures,
    table.md and, last, results.json (module docstring)."""
    truth = problem.truth
    days = list(cfg.report_days) if cfg.report_days else _default_days(problem.horizon)
    title = f"PINN inference: Dw {res['dw']:.4f} mm^2/d, rho {res['rho']:.5f} /d"
    res["u_vs_reference"] = write_u_outputs(outp, net, problem, days, True,
                                            reference_grid(problem), title)
    io.write_bytes_atomic(outp / "log.csv", report.log_csv_bytes(log, truth), force=True)
    io.write_bytes_atomic(outp / "parameters.png",
                          report.parameter_figure(log, truth, cfg.tolerances, cfg.window,
                                                  problem.name), force=True)
    if truth is not None:
        io.write_bytes_atomic(outp / "errors.png",
                              report.error_figure(log, truth, cfg.tolerances, cfg.window,
                                                  problem.name), force=True)
    io.write_bytes_atomic(outp / "loss.png", report.loss_figure(log, problem.name), force=True)
    io.write_bytes_atomic(outp / "table.md",
                          report.table_markdown(res["tolerance_table"], truth is not None)
                          .encode(), force=True)
    io.write_json_atomic(outp / "results.json", res, force=True)
