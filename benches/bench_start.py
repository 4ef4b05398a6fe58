"""How gbm fit's estimates depend on the tumour's start and on the model variants of another solver
(issue 18, "the unknown start"): one table, one row per synthetic patient.

Each patient is made by ``gbm synth`` on the ICBM152 atlas (``--downsample`` mm, default 2) at
the default origin with Dw 0.13 mm^2/day, rho 0.025 /day (lambda 2.28 mm), age ``--age-days`` at the
first scan and a second scan ``--span`` days later, from one start / model variant (see
``VARIANTS``: Gaussian starts of several peaks and e-folding radii R, a cutoff, the closed-below
rule, arithmetic face means, and all of them together as the peer solver of the issue makes its
patients). Each patient is then fitted twice with ``gbm fit`` (as a subprocess, as a user runs it):

* one scan (the first; ``--assume-days`` = the true age): lambda, rho*T, origin error, Dice;
* two scans (``--patient``, both dated): Dw, rho, lambda, age at the first scan, Dice.

Errors are relative to the truth (``truth.json``), in %. Fit settings: gbm fit's defaults except
``--coarse-mm`` (default 4 here: on a 2 mm grid the default 2 mm coarse level is the input grid
itself and the global stage would cost ~2 min per fit) and ``--fit-args`` passed through (e.g.
``--start first-scan``). Patients are reused from ``--out`` when their truth.json matches.

Prints the machine (``lscpu`` model name), the date, the load (``uptime``) before and after, and
writes ``table.md`` and ``rows.json`` into ``--out``.

Usage: python benches/bench_start.py [--out DIR] [--downsample 2] [--variants a,b,...]
       [--coarse-mm 4] [--fit-args "--start first-scan"] [--tag NAME] [--skip-one] [--skip-two]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: The start and model variants: name -> gbm synth flags. R = e-folding radius of the Gaussian.
VARIANTS: dict[str, list[str]] = {
    "paper": [],
    "peak0.1-R2": ["--start-radius-mm", "2.0"],
    "peak0.1-R4.47": ["--start-radius-mm", "4.472"],
    "peak0.5-R3.16": ["--start-peak", "0.5"],
    "peak0.5-R4.47-cut0.1": ["--start-peak", "0.5", "--start-radius-mm", "4.472",
                             "--start-cutoff", "0.1"],
    "peak1-R6": ["--start-peak", "1.0", "--start-radius-mm", "6.0"],
    "closed0.1": ["--closed-below", "0.1"],
    "arithmetic": ["--face-mean", "arithmetic"],
    "closed0.1+arith": ["--closed-below", "0.1", "--face-mean", "arithmetic"],
    "peer (all)": ["--start-peak", "0.5", "--start-radius-mm", "4.472", "--start-cutoff", "0.1",
                   "--closed-below", "0.1", "--face-mean", "arithmetic"],
}


def gbm(*args: str, log: Path) -> None:
    """Run ``python -m gbm ARGS`` (output to ``log``); raise on failure."""
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-m", "gbm", *args], stdout=f,
                           stderr=subprocess.STDOUT, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"gbm {' '.join(args)} failed (exit {r.returncode}); see {log}")


def make_patient(folder: Path, flags: list[str], a: argparse.Namespace) -> dict[str, Any]:
    """The variant's patient (reused when its truth.json has the same settings)."""
    args = ["synth", "--downsample", str(a.downsample), "--age-days", str(a.age_days),
            "--scan-days", f"0,{a.span:g}", "--no-recurrence", *flags]
    stamp = folder / "synth_args.json"
    if (folder / "truth.json").exists() and stamp.exists() \
            and json.loads(stamp.read_text()) == args:
        return json.loads((folder / "truth.json").read_text())
    gbm(*args, "--out", str(folder), "--force", log=folder.parent / "synth.log")
    stamp.write_text(json.dumps(args))
    return json.loads((folder / "truth.json").read_text())


def fit(patient: Path, out: Path, two: bool, a: argparse.Namespace, age: float
        ) -> tuple[dict[str, Any], float]:
    """One gbm fit; its results.json and wall time."""
    ts = patient / "tissue_segmentation"
    common = ["--coarse-mm", str(a.coarse_mm), *shlex.split(a.fit_args), "--out", str(out),
              "--force"]
    if two:
        args = ["fit", "--patient", str(patient), *common]
    else:
        args = ["fit", "--wm", str(ts / "wm_pbmap.nii.gz"), "--gm", str(ts / "gm_pbmap.nii.gz"),
                "--csf", str(ts / "csf_pbmap.nii.gz"), "--scan",
                f"{patient / 'tumor_segmentation' / 'tumor_seg.nii.gz'}@0",
                "--assume-days", f"{age:g}", *common]
    t0 = time.perf_counter()
    gbm(*args, log=out.parent / f"{out.name}.log")
    return json.loads((out / "results.json").read_text()), time.perf_counter() - t0


