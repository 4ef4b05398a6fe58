"""Time one PINN training epoch: forward Laplacian vs nested torch.autograd.grad, same run.

One epoch = residual loss on N collocation points (paper Eq. 8, DDM form) + backward + Adam step.
Both variants use the same network (3 x 100 tanh by default, inputs (x, y, t)), the same points and
the same coefficient fields (a disk phase field, phi = 0.5 + 0.5 tanh((R - r)/w), F = phi), so the
ratio isolates the derivative method. Optionally the forward-Laplacian loss is also run under
``torch.compile`` (its compile time is reported separately).

Usage::

    python benches/bench_pinn_epoch.py [--points 20000] [--epochs 30] [--threads N]
        [--dtype float32|float64] [--no-compile] [--device cpu|cuda]

Prints the machine, torch version, thread count and ms/epoch (median) per variant with the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from gbm.pinn.network import Derivatives, PinnNet  # noqa: E402
from gbm.pinn.residual import PointSet, scaled_residual  # noqa: E402


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


def time_variant(step, epochs: int, warmup: int, sync) -> list[float]:
    for _ in range(warmup):
        step()
    sync()
    out = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        step()
        sync()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--points", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--width", type=int, default=100)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    length, horizon = 45.0, 300.0
    a, b = 0.13 * horizon / length**2, 0.025 * horizon
    ps = disk_points(args.points, length, dtype, device)

    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}".rstrip())
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"cpu: {cpu} ({os.cpu_count()} logical cores); device: {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.dtype}, "
          f"{args.points} points, {args.depth}x{args.width} tanh, 2D + t")

    results: dict[str, float] = {}

    def make_step(loss_fn, fast=True):
        net = PinnNet(2, [0.0, 0.0], length, horizon, args.width, args.depth, seed=0, dtype=dtype,
                      fast=fast)
        net.to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net, ps, a, b)
            loss.backward()
            opt.step()
            return loss

        return step

    variants = {
        "autograd (nested grad)": make_step(loss_autograd, fast=False),
        "forward Laplacian (torch mm)": make_step(loss_forward_laplacian, fast=False),
        "forward Laplacian": make_step(loss_forward_laplacian, fast=True),
    }
    compile_s: dict[str, float] = {}
    if not args.no_compile:
        for name, fast in (("forward Laplacian + compile", True),):
            try:
                step = make_step(torch.compile(loss_forward_laplacian, dynamic=False), fast=fast)
                t0 = time.perf_counter()
                step()
                sync()
                compile_s[name] = time.perf_counter() - t0
                variants[name] = step
            except Exception as exc:  # torch.compile is optional: report and go on
                print(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    # round-robin so that load changes on a shared machine hit every variant alike
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.warmup):
        for step in variants.values():
            step()
    sync()
    for _ in range(args.epochs):
        for name, step in variants.items():
            t0 = time.perf_counter()
            step()
            sync()
            times[name].append((time.perf_counter() - t0) * 1e3)
    for name, ms in times.items():
        results[name] = statistics.median(ms)
        extra = f" (compile {compile_s[name]:.1f} s)" if name in compile_s else ""
        print(f"{name:32s} {results[name]:8.1f} ms/epoch (median of {args.epochs}){extra}")

    base = results["autograd (nested grad)"]
    for name, v in results.items():
        if name != "autograd (nested grad)":
            print(f"speed-up vs nested autograd, {name}: {base / v:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
