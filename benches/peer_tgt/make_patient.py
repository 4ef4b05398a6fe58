"""A PredictGBM-layout patient folder from TumorGrowthToolkit densities (``run_tgt.py``): labels by
gbm synth's thresholds (gbm.jobs.synth.threshold_labels, BraTS 2023 numbering), the maps copied from
``--maps``, a truth.json with the solver's parameters and start."""
import json, shutil, argparse
from pathlib import Path
import numpy as np
import nibabel as nib
from gbm import io
from gbm.jobs.synth import threshold_labels
from gbm.problem.segmentation.labels import parse_convention

p = argparse.ArgumentParser()
p.add_argument("--maps", required=True); p.add_argument("--tgt", required=True)
p.add_argument("--out", required=True); p.add_argument("--age", type=float, default=400)
p.add_argument("--days", default="0,150"); p.add_argument("--rec", type=float, default=300)
a = p.parse_args()
out, maps, tgt = Path(a.out), Path(a.maps), Path(a.tgt)
if out.exists(): shutil.rmtree(out)
(out / "tissue_segmentation").mkdir(parents=True)
for n in ("wm", "gm", "csf"):
    shutil.copy(maps / f"tissue_segmentation/{n}_pbmap.nii.gz", out / f"tissue_segmentation/{n}_pbmap.nii.gz")
img = nib.load(maps / "tissue_segmentation/wm_pbmap.nii.gz"); aff = img.affine
h = float(abs(aff[0, 0]))
conv = parse_convention("brats2023")
tl = json.load(open(tgt / "tgt_log.json"))
ijk = np.array(tl["params"]["voxel"], float)
origin = (aff @ np.r_[ijk, 1.0])[:3]
days = [float(d) for d in a.days.split(",")]
snaps, scans = [], []
allds = days + ([a.rec] if a.rec >= 0 else [])
for i, d in enumerate(allds):
    u = np.load(tgt / f"u_T{a.age + d:g}.npy").astype(np.float64)
    lab = threshold_labels(u, conv, 0.25, 0.675, 0.95)
    if i < len(days):
        rel = "tumor_segmentation/tumor_seg.nii.gz" if i == 0 else f"tumor_segmentation/tumor_seg_day{d:g}.nii.gz"
        scans.append({"file": rel, "day": d})
    else:
        rel = "longitudinal/recurrence_preop.nii.gz"
    io.save_labels_atomic(out / rel, lab, aff)
    io.save_nifti_atomic(out / f"truth/u_day{d:g}.nii.gz", u.astype(np.float32), aff, description="TGT u")
    v = h**3 / 1000
    snaps.append({"day": d, "age_days": a.age + d, "whole_ml": float((u >= 0.25).sum() * v),
                  "core_ml": float((u >= 0.675).sum() * v), "max_u": float(u.max()), "file": rel})
io.save_nifti_atomic(out / "truth/u_start.nii.gz", np.load(tgt / "u0.npy"), aff, description="TGT u0")
listing = {"scans": scans}
if a.rec >= 0: listing["recurrence"] = {"file": "longitudinal/recurrence_preop.nii.gz", "day": a.rec}
listing["labels"] = "brats2023"
io.write_json_atomic(out / "scans.json", listing)
dw, rho, ratio = tl["params"]["Dw"], tl["params"]["rho"], tl["params"]["RatioDw_Dg"]
truth = {"origin_world_mm": origin.tolist(), "origin_voxel": ijk.tolist(), "dw": dw, "rho": rho,
         "ratio": ratio, "lambda_mm": (dw / rho) ** 0.5, "rho_T": rho * a.age, "age_days": a.age,
         "front_speed_mm_per_day": 2 * (dw * rho) ** 0.5, "scan_days": days,
         "thresholds": {"theta_c": 0.675, "theta_e": 0.25, "theta_n": 0.95}, "labels": "brats2023",
         "snapshots": snaps, "solver": "TumorGrowthToolkit FK (m1balcerak/TumorGrowthToolkit @ cbd5bca, unmodified)",
         "tgt": tl}
io.write_json_atomic(out / "truth.json", truth)
print(json.dumps(snaps, indent=0)); print(origin)
