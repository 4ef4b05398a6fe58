"""Forward PINN solve (paper Sec. 3.2.1) and extrapolation (paper Sec. 3.1.2, end).

* :func:`pinn_forward`: fixed Dw, rho; Adam (lr 1e-3) on resampled collocation points, then
  L-BFGS on a fixed larger set, as in the paper; compared with the FD solution at the same
  parameters.
* :func:`extrapolate`: hold the Dw, rho inferred by a ``gbm infer`` run, warm-start its network and
  train on [0, T2] (collocation times U(0, T2), the original observations on [0, T] kept as data
  so the early part stays anchored), then compare with the FD solution on (T, T2] and report the
  mean squared difference (the paper reports 6.6e-5 for the disk, T = 300 -> 450 d).
"""

from __future__ import annotations

import dataclasses
import math
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
from gbm.pinn.config import ExtrapolateConfig, ForwardPinnConfig, InferConfig
from gbm.pinn.inverse import (
    DTYPES,
    make_network,
    network_meta,
    train_settings,
    versions,
    write_u_outputs,
)
from gbm.pinn.network import PinnNet
from gbm.pinn.train import Trainer, resolve_device, setup_threads
from gbm.problem.density.build import build_problem, reference_grid
from gbm.problem.density.observations import synthetic_observations
from gbm.problem.domain import Domain

__all__ = ["extrapolate", "extrapolation_test_points", "load_network", "pinn_forward"]


