"""Time one PINN training epoch, forward and inverse, against plain autograd and a DeepXDE-style
baseline in the same run.

Forward epoch = residual loss on N collocation points (paper Eq. 8, DDM form) + backward + Adam
step. Inverse epoch = the same plus trainable log Dw, log rho and the data term
(:class:`gbm.problem.density.model.DensityL2`) on N observation points. Every variant uses the same
network (3 x 100 tanh by default, inputs (x, y, t)), the same points and the same coefficient
fields (the paper's disk, phi = 0.5 + 0.5 tanh(50 - r), pure white matter), so the ratios isolate
the method:

* ``autograd``: nested ``torch.autograd.grad`` for u_t, grad u and the Laplacian (the plain way);
* ``DeepXDE-style inverse``: the same, with the PDE residual evaluated on the collocation points
  *and* the observation points (DeepXDE's ``PDE(..., anchors)`` + ``PointSetBC`` does this: its
  inverse epoch is ~2x its forward epoch) and the data term on the observation points' outputs;
* ``forward Laplacian``: gbm's network (:meth:`gbm.pinn.network.PinnNet.derivatives`), value,
  gradient, time derivative and Laplacian carried layer by layer, one backward pass. By default
  the fused path (:mod:`gbm.pinn.kernels`: all rows in one feature-major matrix, one oneDNN
  product per layer, hand-written backward); ``row-major`` is the same computation as a plain
  autograd graph of (N, H) rows (``MLP(fused=False)``, gbm's path before the fused kernel);
* ``gbm inverse``: one Adam epoch of gbm's own density method (the Trainer's
  :class:`gbm.pinn.density_loss.DensityLoss`: its loss, its optimiser, residual on the
  collocation points only, data term on all observations);
* ``+ compile``: the same under ``torch.compile`` (compile time reported separately).

Usage::

    python benches/bench_pinn_epoch.py [--points 20000] [--epochs 30] [--threads 2]
        [--dtype float32|float64] [--no-compile] [--device cpu|cuda] [--only inverse|forward]

Prints the machine, torch version, thread count, ms/epoch (median, variants run round-robin so
load changes hit all alike) per variant and the ratios to the baselines of the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from gbm.pinn.kernels import keep_heap
from gbm.pinn.network import Derivatives, PinnNet
from gbm.pinn.residual import PointSet, scaled_residual
from gbm.problem.density.model import DENSITY_L2


def disk_points(n: int, length: float, dtype, device, seed: int = 0) -> PointSet:
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(n, generator=g, dtype=torch.float64).sqrt()
    th = torch.rand(n, generator=g, dtype=torch.float64) * 2 * torch.pi
    xs = torch.stack([r * torch.cos(th), r * torch.sin(th)], -1)  # scaled, |x'| <= 1
    ts = torch.rand(n, 1, generator=g, dtype=torch.float64)
    big_r, w = 50.0, 1.0
    rr = xs.norm(dim=-1) * length
    phi = 0.5 + 0.5 * torch.tanh((big_r - rr) / w)
    dphi_dr = -0.5 / w / torch.cosh((big_r - rr) / w) ** 2
    grad = dphi_dr[:, None] * xs / xs.norm(dim=-1, keepdim=True).clamp_min(1e-12) * length

    def c(a):
        return a.to(dtype=dtype, device=device).contiguous()

    return PointSet(c(xs), c(ts), c(phi), c(phi), c(grad))


def loss_autograd(net: PinnNet, ps: PointSet, a: float, b: float) -> torch.Tensor:
    """Plain implementation: nested torch.autograd.grad for u_t, grad u and the Laplacian."""
    xs = ps.xs.detach().requires_grad_(True)
    ts = ps.ts.detach().requires_grad_(True)
    u = net(xs, ts)
    gx, gt = torch.autograd.grad(u.sum(), [xs, ts], create_graph=True)
    lap = torch.zeros_like(u)
    for k in range(xs.shape[1]):
        lap = lap + torch.autograd.grad(gx[:, k].sum(), xs, create_graph=True)[0][:, k]
    dv = Derivatives(u=u, grad=gx, u_t=gt[:, 0], lap=lap)
    return scaled_residual(dv, ps, a, b).square().mean()


def loss_forward_laplacian(net: PinnNet, ps: PointSet, a: float, b: float) -> torch.Tensor:
    dv = net.derivatives(ps.xs, ps.ts)
    return scaled_residual(dv, ps, a, b).square().mean()


def _cat(p: PointSet, q: PointSet) -> PointSet:
    return PointSet(*(torch.cat([getattr(p, k), getattr(q, k)]) for k in
                      ("xs", "ts", "phi", "F", "gradF")))


def loss_autograd_inverse(net: PinnNet, ps: PointSet, obs: PointSet, u_obs: torch.Tensor,
                          a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Plain inverse: nested-autograd residual on the collocation points, data on observations."""
    return loss_autograd(net, ps, a, b) + DENSITY_L2.loss(net(obs.xs, obs.ts), u_obs)


