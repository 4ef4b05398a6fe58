"""Time the FD solver's time integrators against a baseline build, by grid size and thread count.

Problem: the embedded ICBM152 2009a atlas at 2, 1.5 and 1 mm (1 mm: the box of gbm.load_geometry;
2 mm: the maps block-averaged x2; 1.5 mm: the maps resampled linearly by 2/3), Cahn-Hilliard phase
field (gbm's defaults), Dw 0.13 mm^2/day, Dg = Dw/10, rho 0.025/day, the paper's Gaussian at
gbm.DEFAULT_SEED_WORLD_MM, 300 days.

Cases, run interleaved (round robin, best of ``--repeats``) in one process per thread count
(RAYON_NUM_THREADS), both builds loaded side by side:
  base euler 0.9   the baseline build's default (explicit Euler at 0.9 x the stability bound)
  base euler 0.5   the baseline build at the patient fit's step
  new  euler 0.9   this build's default (must be bit-identical to the baseline's)
  new  strang      this build's ``scheme="strang-rkl2"`` at its default step (rho dt = 0.5)
  new  strang rho dt 1   the same at twice the step (about Euler 0.5's accuracy)
Timed: the solver's construction (coefficients, time step) + the stepping + the state at the
final day (``state(days)``); wall time and the process's CPU time (all threads), the latter less
sensitive to other work on a shared machine. Accuracy: Dice of u > 0.25 and u > 0.7 and the
shift of the equivalent front radius against "base euler 0.9" (today's result, the issue's
reference) and against a reference at a tiny step (``--reference``: Strang-RKL2 at dt 0.5 and
1 d, Richardson-extrapolated).

Usage: python benches/bench_fd_schemes.py --baseline-so OLD/_core.abi3.so [--grids 2,1.5,1]
       [--threads 1,2] [--repeats 3] [--days 300] [--reference] [--json out.json]
The baseline build is any earlier ``gbm/_core.abi3.so`` (e.g. built from the commit before).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

DW, RHO = 0.13, 0.025
CASES = ("base euler 0.9", "base euler 0.5", "new euler 0.9", "new strang", "new strang rho dt 1")


def load_core(path: str, name: str) -> ModuleType:
    """Load a compiled ``_core`` from a file under another package name (side by side)."""
    spec = importlib.util.spec_from_file_location(name + "._core", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def prepare(grid_mm: float, out: Path) -> dict:
    """FD inputs of the atlas at ``grid_mm`` (phase field included), saved to ``out``."""
    import gbm
    from gbm import io
    from gbm.model.coarse import block_average, coarse_affine
    from gbm.model.geometry import from_maps

    if grid_mm == 1.0:
        g = gbm.load_geometry()
    else:
        with io.atlas_path("wm") as pw, io.atlas_path("gm") as pg:
            w, aff = io.load_nifti(pw, "wm")
            gm, _ = io.load_nifti(pg, "gm")
        w, gm = np.clip(w, 0, 1), np.clip(gm, 0, 1)
        if grid_mm == 2.0:
            w, gm, aff = block_average(w, (2, 2, 2)), block_average(gm, (2, 2, 2)), coarse_affine(
                aff, (2, 2, 2))
        else:
            from scipy.ndimage import zoom

            f = 1.0 / grid_mm
            w, gm = np.clip(zoom(w, f, order=1), 0, 1), np.clip(zoom(gm, f, order=1), 0, 1)
            aff = aff.copy()
            aff[:3, :3] *= grid_mm
        g = from_maps(w, gm, aff, margin=5)
    g = g.with_phase_field()
    u0 = g.initial_condition(g.world_to_local(gbm.DEFAULT_SEED_WORLD_MM))
    np.save(out / "u0.npy", u0)
    np.save(out / "D.npy", g.diffusivity(DW))
    np.save(out / "phi.npy", g.phi)
    return {"grid_mm": grid_mm, "shape": list(g.shape), "spacing": list(g.spacing)}


def run_case(core: ModuleType, inputs: tuple, days: float, **kw: object) -> tuple[np.ndarray, dict]:
    u0, d, phi, spacing = inputs
    c0 = time.process_time()
    t0 = time.perf_counter()
    s = core.FisherKpp(u0, d, phi, spacing, RHO, **kw)
    t_setup = time.perf_counter() - t0
    s.advance(s.steps_until(days))
    u = s.state(days)
    sec = time.perf_counter() - t0
    return u, {"seconds": sec, "cpu_s": time.process_time() - c0, "setup_s": t_setup,
               "steps": int(s.steps), "sweeps": int(s.steps) * int(getattr(s, "stages", 1)),
               "dt": float(s.dt)}


def compare(u: np.ndarray, ref: np.ndarray, spacing: list) -> dict:
    """Dice of u > 0.25 / 0.7 and the shift of the equivalent radius of each region (mm)."""
    out = {}
    dv = float(np.prod(spacing))
    for th in (0.25, 0.7):
        a, b = u > th, ref > th
        out[f"dice_{th}"] = float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
        r = [(3 * m.sum() * dv / (4 * np.pi)) ** (1 / 3) for m in (a, b)]
        out[f"shift_{th}_mm"] = float(r[0] - r[1])
    return out


def worker(args: argparse.Namespace) -> dict:
    """One thread count: every grid, every case, interleaved, best of ``repeats``."""
    import gbm._core as new

    base = load_core(args.baseline_so, "gbm_baseline")
    cores = {"base": base, "new": new}
    kws = {"base euler 0.9": ("base", {}), "base euler 0.5": ("base", {"safety": 0.5}),
           "new euler 0.9": ("new", {}), "new strang": ("new", {"scheme": "strang-rkl2"}),
           "new strang rho dt 1": ("new", {"scheme": "strang-rkl2", "dt": 1.0 / RHO})}
    res = {}
    for gdir in args.dirs:
        meta = json.loads((Path(gdir) / "meta.json").read_text())
        inputs = (np.load(Path(gdir) / "u0.npy"), np.load(Path(gdir) / "D.npy"),
                  np.load(Path(gdir) / "phi.npy"), meta["spacing"])
        best: dict = {}
        states: dict = {}
        for _ in range(args.repeats):
            for case in CASES:
                m, kw = kws[case]
                u, info = run_case(cores[m], inputs, args.days, **kw)
                states[case] = u
                if case not in best or info["seconds"] < best[case]["seconds"]:
                    best[case] = dict(info, cpu_s=min(info["cpu_s"], best.get(case, info)["cpu_s"]))
                else:
                    best[case]["cpu_s"] = min(best[case]["cpu_s"], info["cpu_s"])
        today = states["base euler 0.9"]
        ref_path = Path(gdir) / "reference.npy"
        ref = np.load(ref_path) if ref_path.exists() else None
        for case in CASES:
            best[case]["vs_today"] = compare(states[case], today, meta["spacing"])
            if ref is not None:
                best[case]["vs_reference"] = compare(states[case], ref, meta["spacing"])
        best["new euler 0.9"]["bit_identical_to_base"] = bool(
            np.array_equal(states["new euler 0.9"], today))
        res[str(meta["grid_mm"])] = {"meta": meta, "cases": best}
    return res


def reference(core: ModuleType, gdir: Path, days: float) -> None:
    """Strang-RKL2 at dt 0.5 and 1 d, Richardson-extrapolated (second order)."""
    meta = json.loads((gdir / "meta.json").read_text())
    inputs = (np.load(gdir / "u0.npy"), np.load(gdir / "D.npy"), np.load(gdir / "phi.npy"),
              meta["spacing"])
    u1, _ = run_case(core, inputs, days, scheme="strang-rkl2", dt=0.5)
    u2, _ = run_case(core, inputs, days, scheme="strang-rkl2", dt=1.0)
    np.save(gdir / "reference.npy", np.clip((4 * u1 - u2) / 3, 0, 1))


def machine() -> dict:
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                  if ln.startswith("model name")), "?")
    return {"cpu": model, "cores": os.cpu_count(), "date": datetime.datetime.now(
        datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "load_before": os.getloadavg()}


def table(results: dict) -> str:
    rows = ["| grid | threads | case | steps | stencil sweeps | dt (d) | set-up s | total s | "
            "CPU s | ratio to base 0.9 (wall / CPU) | Dice vs today 0.25 / 0.7 | "
            "shift vs reference 0.25 / 0.7 (mm) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for th, per_grid in results.items():
        for grid, r in per_grid.items():
            c = r["cases"]
            t0, c0 = c["base euler 0.9"]["seconds"], c["base euler 0.9"]["cpu_s"]
            for case in CASES:
                x = c[case]
                v, ref = x["vs_today"], x.get("vs_reference")
                rs = (f"{ref['shift_0.25_mm']:+.3f} / {ref['shift_0.7_mm']:+.3f}" if ref else "–")
                rows.append(f"| {grid} mm {tuple(r['meta']['shape'])} | {th} | {case} | "
                            f"{x['steps']} | {x['sweeps']} | {x['dt']:.3g} | {x['setup_s']:.3f} | "
                            f"{x['seconds']:.3f} | {x['cpu_s']:.3f} | "
                            f"{t0 / x['seconds']:.2f}x / {c0 / x['cpu_s']:.2f}x | "
                            f"{v['dice_0.25']:.4f} / {v['dice_0.7']:.4f} | {rs} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline-so", required=True)
    p.add_argument("--grids", default="2,1.5,1")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--days", type=float, default=300.0)
    p.add_argument("--reference", action="store_true")
    p.add_argument("--json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dirs", nargs="*", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a)))
        return 0
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = []
        for g in (float(x) for x in a.grids.split(",")):
            d = Path(tmp) / f"g{g}"
            d.mkdir()
            (d / "meta.json").write_text(json.dumps(prepare(g, d)))
            if a.reference:
                import gbm._core as new

                reference(new, d, a.days)
            dirs.append(str(d))
        results = {}
        for th in a.threads.split(","):
            env = dict(os.environ, RAYON_NUM_THREADS=th)
            cmd = [sys.executable, __file__, "--worker", "--baseline-so", a.baseline_so,
                   "--repeats", str(a.repeats), "--days", str(a.days), "--dirs", *dirs]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            results[th] = json.loads(out.stdout.strip().splitlines()[-1])
    info["load_after"] = os.getloadavg()
    print(f"machine: {info}")
    print(table(results))
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
