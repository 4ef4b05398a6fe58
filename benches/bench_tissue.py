"""Tissue maps by atlas registration (``gbm tissue``): accuracy and time per preset on a known-warp
BraTS phantom, masked vs unmasked near the lesion, and the patient fit on recovered vs true maps.

The phantom: ``gbm synth --brats`` (:mod:`gbm.jobs.tissue.phantom`; the ICBM152 atlas pulled into
the BraTS 240 x 240 x 155 LPS grid, or that field of view at ``--downsample`` mm, through a known
affine + 8 mm smooth random warp + 4 mm mass effect; a gbm tumour with MR-like contrasts, bias
field, Rician noise).  Per (preset, metric mask) in one run, on the same phantom: the registration
of the atlas T1 onto the T1c and the warp of the maps (:mod:`gbm.jobs.tissue.engine`; wall and CPU
seconds, the cores other processes kept busy meanwhile, the load average), then Dice(wm > 0.5) and
Dice(gm > 0.5) against the true maps outside the core, within the edema and within 10 mm of the
lesion (:mod:`gbm.jobs.tissue.accuracy`).  Masks: ``core`` (the default: brain minus core),
``edema`` (``--mask-edema``: brain minus the whole tumour), ``none`` (the whole brain).

``--fit PRESETS``: ``gbm tissue`` writes the folder of each listed preset and ``gbm fit`` (FD,
``--global-solves``/``--local-solves``) fits it and a folder with the true maps; the origin
distance (mm) and lambda ratio of each fit against the true-map fit are reported.

On a shared machine the wall times grow with the load; the CPU seconds (all threads of this
process) hardly do, and wall ~ CPU / threads on an idle machine is an estimate, not a measurement.

Usage: python benches/bench_tissue.py [--downsample 1] [--presets affine,quick,default]
       [--masks core] [--mask-presets default] [--fit default] [--threads 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_fd import OthersBusy, machine
from gbm import io
from gbm.jobs.fit import FitConfig, run_fit
from gbm.jobs.tissue import PRESETS, TissueConfig, make_tissue, tissue_maps
from gbm.jobs.tissue.accuracy import map_accuracy, regions_of
from gbm.jobs.tissue.engine import Volume, register, warp
from gbm.jobs.tissue.inputs import metric_mask, read_inputs
from gbm.jobs.tissue.phantom import PHANTOM_TUMOUR, PhantomConfig, write_phantom
from gbm.jobs.tissue.run import atlas_for


def load() -> float:
    return os.getloadavg()[0]


def one(case: Path, preset: str, mask_kind: str, threads: int, truth: dict) -> dict:
    """Register, warp and score one (preset, mask) on the phantom ``case``."""
    inputs = read_inputs(TissueConfig(case=str(case), preset=preset, threads=threads))
    mask = {"core": metric_mask(inputs, False), "edema": metric_mask(inputs, True),
            "none": inputs.brain}[mask_kind]
    atlas = atlas_for(inputs)
    load0 = load()
    with tempfile.TemporaryDirectory() as d, OthersBusy() as busy:
        t0, c0 = time.perf_counter(), time.process_time()
        reg = register(inputs.fixed, Volume(atlas.t1, atlas.affine), mask, PRESETS[preset],
                       Path(d) / "x_", seed=1, threads=threads)
        w = warp(reg, inputs.fixed, {"wm": Volume(atlas.wm, atlas.affine),
                                     "gm": Volume(atlas.gm, atlas.affine)}, threads=threads)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    maps = tissue_maps(w["wm"], w["gm"], inputs.brain)
    acc = map_accuracy(maps["wm"], maps["gm"], truth["wm"], truth["gm"],
                       regions_of(inputs.regions, inputs.brain, inputs.spacing))
    return {"preset": preset, "mask": mask_kind, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "stages_wall_s": {k: round(v, 1) for k, v in
                                                      reg.seconds.items()},
            "stages_cpu_s": {k: round(v, 1) for k, v in reg.cpu_seconds.items()},
            "others_busy": round(busy.cores, 2), "load": [round(load0, 1), round(load(), 1)],
            "dice": {a.region: [round(a.wm, 4), round(a.gm, 4)] for a in acc}}


def true_folder(case: Path, root: Path) -> Path:
    """A PredictGBM folder with the phantom's true maps and its segmentation."""
    d = root / "truth-maps"
    for name in ("wm", "gm", "csf"):
        io.write_bytes_atomic(d / "tissue_segmentation" / f"{name}_pbmap.nii.gz",
                              (case / "truth" / f"{name}_pbmap.nii.gz").read_bytes(), force=True)
    seg = next(case.glob("*-seg.nii.gz"))
    io.write_bytes_atomic(d / "tumor_segmentation" / "tumor_seg.nii.gz", seg.read_bytes(),
                          force=True)
    return d


