"""Patient fit on the synthetic atlas patient: gbm's two-stage fit vs the peers' way, one run.

Usage::

    python benches/bench_patient.py --out bench-patient [--peer-solves 1000] [--skip ...]

Parts (each printed as a markdown table row and saved in <out>/bench.json):

* ``one``: `gbm synth` default patient (ICBM152 1 mm, origin (28, 18, 27) mm, Dw 0.13, rho 0.025,
  age 400 d, one scan) fitted by `gbm fit --assume-days 400 --forecast 150` with the defaults.
* ``two``: the same tumour with a second scan 90 days later, `gbm fit --forecast 150`.
* ``unc``: ``one`` with ``--uncertainty`` (default sampler settings).
* ``peer``: the reference approach done the peers' way, on the same one-scan segmentation: CMA-ES
  (``cma``, population 9 as the CMA-ES tool runs it) directly on full-resolution solves of the
  whole brain box, same unknowns and bounds, same misfit, until it reaches the Dice of gbm's fit
  or its solve budget (``--peer-solves``, the tool's ~1000 by default).
* ``mismatch``: a patient the fit's model does not match: made with Dw/Dg = 5 (the fit assumes
  10), the density blurred by 1.5 mm before thresholding, 15 % label noise on region boundaries and
  a 9x finer time step.
* ``calib``: coverage of the 90 % intervals on ``--calib`` small synthetic patients (64^3 ball
  brain, random origins and parameters, one scan, assumed true age).

Speed figures are wall-clock seconds on this machine; compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return f"{cpu}, {os.cpu_count()} cores"


def rss_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit(patient: Path, out: Path, **kw: object) -> dict:
    from gbm.jobs.fit import FitConfig, run_fit

    return run_fit(FitConfig(patient=str(patient), **kw), out, force=True,
                   printer=lambda m: print("   ", m, flush=True))


def errors(res: dict, truth: dict) -> dict:
    e = res["estimates"]
    out = {"origin_err_mm": math.dist(e["origin_world_mm"], truth["origin_world_mm"]),
           "lambda_err_pct": 100 * (e["lambda_mm"] / truth["lambda_mm"] - 1),
           "rhoT_err_pct": 100 * (e["rho_T"] / truth["rho_T"] - 1)}
    if e["dw"] is not None:
        out["dw_err_pct"] = 100 * (e["dw"] / truth["dw"] - 1)
        out["rho_err_pct"] = 100 * (e["rho"] / truth["rho"] - 1)
    return out


def forecast_dice(fit_dir: Path, patient: Path, day: float) -> float:
    import nibabel as nib
    from gbm.problem.segmentation.model import dice

    u = np.asarray(nib.load(str(fit_dir / f"u_day{day:g}.nii.gz")).dataobj)
    ut = np.asarray(nib.load(str(patient / "truth" / f"u_day{day:g}.nii.gz")).dataobj)
    return dice(u > 0.25, ut > 0.25)


def peer_cma(patient: Path, target_dice: tuple[float, float], budget: int) -> dict:
    """CMA-ES on full-resolution whole-box solves (the peers' way), same unknowns/misfit."""
    import cma
    from gbm.inference.segmentation_fit import Evaluator
    from gbm.problem.segmentation.levels import box_regions, make_level
    from gbm.problem.segmentation.levels import start_and_box
    from gbm.jobs.fit import FitConfig
    from gbm.model.geometry import DEFAULT_EPSILON_MM
    from gbm.problem.segmentation.patient import load_patient

    cfg = FitConfig(patient=str(patient))
    s = cfg.fit_settings()
    pd = load_patient(patient_dir=str(patient))
    g = pd.geometry()
    g = g.with_phase_field(epsilon=DEFAULT_EPSILON_MM * min(g.spacing))
    regs = [box_regions(g, sc.regions) for sc in pd.scans]
    whole = make_level("full", g, regs, (0, 0, 0), g.shape, cfg.ratio)     # no sub-box, no coarse
    unk = start_and_box(whole, g, regs, list(pd.days_since_first), s)
    log: list[dict] = []
    t0 = time.perf_counter()
    ev = Evaluator(whole, whole, unk, s, log, "peer", t0, None)
    es = cma.CMAEvolutionStrategy(unk.to_unit(unk.x0).tolist(), 0.25,
                                  {"bounds": [0, 1], "popsize": 9, "seed": 1, "verbose": -9,
                                   "maxfevals": budget})
    reached = None
    while not es.stop() and reached is None:
        zs = es.ask()
        es.tell(zs, [ev.misfit(unk.from_unit(np.asarray(z))) for z in zs])
        for r in log:
            if (reached is None and r["dice_core"] >= target_dice[0]
                    and r["dice_whole"] >= target_dice[1]):
                reached = r
    best = min(log, key=lambda r: r["misfit"])
    return {"solves": len(log), "seconds": time.perf_counter() - t0,
            "seconds_per_solve": (time.perf_counter() - t0) / len(log),
            "reached_target": reached is not None,
            "solves_to_target": None if reached is None else reached["solve"] + 1,
            "seconds_to_target": None if reached is None else reached["seconds"],
            "best_dice_core": best["dice_core"], "best_dice_whole": best["dice_whole"],
            "best_lambda_mm": best["lambda_mm"], "best_rho_t0": best["rho_t0"]}


def calibration(out: Path, n: int) -> dict:
    """Coverage of the 90 % intervals of lambda and rho*T on n small synthetic patients."""
    import nibabel as nib
    from gbm.jobs.synth import SynthConfig, synth

    N = 64
    c = (N - 1) / 2
    r = np.sqrt(((np.indices((N, N, N)) - c) ** 2).sum(axis=0))
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = -c
    out.mkdir(parents=True, exist_ok=True)
    for name, a in (("wm", r <= 24), ("gm", (r > 24) & (r <= 28))):
        nib.save(nib.Nifti1Image(a.astype(np.float32), aff), str(out / f"{name}.nii.gz"))
    rng = np.random.default_rng(7)
    hits = {"lambda_mm": 0, "rho_T": 0}
    rows = []
    for i in range(n):
        dw = 0.13 * math.exp(rng.uniform(-0.4, 0.4))
        rho = 0.025 * math.exp(rng.uniform(-0.3, 0.3))
        age = 8.5 / rho * math.exp(rng.uniform(-0.1, 0.1))
        origin = tuple(float(v) for v in rng.uniform(-4, 4, size=3))
        pdir = out / f"p{i}"
        t = synth(SynthConfig(wm=str(out / "wm.nii.gz"), gm=str(out / "gm.nii.gz"),
                              origin_mm=origin, dw=dw, rho=rho, age_days=age, seed=i,
                              label_noise=0.1), pdir, force=True)
        res = fit(pdir, out / f"f{i}", assume_days=age, uncertainty=True)
        unc = res["uncertainty"]
        row = {"i": i, "lambda_true": t["lambda_mm"], "rhoT_true": t["rho_T"],
               "lambda_ci90": unc["lambda_mm"]["ci90"], "rhoT_ci90": unc["rho_t0"]["ci90"],
               "lambda_fit": res["estimates"]["lambda_mm"], "rhoT_fit": res["estimates"]["rho_T"]}
        hits["lambda_mm"] += unc["lambda_mm"]["ci90"][0] <= t["lambda_mm"] <= \
            unc["lambda_mm"]["ci90"][1]
        hits["rho_T"] += unc["rho_t0"]["ci90"][0] <= t["rho_T"] <= unc["rho_t0"]["ci90"][1]
        rows.append(row)
        print("   ", row, flush=True)
    return {"patients": n, "coverage": {k: v / n for k, v in hits.items()}, "rows": rows}


def run_part(part: str, out: Path, a: argparse.Namespace) -> dict:
    """One part, in this process (its peak RSS is this part's)."""
    p1, p2 = out / "patient1", out / "patient2"
    t1 = json.loads((p1 / "truth.json").read_text())
    t2 = json.loads((p2 / "truth.json").read_text())
    t = time.perf_counter()
    if part == "one":
        r = fit(p1, out / "fit1", assume_days=400.0, forecast=(150.0,))
        return {"wall": time.perf_counter() - t, "seconds": r["seconds"],
                "solves": r["solves"], "dice": r["scans"], **errors(r, t1),
                "forecast_dice_150": forecast_dice(out / "fit1", p1, 150.0),
                "plans": {k: r["plans"].get(k) for k in (
                    "recurrence_coverage_standard", "recurrence_coverage_model",
                    "recurrence_coverage_standard_all", "recurrence_coverage_model_all",
                    "volume_standard_ml")},
                "rss_peak_mb": rss_peak_mb()}
    if part == "two":
        r = fit(p2, out / "fit2", forecast=(150.0,))
        return {"wall": time.perf_counter() - t, "seconds": r["seconds"],
                "solves": r["solves"], "dice": r["scans"], **errors(r, t2),
                "age_fit": r["estimates"]["age_days_at_first_scan"],
                "forecast_dice_150": forecast_dice(out / "fit2", p2, 240.0),
                "plans": {k: r["plans"].get(k) for k in (
                    "recurrence_coverage_standard", "recurrence_coverage_model",
                    "recurrence_coverage_standard_all", "recurrence_coverage_model_all")},
                "rss_peak_mb": rss_peak_mb()}
    if part == "peer":
        one = json.loads((out / "part_one.json").read_text())
        d = one["dice"][0]
        return dict(peer_cma(p1, (d["dice_core"], d["dice_whole"]), a.peer_solves),
                    rss_peak_mb=rss_peak_mb())
    if part == "unc":
        r = fit(p1, out / "fit1u", assume_days=400.0, uncertainty=True)
        return {"wall": time.perf_counter() - t, "seconds": r["seconds"],
                "solves": r["solves"], "uncertainty": r["uncertainty"],
                "truth": {"lambda_mm": t1["lambda_mm"], "rho_T": t1["rho_T"],
                          "origin_world_mm": t1["origin_world_mm"]},
                "rss_peak_mb": rss_peak_mb()}
    if part == "mismatch":
        p3 = out / "patient3"
        if not (p3 / "truth.json").exists():
            from gbm.jobs.synth import SynthConfig, synth

            synth(SynthConfig(ratio=5.0, blur_mm=1.5, label_noise=0.15, safety=0.1, seed=3),
                  p3, force=True)
        t3 = json.loads((p3 / "truth.json").read_text())
        r = fit(p3, out / "fit3", assume_days=400.0, forecast=(150.0,))
        return {"wall": time.perf_counter() - t, "seconds": r["seconds"],
                "solves": r["solves"], "dice": r["scans"], **errors(r, t3),
                "forecast_dice_150": forecast_dice(out / "fit3", p3, 150.0),
                "synth": "Dw/Dg 5 (fit assumes 10), u blurred 1.5 mm before thresholding, "
                         "label noise 0.15 on boundaries, time step safety 0.1",
                "rss_peak_mb": rss_peak_mb()}
    if part == "calib":
        return calibration(out / "calib", a.calib)
    raise SystemExit(f"unknown part {part}")


PARTS = ("one", "two", "peer", "unc", "mismatch", "calib")


def main() -> int:
    import subprocess

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-patient")
    ap.add_argument("--peer-solves", type=int, default=1000)
    ap.add_argument("--calib", type=int, default=8)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip")
    ap.add_argument("--part", default=None, help=argparse.SUPPRESS)   # internal: one part
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.part:
        res = run_part(a.part, out, a)
        (out / f"part_{a.part}.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
        print(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=1, default=float),
              flush=True)
        return 0
    from gbm.jobs.synth import SynthConfig, synth

    skip = set(filter(None, a.skip.split(",")))
    rep: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC"),
                 "python": sys.version.split()[0], "load_before": os.getloadavg()}
    print(f"machine: {rep['machine']}, load {rep['load_before']}", flush=True)
    if not (out / "patient1" / "truth.json").exists():
        synth(SynthConfig(), out / "patient1", force=True)
    if not (out / "patient2" / "truth.json").exists():
        synth(SynthConfig(scan_days=(0.0, 90.0)), out / "patient2", force=True)
    for part in PARTS:
        if part in skip:                       # keep a part measured earlier in this folder
            if (out / f"part_{part}.json").exists():
                rep[part] = json.loads((out / f"part_{part}.json").read_text())
            continue
        print(f"== {part}", flush=True)
        cmd = [sys.executable, __file__, "--out", str(out), "--part", part,
               "--peer-solves", str(a.peer_solves), "--calib", str(a.calib)]
        subprocess.run(cmd, check=True)
        rep[part] = json.loads((out / f"part_{part}.json").read_text())
    rep["load_after"] = os.getloadavg()
    (out / "bench.json").write_text(json.dumps(rep, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
