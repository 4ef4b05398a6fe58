"""Cohort throughput (patients/hour) of ``gbm cohort``: local process pool and Ray's local cluster,
1 and 2 workers, on one synthetic cohort, in one run.

The cohort: ``--patients`` synthetic patients of ``gbm synth --cohort`` on the ICBM152 atlas
block-averaged to ``--downsample`` mm (default 2 mm: each fit ~10 s, far below a 1 mm fit's 1-2
min), one scan each with a recurrence; every configuration fits the same patients with the same
settings (``FitConfig(coarse_mm=4)``, default solve budgets) into its own output folder. Threads
per patient = cores // workers (``gbm.jobs.cohort.engines``), so 1 worker x all cores is the
baseline the others are compared with (ratio = its wall time / theirs).

Per configuration: wall time of the whole ``gbm.jobs.cohort.run`` (Ray: including starting
and stopping the local cluster), the engine phase alone (``totals.wall_seconds``), patients/hour of
each, median wall time of one fit, and the cores other processes kept busy meanwhile (a loaded
machine makes the figures meaningless). Prints the machine and a Markdown block.

About 6-8 minutes on 2 cores with the defaults.

Usage: python benches/bench_cohort.py [--patients 10] [--downsample 2] [--engines local,ray]
       [--workers 1,2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_fd import OthersBusy, machine, wait_idle
from gbm.jobs import cohort
from gbm.jobs.fit import FitConfig
from gbm.jobs.synth import SynthConfig, synth_cohort


def one(src: Path, out: Path, engine: str, workers: int, cfg: FitConfig) -> dict:
    with OthersBusy() as busy:
        t0 = time.perf_counter()
        s = cohort.run(src, out, engine=engine, workers=workers, fit_config=cfg,
                       progress=False)
        wall = time.perf_counter() - t0
    rows = s["rows"]
    fits = [r["wall_seconds"] for r in rows if r["status"] == "ok"]
    n = s["totals"]["fitted_this_run"]
    return {"engine": engine, "workers": workers, "threads": s["threads_per_patient"],
            "ok": s["totals"]["ok"], "failed": s["totals"]["failed"], "wall": wall,
            "engine_wall": s["totals"]["wall_seconds"], "per_hour": n / wall * 3600,
            "engine_per_hour": s["totals"]["patients_per_hour"] or 0.0,
            "median_fit": statistics.median(fits) if fits else float("nan"),
            "others_busy": busy.cores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=10)
    ap.add_argument("--downsample", type=int, default=2)
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--keep", default=None, help="keep the cohort and outputs in this folder")
    a = ap.parse_args()
    engines = [e for e in a.engines.split(",") if e]
    workers = [int(w) for w in a.workers.split(",") if w]
    m = machine()
    print("machine:", m)
    cfg = FitConfig(coarse_mm=4.0)
    with tempfile.TemporaryDirectory() as tmpd:
        root = Path(a.keep) if a.keep else Path(tmpd)
        src = root / "cohort"
        t0 = time.perf_counter()
        synth_cohort(SynthConfig(downsample=a.downsample, age_days=500), a.patients, src,
                     force=True)
        print(f"synthetic cohort: {a.patients} patients, {a.downsample} mm, "
              f"{time.perf_counter() - t0:.0f} s")
        results = []
        for engine in engines:
            for w in workers:
                wait_idle(60)
                r = one(src, root / f"out-{engine}-{w}", engine, w, cfg)
                results.append(r)
                print(f"{engine} x {w}: {r['wall']:.1f} s, {r['per_hour']:.0f} patients/hour "
                      f"({r['ok']} ok, {r['failed']} failed)", flush=True)
    base = results[0]["wall"]
    print()
    print(f"### Cohort throughput (`benches/bench_cohort.py --patients {a.patients} "
          f"--downsample {a.downsample}`, {time.strftime('%Y-%m-%d')})")
    print()
    print(f"{m.get('cpu', m)}; {a.patients} synthetic patients on the {a.downsample} mm atlas, "
          "one scan each, `FitConfig(coarse_mm=4)` (default solve budgets); threads per patient "
          "= cores // workers. Wall = the whole `gbm.jobs.cohort.run` (Ray: with starting the local "
          "cluster); engine = the fitting phase only.")
    print()
    print("| engine | workers x threads | ok | wall [s] | patients/hour | engine phase [s] | "
          "patients/hour (engine) | median fit [s] | speed-up vs first row | others busy "
          "[cores] |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['engine']} | {r['workers']} x {r['threads']} | {r['ok']}/{a.patients} | "
              f"{r['wall']:.1f} | {r['per_hour']:.0f} | {r['engine_wall']:.1f} | "
              f"{r['engine_per_hour']:.0f} | {r['median_fit']:.1f} | {base / r['wall']:.2f}x | "
              f"{r['others_busy']:.2f} |")


if __name__ == "__main__":
    main()