def pinn_forward(cfg: ForwardPinnConfig, out: str | Path, force: bool = False,
                 printer: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Solve the forward problem with the PINN at fixed (Dw, rho); write results to ``out``.

    Writes ``results.json`` (final losses, MSE against FD at the report days, epochs, wall time),
    ``log.csv``, ``loss.png``, ``checkpoint.pt``, ``u_pinn_day<D>.nii.gz`` and ``u_pinn.png``.
    """

    say = printer or (lambda m: print(m, flush=True))
    outp = io.check_output(out, force)
    threads = setup_threads(cfg.threads)
    device = resolve_device(cfg.device)
    dtype = DTYPES.get(cfg.dtype)
    if dtype is None:
        raise InputError(f"--dtype must be float32 or float64, got {cfg.dtype}")
    problem = build_problem(cfg, with_observations=False)
    net = make_network(cfg, problem, dtype)
    total = cfg.adam_epochs + cfg.lbfgs_iters
    settings = train_settings(cfg, param_mode="fixed", max_epochs=total,
                              lbfgs_fraction=cfg.lbfgs_iters / total if cfg.lbfgs_iters else 0.0,
                              w_data=0.0)
    outp.mkdir(parents=True, exist_ok=True)
    if force:
        for old in outp.iterdir():
            if old.is_file():
                old.unlink()
    extra = {"config": dataclasses.asdict(cfg), "network": network_meta(net, cfg)}
    trainer = Trainer(net, problem.domain, settings, cfg.dw, cfg.rho, problem.radius,
                      problem.horizon, None, device, dtype, None, outp / "checkpoint.pt", extra,
                      say)
    say(f"gbm pinn-forward: {problem.name}, T = {problem.horizon:g} d, Dw {cfg.dw}, rho {cfg.rho},"
        f" radius {problem.radius:.1f} mm, device {device}, {threads} threads")
    result = trainer.run()
    days = list(cfg.report_days) if cfg.report_days else [problem.horizon / 3,
                                                          2 * problem.horizon / 3,
                                                          problem.horizon]
    metrics = write_u_outputs(outp, trainer.net, problem, days, True, reference_grid(problem),
                              f"PINN forward, Dw {cfg.dw}, rho {cfg.rho}")
    log = result.log
    res = {"epochs": result.epochs, "wall_seconds": result.seconds, "stopped": result.stopped,
           "final_loss": log[-1]["loss"], "u_vs_fd": metrics, "device": str(device),
           "threads": threads, "versions": versions(), "config": dataclasses.asdict(cfg),
           "radius_mm": problem.radius}
    io.write_bytes_atomic(outp / "log.csv", report.log_csv_bytes(log), force=True)
    io.write_bytes_atomic(outp / "loss.png", report.loss_figure(log, "PINN forward"), force=True)
    io.write_json_atomic(outp / "results.json", res, force=True)
    worst = max((m["mse"] for m in metrics.values()), default=float("nan"))
    say(f"gbm pinn-forward: loss {log[-1]['loss']:.3e}, max MSE vs FD {worst:.2e} after "
        f"{result.epochs} epochs, {result.seconds:.0f} s -> {outp}")
    return res


def _load_run(run_dir: Path) -> tuple[dict, InferConfig]:
    ck = run_dir / "checkpoint.pt"
    if not ck.is_file():
        raise InputError(f"--run: no checkpoint.pt in {run_dir} (run `gbm infer` first)")
    state = load_checkpoint(ck)
    stored = {k: (tuple(v) if isinstance(v, list) else v)
              for k, v in dict(state["extra"]["config"]).items()}
    return state, InferConfig(**stored)


def extrapolate(run_dir: str | Path, cfg: ExtrapolateConfig, out: str | Path,
                force: bool = False,
                printer: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Extend an inference run from T to T2 with its inferred parameters held fixed.

    Returns
    -------
    dict
        ``results.json``: Dw, rho used, T, T2, MSE of the PINN against FD on (T, T2] (at random
        space-time points in the region and at the report days on the grid), epochs, wall time.
    """

    say = printer or (lambda m: print(m, flush=True))
    run = Path(run_dir)
    state, icfg = _load_run(run)
    outp = io.check_output(out, force)
    horizon = icfg.resolved_horizon()
    t2 = float(cfg.horizon2) if cfg.horizon2 is not None else 1.5 * horizon
    if not t2 > horizon:
        raise InputError(f"--until must be > T = {horizon:g} d, got {t2:g}")
    threads = setup_threads(cfg.threads)
    device = resolve_device(cfg.device)
    dtype = DTYPES[icfg.dtype]
    dw = math.exp(float(state["log_dw"]))
    rho = math.exp(float(state["log_rho"]))
    problem = build_problem(icfg)
    net = make_network(icfg, problem, dtype)
    net.load_state_dict(state["net"])
    # the tumour keeps growing: widen the region by the Fisher front's travel, 2 sqrt(D rho) dT
    radius = problem.radius + 1.25 * 2.0 * math.sqrt(dw * rho) * (t2 - horizon)
    truth = problem.truth
    reference = None
    if truth is not None:
        # ground truth to T2 at the true parameters
        tcfg = dataclasses.replace(icfg, horizon=t2, observations=None, days=None)
        reference = build_problem(tcfg, with_observations=False).reference
    obs = problem.observations
    assert obs is not None
    settings = train_settings(cfg, param_mode="fixed",
                              max_epochs=cfg.adam_epochs + cfg.lbfgs_iters,
                              lbfgs_fraction=(cfg.lbfgs_iters / (cfg.adam_epochs + cfg.lbfgs_iters)
                                              if cfg.lbfgs_iters else 0.0),
                              w_data=icfg.w_data, w_res=icfg.w_res)
    outp.mkdir(parents=True, exist_ok=True)
    extra = {"config": dataclasses.asdict(icfg), "extrapolate": dataclasses.asdict(cfg),
             "network": network_meta(net, icfg)}
    trainer = Trainer(net, problem.domain, settings, dw, rho, radius, t2,
                      (obs.points, obs.t, obs.u), device, dtype, None, outp / "checkpoint.pt",
                      extra, say)
    say(f"gbm extrapolate: Dw {dw:.4f}, rho {rho:.5f} held fixed, T {horizon:g} -> {t2:g} d, "
        f"radius {radius:.1f} mm, device {device}, {threads} threads")
    t0 = time.perf_counter()
    result = trainer.run()
    res: dict[str, Any] = {"dw": dw, "rho": rho, "horizon": horizon, "horizon2": t2,
                           "radius_mm": radius,
                           "epochs": result.epochs, "wall_seconds": time.perf_counter() - t0,
                           "final_loss": result.log[-1]["loss"], "device": str(device),
                           "threads": threads, "versions": versions(), "run": str(run)}
    days = list(np.linspace(horizon, t2, 4)[1:])
    if reference is not None:

        dom = Domain(problem.domain.phi, problem.domain.kfac, problem.domain.spacing,
                     problem.domain.center)
        test_pts, tt = extrapolation_test_points(dom, reference, radius, horizon, t2, icfg.seed)
        test_u = reference(test_pts, tt)
        with torch.no_grad():
            p = next(trainer.net.parameters())
            pred = trainer.net.u(torch.as_tensor(test_pts, dtype=p.dtype, device=p.device),
                                 torch.as_tensor(tt, dtype=p.dtype, device=p.device))
            pred = pred.double().cpu().numpy()
        res["mse_vs_fd"] = float(np.mean((pred - test_u) ** 2))
        res["truth"] = {"dw": truth[0], "rho": truth[1]}

        def ref_days(day: float) -> np.ndarray:
            return reference_grid(dataclasses.replace(problem, reference=reference))(day)
    else:
        ref_days = None  # type: ignore[assignment]
    ext_problem = dataclasses.replace(problem, radius=radius, horizon=t2)
    title = f"PINN extrapolation to day {t2:g} (Dw {dw:.4f}, rho {rho:.5f})"
    res["u_vs_fd"] = write_u_outputs(outp, trainer.net, ext_problem, days, True, ref_days,
                                     title, prefix="u_extrapolated")
    io.write_bytes_atomic(outp / "log.csv", report.log_csv_bytes(result.log), force=True)
    io.write_bytes_atomic(outp / "loss.png", report.loss_figure(result.log, "extrapolation"),
                          force=True)
    io.write_json_atomic(outp / "results.json", res, force=True)
    msg = f"gbm extrapolate: {result.epochs} epochs, {res['wall_seconds']:.0f} s"
    if "mse_vs_fd" in res:
        msg += f", MSE vs FD on ({horizon:g}, {t2:g}] d: {res['mse_vs_fd']:.2e}"
    say(msg + f" -> {outp}")
    return res


def extrapolation_test_points(domain: Any, reference: Any, radius: float, horizon: float,
                              t2: float, seed: int,
                              n: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """The test set of an extrapolation: ``n`` points radially sampled within ``radius`` mm of the
    seed (inside the brain) at times U(T, T2) days; deterministic in ``seed``."""

    test = synthetic_observations(domain, reference, n, radius, t2 - horizon, seed + 99)
    return test.points, test.t + horizon


def load_network(path: str | Path, device: str | torch.device = "cpu") -> PinnNet:
    """Rebuild the trained :class:`PinnNet` stored in a run's ``checkpoint.pt``."""
    state = load_checkpoint(path, map_location=device)
    m = state["extra"]["network"]
    net = PinnNet(m["dim"], m["center"], m["length"], m["horizon"], m["width"], m["depth"],
                  m["fourier"], m["sigma_x"], m["sigma_t"], m["seed"], DTYPES[m["dtype"]])
    net.load_state_dict(state["net"])
    return net.to(device)
