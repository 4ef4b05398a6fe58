"""``python -m gbm bench``: the paper's experiments, PINN vs FD-based inference, one report.

For each domain (the paper's disk, Sec. 3.1, and the embedded atlas slice, Sec. 3.2) and each noise
level, one set of synthetic observations is built and given to both methods: the PINN
(:func:`gbm.pinn.inverse.infer`) and the FD-based least-squares fit
(:mod:`gbm.inference.density_fit`), on the same machine in the same run. The report (``report.md``,
``report.json``, ``figures/``) has the analogues of the paper's Tables 2 and 4 and Figs. 4-8, 10,
11, 13-15, one comparison table per domain, the paper's own cost model next to measured FD times,
and the noise study. The PINN needs the optional extra ``pinn`` (torch); ``methods=("fd",)`` (``gbm
bench --methods fd``) runs the FD parts with the core install alone.

    from gbm.jobs.bench import BenchConfig, run_bench
    report = run_bench(BenchConfig(quick=True), "bench")
"""

from __future__ import annotations

from gbm.jobs.bench.study import BenchConfig, run_bench

__all__ = ["BenchConfig", "run_bench"]
