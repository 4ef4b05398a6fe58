"""The matrix products of one PINN epoch against this CPU's sgemm rate, in the same run.

The fused inverse epoch of ``benches/bench_pinn_epoch.py`` (20,000 collocation points with
R = 5 carried rows, 20,000 observations, 3x100 tanh, 2D + t, float32) does ~14.4 GFLOP of
products, nearly all of them one of three shapes (:mod:`gbm.pinn.kernels`, feature-major):

* forward ``Z = W X``: (100 x 100) times (100 x R n), and the backward's ``W^T Z̄`` (same shape);
* weight gradient ``Z̄ X^T``: (100 x R n) times (R n x 100);
* the output layer: (1 x 100) times (100 x R n) (a matrix-vector product, memory bound).

This script times each shape through gbm's oneDNN ops (``gbm.pinn.kernels.matmul`` and
``linear``), the forward shape also cycling through several input matrices (so the input is not
cache-resident, as in an epoch), and a large square sgemm (2000^3) as the CPU's attainable rate.
From the rates it prints the epoch's product time at each rate: a floor for the epoch, before any
elementwise work. Usage::

    python benches/bench_pinn_products.py [--threads 2] [--points 20000] [--repeat 10]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from gbm.pinn import kernels


def _ms(fn, repeat: int) -> float:
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--points", type=int, default=20000, help="collocation points n")
    p.add_argument("--width", type=int, default=100)
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    kept = kernels.keep_heap()
    gen = torch.Generator().manual_seed(0)
    h, n, r = args.width, args.points, 5
    cols = r * n
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN ops: "
          f"{kernels.use_dnn(torch.zeros(1))}, glibc heap kept: {kept}; H {h}, R n {cols}")

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    w, x, g = rand(h, h), rand(h, cols), rand(h, cols)
    xs = [rand(h, cols) for _ in range(3)]
    a, b = rand(2000, 2000), rand(2000, 2000)
    cycle = itertools.cycle(xs)
    rows = [
        ("sgemm 2000 x 2000 x 2000", 2 * 2000**3, lambda: kernels.matmul(a, b)),
        ("forward W X (100 x 100)(100 x R n)", 2 * h * h * cols, lambda: kernels.matmul(w, x)),
        ("forward W X, 3 inputs in turn", 2 * h * h * cols,
         lambda: kernels.matmul(w, next(cycle))),
        ("weight gradient Z X^T (100 x R n)(R n x 100)", 2 * h * h * cols,
         lambda: kernels.linear(g, x)),
        ("output layer (1 x 100)(100 x R n)", 2 * h * cols,
         lambda: kernels.matmul(w[:1], x)),
    ]
    rate: dict[str, float] = {}
    for name, flop, fn in rows:
        ms = _ms(fn, args.repeat)
        rate[name] = flop / ms / 1e6
        print(f"{name:48s} {ms:8.3f} ms  {rate[name]:6.0f} GFLOP/s")
    # the epoch's products: forward and backward per carried-row layer (2 hidden-to-hidden
    # layers: forward, input adjoint, weight gradient each), the value-only data pass (R = 1,
    # same three products), first layer and output layer neglected
    gflop = 2 * 3 * 2 * h * h * (cols + n) / 1e9
    print(f"epoch products (hidden-to-hidden layers, collocation + observations): {gflop:.1f} "
          f"GFLOP")
    # two thirds of it forward-shaped (W X and W^T Z̄), one third weight gradients
    fwd = rate["forward W X, 3 inputs in turn"]
    wg = rate["weight gradient Z X^T (100 x R n)(R n x 100)"]
    peak = rate["sgemm 2000 x 2000 x 2000"]
    print(f"product time per epoch at these shapes' rates: "
          f"{gflop * (2 / 3 / fwd + 1 / 3 / wg) * 1e3:.1f} ms (at the square sgemm rate: "
          f"{gflop / peak * 1e3:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
