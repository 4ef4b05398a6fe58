"""Wall time and accuracy of ``gbm fit`` on the synthetic 1 mm atlas patient: this checkout against
a baseline checkout, interleaved in one run (issue 19).

Patients are made once by this checkout's ``gbm synth`` (ICBM152 2009a at ``--downsample``, the
default tumour: origin (28, 18, 27) mm, Dw 0.13, rho 0.025, age 400 d; one scan, and two scans
90 days apart), so both codes fit the same segmentations. Each fit is a separate process
(``python -m gbm fit``; the baseline with ``PYTHONPATH=<baseline>/python``), peak RSS from
``/usr/bin/time``. The new code runs with a phase-field cache folder of its own: the first fit
fills it (``cold``), the others reuse it (``warm``), as a refit or a cohort on one atlas does.

    python benches/bench_fit_speed.py --baseline /path/to/old/checkout --out /tmp/bfs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "one": (["--assume-days", "400", "--forecast", "150"], "one"),
    "two": (["--forecast", "150"], "two"),
    "one+uncertainty": (["--assume-days", "400", "--uncertainty"], "one"),
}


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one process."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env, capture_output=True,
                       text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    rss_kb = float(p.stderr.strip().splitlines()[-1])
    return wall, rss_kb / 1024 / 1024


def _errors(get: dict, truth: dict) -> dict:
    """Errors of the estimate ``get`` (lambda_mm, rho_T, dw, rho, origin_world_mm) against the
    truth (percent; origin in mm)."""
    lam, rt, o = get.get("lambda_mm"), get.get("rho_T"), get.get("origin_world_mm")
    out = {"lambda_err_pct": 100 * (lam / truth["lambda_mm"] - 1) if lam else None,
           "rho_T_err_pct": 100 * (rt / truth["rho_T"] - 1) if rt else None,
           "origin_err_mm": math.dist(o, truth["origin_world_mm"]) if o else None}
    if get.get("dw") and truth["scan_days"][-1] > 0:
        out["dw_err_pct"] = 100 * (get["dw"] / truth["dw"] - 1)
        out["rho_err_pct"] = 100 * (get["rho"] / truth["rho"] - 1)
    return out


def _find(o: object, key: str) -> object:
    if isinstance(o, dict):
        if key in o:
            return o[key]
        for v in o.values():
            r = _find(v, key)
            if r is not None:
                return r
    if isinstance(o, list):
        for v in o:
            r = _find(v, key)
            if r is not None:
                return r
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="checkout of the previous code")
    ap.add_argument("--out", required=True)
    ap.add_argument("--downsample", type=int, default=1)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--codes", default="baseline,new")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parents[1] / "python"
    py = sys.executable
    env_new = dict(os.environ, PYTHONPATH=str(here), GBM_CACHE_DIR=str(out / "cache"))
    env_old = dict(os.environ, PYTHONPATH=str(Path(a.baseline) / "python"))
    patients = {"one": ["0"], "two": ["0,90"]}
    for name, days in patients.items():
        if not (out / name / "truth.json").exists():
            subprocess.run([py, "-m", "gbm", "synth", "--downsample", str(a.downsample),
                            "--scan-days", days[0], "--out", str(out / name), "--force"],
                           env=env_new, check=True, capture_output=True)
    rows = []
    for case in a.cases.split(","):
        flags, patient = CASES[case]
        truth = json.loads((out / patient / "truth.json").read_text())
        for code in a.codes.split(","):
            env = env_old if code == "baseline" else env_new
            cold = code == "new" and not (out / "cache").exists()
            dest = out / f"fit-{case}-{code}"
            cmd = [py, "-m", "gbm", "fit", "--patient", str(out / patient), *flags,
                   "--out", str(dest), "--force"]
            wall, rss = _run(cmd, env)
            res = json.loads((dest / "results.json").read_text())
            row = {"case": case, "code": code + (" (cold cache)" if cold else ""),
                   "wall_s": wall, "peak_rss_gb": rss,
                   "seconds": _find(res, "seconds"), "solves": _find(res, "solves"),
                   "scans": _find(res, "scans"),
                   **_errors({k: _find(res, k) for k in ("lambda_mm", "rho_T", "dw", "rho",
                                                         "origin_world_mm")}, truth)}
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("case", "code", "wall_s", "peak_rss_gb",
                                                  "lambda_err_pct", "rho_T_err_pct",
                                                  "origin_err_mm")}), flush=True)
    meta = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load": os.getloadavg(), "baseline": a.baseline}
    (out / "bench_fit_speed.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                         indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