def fits(case: Path, root: Path, presets: list[str], threads: int, cfg: FitConfig) -> list[dict]:
    """``gbm fit`` on the true maps and on each preset's maps; origin and lambda against truth."""
    rows = []
    folders = {"true maps": true_folder(case, root)}
    for p in presets:
        out = root / f"tissue-{p}"
        t0 = time.perf_counter()
        make_tissue(TissueConfig(case=str(case), preset=p, threads=threads), out, force=True,
                    printer=lambda m: None)
        print(f"gbm tissue --preset {p}: {time.perf_counter() - t0:.0f} s (load {load():.1f})",
              flush=True)
        folders[p] = out
    ref = None
    for name, folder in folders.items():
        t0 = time.perf_counter()
        r = run_fit(FitConfig(patient=str(folder), assume_days=400.0,
                              global_solves=cfg.global_solves, local_solves=cfg.local_solves),
                    root / f"fit-{name.replace(' ', '-')}", force=True)
        e = r["estimates"]
        row = {"maps": name, "origin_world_mm": [round(v, 2) for v in e["origin_world_mm"]],
               "lambda_mm": round(e["lambda_mm"], 4), "rho_T": round(e["rho_T"], 4),
               "dice": [(round(s["dice_core"], 4), round(s["dice_whole"], 4))
                        for s in r["scans"]],
               "fit_s": round(time.perf_counter() - t0, 1), "load": round(load(), 1)}
        if ref is None:
            ref = row
        row["origin_vs_true_maps_mm"] = round(math.dist(row["origin_world_mm"],
                                                        ref["origin_world_mm"]), 2)
        row["lambda_vs_true_maps"] = round(row["lambda_mm"] / ref["lambda_mm"] - 1, 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    head = ("| preset | mask | WM / GM outside core | WM / GM in edema | WM / GM within 10 mm "
            "| wall s | CPU s | others busy (cores) | load |")
    out = [head, "|" + "---|" * 9]
    for r in rows:
        d = r["dice"]
        cell = [f"{d[k][0]:.3f} / {d[k][1]:.3f}" for k in ("outside_core", "edema",
                                                          "near_lesion")]
        out.append(f"| {r['preset']} | {r['mask']} | {' | '.join(cell)} | {r['wall_s']:.0f} | "
                   f"{r['cpu_s']:.0f} | {r['others_busy']:.1f} | {r['load'][0]:.1f}-"
                   f"{r['load'][1]:.1f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--downsample", type=int, default=1)
    ap.add_argument("--presets", default="affine,quick,default")
    ap.add_argument("--masks", default="core", help="masks for every preset (core,edema,none)")
    ap.add_argument("--mask-presets", default="", help="presets also run with every mask")
    ap.add_argument("--fit", default="", help="presets whose maps are fitted (gbm fit)")
    ap.add_argument("--global-solves", type=int, default=200)
    ap.add_argument("--local-solves", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", default=None, help="keep the phantom and outputs in this folder")
    a = ap.parse_args()
    print("machine:", machine(), flush=True)
    with tempfile.TemporaryDirectory() as tmpd:
        root = Path(a.keep) if a.keep else Path(tmpd)
        case = root / "case"
        if not (case / "truth" / "truth.json").exists():
            t0 = time.perf_counter()
            tumour = dataclasses.replace(PHANTOM_TUMOUR, downsample=a.downsample)
            write_phantom(PhantomConfig(tumour=tumour), case, force=True)
            print(f"phantom ({a.downsample} mm): {time.perf_counter() - t0:.0f} s", flush=True)
        truth = {n: io.load_nifti(case / "truth" / f"{n}_pbmap.nii.gz", n)[0] for n in ("wm", "gm")}
        jobs = [(p, m) for p in a.presets.split(",") if p for m in a.masks.split(",") if m]
        jobs += [(p, m) for p in a.mask_presets.split(",") if p for m in ("core", "edema", "none")
                 if (p, m) not in jobs]
        rows = []
        for p, m in jobs:
            r = one(case, p, m, a.threads, truth)
            rows.append(r)
            print(json.dumps(r), flush=True)
        print(table(rows))
        if a.fit:
            fits(case, root, [p for p in a.fit.split(",") if p], a.threads,
                 FitConfig(global_solves=a.global_solves, local_solves=a.local_solves))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