def pct(est: float, true: float) -> float:
    return 100.0 * (est / true - 1.0)


def row(name: str, truth: dict[str, Any], one: tuple | None, two: tuple | None
        ) -> dict[str, Any]:
    r: dict[str, Any] = {"variant": name, "whole_ml_day0": truth["snapshots"][0]["whole_ml"],
                         "start": truth.get("start", {}), "model": truth.get("model", {})}
    if one is not None:
        res, wall = one
        e = res["estimates"]
        r["one"] = {"lambda_pct": pct(e["lambda_mm"], truth["lambda_mm"]),
                    "rhoT_pct": pct(e["rho_T"], truth["rho_T"]),
                    "origin_mm": math.dist(e["origin_world_mm"], truth["origin_world_mm"]),
                    "dice": [(s["dice_core"], s["dice_whole"]) for s in res["scans"]],
                    "wall_s": wall}
    if two is not None:
        res, wall = two
        e = res["estimates"]
        r["two"] = {"dw_pct": pct(e["dw"], truth["dw"]), "rho_pct": pct(e["rho"], truth["rho"]),
                    "lambda_pct": pct(e["lambda_mm"], truth["lambda_mm"]),
                    "age_pct": pct(e["age_days_at_first_scan"], truth["age_days"]),
                    "origin_mm": math.dist(e["origin_world_mm"], truth["origin_world_mm"]),
                    "dice": [(s["dice_core"], s["dice_whole"]) for s in res["scans"]],
                    "wall_s": wall}
    return r


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| variant | whole ml (day 0) | 1 scan: lambda | rho*T | origin mm | Dice core/whole "
            "| 2 scans: Dw | rho | lambda | age | Dice core/whole (day 0; day 150) | wall 1 / 2 |")
    lines = [head, "|" + "---|" * 12]

    def f(v: float) -> str:
        return f"{v:+.1f} %"

    for r in rows:
        o, t = r.get("one"), r.get("two")
        c1 = ([f(o["lambda_pct"]), f(o["rhoT_pct"]), f"{o['origin_mm']:.2f}",
               "{:.3f} / {:.3f}".format(*o["dice"][0])] if o else ["–"] * 4)
        c2 = ([f(t["dw_pct"]), f(t["rho_pct"]), f(t["lambda_pct"]), f(t["age_pct"]),
               "; ".join(f"{c:.3f} / {w:.3f}" for c, w in t["dice"])] if t else ["–"] * 5)
        wall = f"{o['wall_s'] if o else 0:.0f} / {t['wall_s'] if t else 0:.0f} s"
        lines.append(f"| {r['variant']} | {r['whole_ml_day0']:.1f} | " + " | ".join(c1 + c2)
                     + f" | {wall} |")
    return "\n".join(lines)


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                      if ln.startswith("Model name")), "?")
    except OSError:
        model = "?"
    return model


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True,
                          check=False).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/bench_start")
    ap.add_argument("--downsample", type=int, default=2)
    ap.add_argument("--age-days", type=float, default=400.0)
    ap.add_argument("--span", type=float, default=150.0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--coarse-mm", type=float, default=4.0)
    ap.add_argument("--fit-args", default="", help="extra gbm fit flags, e.g. '--start first-scan'")
    ap.add_argument("--tag", default="default", help="name of this fit setting (folder names)")
    ap.add_argument("--skip-one", action="store_true")
    ap.add_argument("--skip-two", action="store_true")
    a = ap.parse_args()
    names = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; date {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"load before: {uptime()}", flush=True)
    print(f"fit: --coarse-mm {a.coarse_mm:g} {a.fit_args}".rstrip(), flush=True)
    rows = []
    for name in names:
        folder = root / name.replace(" ", "_").replace("(", "").replace(")", "")
        folder.mkdir(exist_ok=True)
        truth = make_patient(folder / "patient", VARIANTS[name], a)
        one = None if a.skip_one else fit(folder / "patient", folder / f"fit1-{a.tag}", False,
                                          a, truth["age_days"])
        two = None if a.skip_two else fit(folder / "patient", folder / f"fit2-{a.tag}", True,
                                          a, truth["age_days"])
        rows.append(row(name, truth, one, two))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    (root / f"table-{a.tag}.md").write_text(text + "\n")
    (root / f"rows-{a.tag}.json").write_text(json.dumps(rows, indent=1))
    print(text)
    print(f"load after: {uptime()}")


if __name__ == "__main__":
    main()
