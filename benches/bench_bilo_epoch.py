"""Cost of one BiLO step against one PINN step on the same patient, in the same run.

    python benches/bench_bilo_epoch.py --patient DIR [--threads 1] [--steps 20] [--device cpu]

Builds the fine level and unknowns of ``gbm fit`` on the patient (as ``--method bilo`` does), then
both loss objects with their default settings (:class:`gbm.pinn.bilo_settings.BiloSettings`,
:class:`gbm.pinn.settings.PinnFitSettings`, no torch.compile) and times, after warm-up:

* PINN: one L-BFGS iteration of the joint phase (:class:`gbm.pinn.patient_loss.PatientLoss`;
  one iteration may evaluate the loss more than once), and one loss + backward evaluation;
* BiLO: one lower step (Adam on mean R^2 + w_grad mean |dR/dtheta|^2 + w_fit mean (u - u_FD)^2),
  one upper step (Adam on the data misfit through du/dtheta), and the FD solve that refreshes
  u_FD after an upper step (:meth:`gbm.pinn.bilo_loss.BiloLoss.refresh_target`).

It also counts the floating-point operations of one evaluation (``torch.utils.flop_counter``:
matrix products, forward and backward) and the torch operators dispatched (each at least one
kernel launch on a GPU), from which it states an expected GPU time per step:
max(FLOPs / sustained rate, operators x launch cost) with a sustained rate of 20 TFLOP/s (fp32,
the small-matrix regime of an H100; peak 67) and 6 us per launch (no CUDA graphs). Prints the
machine and a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from gbm.jobs.fit import steps
from gbm.jobs.fit.config import FitConfig
from gbm.pinn.bilo_loss import build_bilo_loss
from gbm.pinn.bilo_settings import BiloSettings
from gbm.pinn.kernels import keep_heap
from gbm.pinn.patient_loss import build_patient_loss
from gbm.pinn.settings import PinnFitSettings
from gbm.pinn.train import resolve_device, setup_threads

GPU_RATE = 20e12     # sustained fp32 FLOP/s assumed for the estimate
LAUNCH_S = 6e-6      # seconds per kernel launch assumed for the estimate


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                    if ln.startswith("Model name"))
    except (OSError, StopIteration):
        name = platform.processor()
    return name


def timed(fn: Callable[[], object], n: int, device: torch.device) -> float:
    """Median wall seconds of ``fn`` over ``n`` calls (after one warm-up)."""
    fn()
    out = []
    for _ in range(n):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return sorted(out)[len(out) // 2]


def count(fn: Callable[[], object], mlps: list[torch.nn.Module]) -> tuple[float, int]:
    """(FLOPs of matrix products, torch operators dispatched) of one call of ``fn``; the
    counter sees torch's products only, so the PINN's oneDNN custom ops are switched to them
    (``fast`` off) while counting."""
    fast = [m.fast for m in mlps]
    for m in mlps:
        m.fast = False
    with FlopCounterMode(display=False) as fc:
        fn()
    for m, f in zip(mlps, fast):
        m.fast = f
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    ops = sum(1 for e in prof.events() if e.name.startswith("aten::"))
    return float(fc.get_total_flops()), ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patient", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    setup_threads(a.threads)
    dev = resolve_device(a.device)
    if dev.type == "cpu":
        keep_heap()   # as both fits do on CPU
    cfg = FitConfig(patient=a.patient, method="bilo", assume_days=400.0)
    inputs = steps.load_inputs(cfg)
    setup = steps.build_levels(cfg, inputs)
    fine, unk, fs = setup.fine, setup.unknowns, setup.settings

    ps_ = PinnFitSettings(compile=False, warm_iters=0, device=a.device, threads=a.threads)
    pl = build_patient_loss(fine, unk, fs, ps_, dev)
    pl.prepare()
    pl.before_step()
    pts = pl.points

    def pinn_iter() -> None:
        pl.progress.epoch = ps_.check_every - 1     # one iteration before a check: cap 1
        pl.step()

    def pinn_eval() -> None:
        pl.opt.zero_grad()
        pl.loss_terms(pts.xs, pts.ts, pts.phi, pts.F, pts.gradF)[0].backward()

    bs = BiloSettings(pre_iters=0, device=a.device, threads=a.threads)
    bl = build_bilo_loss(fine, unk, fs, bs, dev)
    bl.prepare()

    def refresh() -> None:
        bl.target_theta = None
        bl.refresh_target()

    rows = []
    for name, fn, n in (("PINN: one L-BFGS iteration (joint phase)", pinn_iter, a.steps),
                        ("PINN: one loss + backward", pinn_eval, a.steps),
                        ("BiLO: one lower step (Adam)", bl._lower_step, a.steps),
                        ("BiLO: one upper step (Adam)", bl._upper_step, a.steps),
                        ("BiLO: FD solve refreshing u_FD", refresh, max(3, a.steps // 4))):
        sec = timed(fn, n, dev)
        flops, ops = (0.0, 0) if name.startswith("BiLO: FD") else count(fn, [pl.net.mlp])
        gpu = max(flops / GPU_RATE, ops * LAUNCH_S) if flops else float("nan")
        rows.append((name, sec, flops, ops, gpu))
    print(f"machine: {machine()}; torch {torch.__version__}; {a.threads} thread(s); device "
          f"{dev}; patient {a.patient}: fine box {fine.geom.shape}; PINN {ps_.colloc} "
          f"collocation + {ps_.data_points} data points, width {ps_.width}; BiLO {bs.colloc} "
          f"+ {bs.data_points}, width {bs.width}, {bs.lower_steps} lower steps per upper")
    print("| step | ms | GFLOP (products) | torch ops | expected GPU ms |")
    print("|---|---|---|---|---|")
    for name, sec, flops, ops, gpu in rows:
        print(f"| {name} | {1e3 * sec:.1f} | {flops / 1e9:.2f} | {ops} | {1e3 * gpu:.2f} |")
    lower, upper, fd = rows[2][1], rows[3][1], rows[4][1]
    per = lower + (upper + fd) / bs.lower_steps
    print(f"BiLO per step incl. its share of the upper step and FD solve: {1e3 * per:.1f} ms "
          f"= {per / rows[0][1]:.2f} x a PINN L-BFGS iteration")


if __name__ == "__main__":
    main()
