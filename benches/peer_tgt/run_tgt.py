"""Run the unmodified TumorGrowthToolkit FK solver on gbm's atlas maps; save u at the stopping times
(issue 18: gbm fit on segmentations made by an independent solver; benches/RESULTS.md "The unknown
start", subsection "Against the real peer solver").

The peer's code is not part of gbm: fetch it (github.com/m1balcerak/TumorGrowthToolkit, measured at
commit cbd5bca) and pass its checkout with --tgt-src. It needs numpy and scipy only.

    python benches/peer_tgt/run_tgt.py --tgt-src /path/to/TumorGrowthToolkit \
        --maps PATIENT_WITH_MAPS --voxel 63,75,49 --times 400,550,700 --out DIR
    python benches/peer_tgt/make_patient.py --maps PATIENT_WITH_MAPS --tgt DIR --out PATIENT
"""
import sys, json, time, argparse
import numpy as np
import nibabel as nib

p = argparse.ArgumentParser()
p.add_argument("--tgt-src", required=True)      # a TumorGrowthToolkit checkout
p.add_argument("--maps", required=True)         # folder with tissue_segmentation/{wm,gm}_pbmap.nii.gz
p.add_argument("--voxel", required=True)        # i,j,k origin voxel
p.add_argument("--times", default="400,550")
p.add_argument("--out", required=True)
p.add_argument("--dw", type=float, default=0.13)
p.add_argument("--rho", type=float, default=0.025)
p.add_argument("--ratio", type=float, default=10.0)
a = p.parse_args()
sys.path.insert(0, a.tgt_src)
from TumorGrowthToolkit.FK import Solver  # noqa: E402 - the peer, from the given checkout

wimg = nib.load(f"{a.maps}/tissue_segmentation/wm_pbmap.nii.gz")
wm = np.asarray(wimg.dataobj, dtype=np.float64)
gm = np.asarray(nib.load(f"{a.maps}/tissue_segmentation/gm_pbmap.nii.gz").dataobj, dtype=np.float64)
h = float(abs(wimg.affine[0, 0]))
ijk = [int(v) for v in a.voxel.split(",")]
pct = [(ijk[d] + 0.5) / wm.shape[d] for d in range(3)]
assert [int(pct[d] * wm.shape[d]) for d in range(3)] == ijk
log = {}
for T in [float(t) for t in a.times.split(",")]:
    params = {"Dw": a.dw, "rho": a.rho, "RatioDw_Dg": a.ratio, "gm": gm, "wm": wm,
              "NxT1_pct": pct[0], "NyT1_pct": pct[1], "NzT1_pct": pct[2],
              "init_scale": 1.0, "resolution_factor": 1.0, "th_matter": 0.1,
              "dx_mm": h, "dy_mm": h, "dz_mm": h, "stopping_time": T, "verbose": True}
    t0 = time.perf_counter()
    res = Solver(params).solve()
    wall = time.perf_counter() - t0
    assert res["success"], res
    u = res["final_state"]
    np.save(f"{a.out}/u_T{T:g}.npy", u.astype(np.float32))
    np.save(f"{a.out}/u0.npy", res["initial_state"].astype(np.float32))
    Nt = max(T * a.dw / h**2 * 8 + 100, T * a.rho * 1.1)
    log[f"{T:g}"] = {"wall_s": wall, "final_time": res["final_time"], "steps": int(np.ceil(Nt)),
                     "dt": T / Nt, "max_u": float(u.max()), "mass_ml": float(u.sum() * h**3 / 1000),
                     "u0_max": float(res["initial_state"].max()),
                     "u0_mass_ml": float(res["initial_state"].sum() * h**3 / 1000)}
    print(T, log[f"{T:g}"], flush=True)
json.dump({"params": {"Dw": a.dw, "rho": a.rho, "RatioDw_Dg": a.ratio, "pct": pct, "voxel": ijk,
           "init_scale": 1.0, "resolution_factor": 1.0, "th_matter": 0.1, "dx_mm": h},
           "runs": log}, open(f"{a.out}/tgt_log.json", "w"), indent=1)
