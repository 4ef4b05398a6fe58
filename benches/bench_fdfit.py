"""Time the forward map of FD-based inference and whole FD-based fits, in one run.

Forward map (parameters -> u at every observation) on the paper's two problems, the same
observations as ``gbm infer``/``gbm fit-fd`` (disk: 20,000, T = 300 d; atlas slice 99: 26,830,
T = 150 d), at the fit's fixed time step (0.9 x the bound at Dw = 1 mm^2/day, rho = 0.2/day):

* ``observe``: one solve with ``FisherKpp.observe`` (gbm's operator: every observation read off
  the running solver, its partial step in time; rust/observe.rs);
* baseline ``snapshots``: the usual way, a solve that stores daily snapshots, then u at the
  points by trilinear/bilinear interpolation and linear interpolation in time between days
  (``gbm.problem.density.observations.GridReference``, what the synthetic data of gbm are made with);
  it is also less exact (the daily linear interpolation in time).

Then the whole fit of (Dw, rho) and of (Dw, rho, seed) from the paper's guesses (0.1, 0.01),
best of ``--repeats``. Prints the machine and a Markdown table; ``--json`` writes the figures.

Usage: python benches/bench_fdfit.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from bench_fd import OthersBusy, machine, wait_idle
from gbm.inference.density_fit import FdFitConfig, FdModel, fit_problem
from gbm.pinn.config import InferConfig
from gbm.problem.density.build import build_problem
from gbm.problem.density.observations import GridReference


def best_of(f, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def forward_map(problem, repeats: int) -> dict:
    from gbm.model.simulation import simulate

    g, obs = problem.geometry, problem.observations
    dt = FdModel.time_step(g, 1.0, 0.2, problem.ratio)
    model = FdModel(g, obs.points, obs.t, dt, problem.ratio)
    seed = problem.domain.center
    t_obs, u_obs = best_of(lambda: model.predict(0.13, 0.025, seed), repeats)

    def snapshots() -> np.ndarray:
        days = np.arange(0.0, np.ceil(obs.t.max()) + 1.0)
        r = simulate(g, 0.13, 0.025, days, seed_local=seed, ratio=problem.ratio, dt=dt)
        return GridReference(r.times, r.u, g.spacing)(obs.points, obs.t)

    t_snap, u_snap = best_of(snapshots, repeats)

    def advance_only() -> None:
        s = model.solver(0.13, 0.025, seed)
        s.advance(s.steps_until(float(obs.t.max())))

    t_adv, _ = best_of(advance_only, repeats)
    return {"n_obs": len(obs), "dt": dt, "steps": int(np.ceil(obs.t.max() / dt)),
            "observe_s": t_obs, "snapshots_s": t_snap, "advance_only_s": t_adv,
            "ratio": t_snap / t_obs,
            "max_abs_diff": float(np.abs(np.asarray(u_obs) - u_snap).max())}


def fits(problem, name: str, repeats: int) -> dict:
    out = {}
    for fit_seed in (False, True):
        cfg = FdFitConfig(problem="disk" if name == "disk" else "atlas", fit_seed=fit_seed)
        t, (res, _m) = best_of(lambda c=cfg: fit_problem(problem, c), repeats)
        out["dw_rho_seed" if fit_seed else "dw_rho"] = {
            "seconds": t, "solves": res.solves, "dw_err_pct": 100 * (res.dw / 0.13 - 1),
            "rho_err_pct": 100 * (res.rho / 0.025 - 1),
            "seed_err_mm": float(np.linalg.norm(res.seed_local - problem.domain.center))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--wait-idle", type=float, default=0.0,
                    help="wait up to this many seconds for other processes to go idle")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.wait_idle > 0:
        wait_idle(a.wait_idle)
    m = machine()
    print(f"machine: {m['cpu']}, {m['cores']} cores, rayon {m['rayon_threads']} threads, "
          f"{m['date']}")
    res: dict = {"machine": m}
    for name in ("disk", "slice"):
        problem = build_problem(InferConfig(problem="disk" if name == "disk" else "atlas"))
        with OthersBusy() as busy:
            res[name] = {"forward": forward_map(problem, a.repeats),
                         "fits": fits(problem, name, a.repeats)}
        res[name]["other_cores_busy"] = busy.cores
    print("\n| problem | observations | steps (dt) | observe | baseline: daily snapshots + "
          "interpolation | ratio | max abs diff | advance alone |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("disk", "slice"):
        f = res[name]["forward"]
        print(f"| {name} | {f['n_obs']:,} | {f['steps']} ({f['dt']:.4f} d) | "
              f"{1e3 * f['observe_s']:.1f} ms | {1e3 * f['snapshots_s']:.1f} ms | "
              f"{f['ratio']:.1f}x | {f['max_abs_diff']:.1e} | {1e3 * f['advance_only_s']:.1f} ms |")
    print("\n| problem | fit | wall (best of %d) | solves | Dw %% | rho %% | seed error |"
          % a.repeats)
    print("|---|---|---|---|---|---|---|")
    for name in ("disk", "slice"):
        for key, r in res[name]["fits"].items():
            print(f"| {name} | {key.replace('_', ', ')} | {r['seconds']:.2f} s | {r['solves']} | "
                  f"{r['dw_err_pct']:+.3f} | {r['rho_err_pct']:+.3f} | {r['seed_err_mm']:.4f} mm |")
    print(f"\nother processes: {res['disk']['other_cores_busy']:.2f} / "
          f"{res['slice']['other_cores_busy']:.2f} cores busy")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