def loss_deepxde_inverse(net: PinnNet, ps: PointSet, obs: PointSet, u_obs: torch.Tensor,
                         a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DeepXDE-style inverse: one network pass on collocation + observation points, residual
    (nested autograd) on all of them, data term on the observation points' outputs."""
    allp = _cat(ps, obs)
    xs = allp.xs.detach().requires_grad_(True)
    ts = allp.ts.detach().requires_grad_(True)
    u = net(xs, ts)
    gx, gt = torch.autograd.grad(u.sum(), [xs, ts], create_graph=True)
    lap = torch.zeros_like(u)
    for k in range(xs.shape[1]):
        lap = lap + torch.autograd.grad(gx[:, k].sum(), xs, create_graph=True)[0][:, k]
    dv = Derivatives(u=u, grad=gx, u_t=gt[:, 0], lap=lap)
    res = scaled_residual(dv, allp, a, b).square().mean()
    return res + DENSITY_L2.loss(u[len(ps):], u_obs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--points", type=int, default=20000,
                   help="collocation points (and observation points for the inverse epoch)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=int, default=100)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--only", choices=["forward", "inverse"], default=None)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    # gbm's Trainer does this on CPU (gbm.pinn.kernels.keep_heap); done here first so that every
    # variant, the baselines too, runs with the same allocator
    kept = keep_heap() if args.device == "cpu" else False
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}".rstrip())
    cpu, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                f = line.split(":", 1)[1].split()
                flags = "AVX-512" if "avx512f" in f else ("AVX2" if "avx2" in f else "no AVX2")
    except OSError:
        pass
    print(f"cpu: {cpu} ({os.cpu_count()} logical cores, {flags}); device: {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.dtype}, "
          f"{args.points} points, {args.depth}x{args.width} tanh, 2D + t; glibc heap kept: "
          f"{kept}")

    # gbm's own trainer on the paper's disk: its collocation set and observations are the points
    # every variant uses
    from gbm.model.geometry import disk
    from gbm.pinn.train import Trainer, TrainSettings
    from gbm.problem.domain import Domain

    geom = disk()
    center = (np.asarray(geom.shape, dtype=np.float64) - 1) / 2 * np.asarray(geom.spacing)
    domain = Domain.from_geometry(geom, center, 10.0)
    length, horizon = 45.0, 300.0
    rng = np.random.default_rng(0)
    r = length * np.sqrt(rng.random(args.points))
    th = 2 * np.pi * rng.random(args.points)
    obs_pts = center + np.c_[r * np.cos(th), r * np.sin(th)]
    obs_t = horizon * rng.random(args.points)
    obs_u = 0.5 * (1 + np.tanh((20.0 - r) / 3.0)) * obs_t / horizon

    def make_net(fast: bool = True, fused: bool = True) -> PinnNet:
        return PinnNet(2, center, length, horizon, args.width, args.depth, seed=0, dtype=dtype,
                       fast=fast, fused=fused).to(device)

    def make_trainer(compile_: bool, fused: bool = True) -> Trainer:
        s = TrainSettings(n_colloc=args.points, resample_every=0, optimizer="adam",
                          param_mode="adam", w_data=1.0, compile=compile_, seed=0,
                          progress_seconds=1e9)
        net = make_net(fused=fused)
        return Trainer(net, domain, s, 0.1, 0.01, length, horizon, (obs_pts, obs_t, obs_u),
                       device, dtype, printer=lambda m: None)

    ref = make_trainer(False)
    ps = ref._collocation()
    assert ref.obs is not None
    obs, u_obs = ref.obs.ps, ref.obs.u
    a0 = 0.13 * horizon / length**2
    b0 = 0.025 * horizon

    def make_step(loss_fn, fast=True, fused=True):
        net = make_net(fast, fused)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net, ps, a0, b0)
            loss.backward()
            opt.step()

        return step

    def make_inverse_step(loss_fn, fast=True):
        net = make_net(fast)
        log_dw = torch.nn.Parameter(torch.tensor(np.log(0.1), dtype=dtype, device=device))
        log_rho = torch.nn.Parameter(torch.tensor(np.log(0.01), dtype=dtype, device=device))
        opt = torch.optim.Adam([{"params": list(net.parameters())},
                                {"params": [log_dw, log_rho]}], lr=1e-3)

        def step():
            opt.zero_grad(set_to_none=True)
            a = torch.exp(log_dw) * (horizon / length**2)
            b = torch.exp(log_rho) * horizon
            loss = loss_fn(net, ps, obs, u_obs, a, b)
            loss.backward()
            opt.step()

        return step

    variants: dict[str, object] = {}
    compile_s: dict[str, float] = {}
    if args.only != "inverse":
        variants |= {
            "forward: autograd (nested grad)": make_step(loss_autograd, fast=False),
            "forward: forward Laplacian, row-major": make_step(loss_forward_laplacian,
                                                               fused=False),
            "forward: forward Laplacian, fused": make_step(loss_forward_laplacian),
        }
    if args.only != "forward":
        variants |= {
            "inverse: DeepXDE-style (nested grad)": make_inverse_step(loss_deepxde_inverse,
                                                                     fast=False),
            "inverse: autograd (nested grad)": make_inverse_step(loss_autograd_inverse,
                                                                fast=False),
            "inverse: gbm Trainer, row-major": make_trainer(False, fused=False).loss._adam_step,
            "inverse: gbm Trainer, fused": make_trainer(False).loss._adam_step,
        }
    if not args.no_compile:
        todo = []
        if args.only != "inverse":
            todo += [("forward: forward Laplacian, row-major + compile", lambda: make_step(
                torch.compile(loss_forward_laplacian, dynamic=False), fused=False)),
                ("forward: forward Laplacian, fused + compile", lambda: make_step(
                    torch.compile(loss_forward_laplacian, dynamic=False)))]
        if args.only != "forward":
            todo += [("inverse: gbm Trainer, row-major + compile",
                      lambda: make_trainer(True, fused=False).loss._adam_step),
                     ("inverse: gbm Trainer, fused + compile",
                      lambda: make_trainer(True).loss._adam_step)]
        for name, factory in todo:
            try:
                torch._dynamo.reset()
                step = factory()
                t0 = time.perf_counter()
                step()
                sync()
                compile_s[name] = time.perf_counter() - t0
                variants[name] = step
            except Exception as exc:  # torch.compile is optional: report and go on
                print(f"{name}: torch.compile failed: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0]}")
    # round-robin so that load changes on a shared machine hit every variant alike
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.warmup):
        for step in variants.values():
            step()  # type: ignore[operator]
    sync()
    for _ in range(args.epochs):
        for name, step in variants.items():
            t0 = time.perf_counter()
            step()  # type: ignore[operator]
            sync()
            times[name].append((time.perf_counter() - t0) * 1e3)
    results = {name: statistics.median(ms) for name, ms in times.items()}
    for name, v in results.items():
        extra = f" (compile {compile_s[name]:.1f} s)" if name in compile_s else ""
        print(f"{name:42s} {v:8.1f} ms/epoch (median of {args.epochs}, min "
              f"{min(times[name]):.1f}){extra}")
    for kind, bases in (("forward", ["autograd (nested grad)"]),
                        ("inverse", ["DeepXDE-style (nested grad)", "autograd (nested grad)"])):
        for base in bases:
            key = f"{kind}: {base}"
            if key not in results:
                continue
            for name, v in results.items():
                if name.startswith(kind) and "nested grad" not in name:
                    print(f"{kind}: speed-up of {name[len(kind) + 2:]} vs {base}: "
                          f"{results[key] / v:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
