"""Time and check the Cahn–Hilliard phase field (gbm._core.phase_field) on the ICBM152 atlas.

The brain mask is (gm + wm)/255 > 0.5 from the 1 mm MNI ICBM152 2009a tissue maps that nilearn
ships, cropped to its bounding box plus a margin. Reports wall time, steps, the stopping metric,
conservation, the volume of {phi > 0.5} against the mask, voxel-wise disagreement, and whether
the interhemispheric fissure stays open: for every x-line through the mid-sagittal plane along
which the mask has tissue on both sides of a background gap, the gap counts as kept when phi
stays < 0.5 somewhere in it.

Usage: python benches/bench_phase_field.py [--quick] [--epsilon 0.5 1.0] [--tol 1e-4]
       [--max-steps 500] [--margin 6] [--save out.npz]
(--quick: the axial slice through z = 0 in 2D only.)
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import gbm._core as core
import nibabel as nib
import numpy as np
from bench_fd import _proc_kib
from bench_fd import reset_peak_rss as _reset_peak_rss
from scipy import ndimage

NILEARN_DATA = Path(__import__("nilearn").__file__).parent / "datasets" / "data"


def load_mask(margin: int) -> tuple[np.ndarray, int]:
    """Binary brain mask cropped to its bounding box + margin; also the mid-sagittal x index."""
    maps = []
    for t in ("gm", "wm"):
        img = nib.load(NILEARN_DATA / f"mni_icbm152_{t}_tal_nlin_sym_09a_converted.nii.gz")
        maps.append(np.asarray(img.dataobj, dtype=np.float64) / 255.0)
    mask = (maps[0] + maps[1]) > 0.5
    x_mid = int(round(np.linalg.solve(img.affine, [0, 0, 0, 1])[0]))
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, mask.shape)
    crop = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return np.ascontiguousarray(crop, dtype=np.float64), x_mid - int(lo[0])


def fissure_gaps(mask: np.ndarray, x_mid: int, half: int = 12) -> list[tuple]:
    """x-lines (y, z) whose mask has a background gap containing x_mid with tissue on both sides;
    returns (y, z, x_left, x_right) of the gap (inclusive)."""
    out = []
    m = mask > 0.5
    ny, nz = m.shape[1], m.shape[2]
    for y in range(ny):
        for z in range(nz):
            line = m[x_mid - half : x_mid + half + 1, y, z]
            if line[half]:
                continue
            lo = half
            while lo > 0 and not line[lo - 1]:
                lo -= 1
            hi = half
            while hi < 2 * half and not line[hi + 1]:
                hi += 1
            if line[:lo].any() and line[hi + 1 :].any():
                out.append((y, z, x_mid - half + lo, x_mid - half + hi))
    return out


def reset_peak_rss() -> float:
    """Reset the peak-RSS mark (see bench_fd.reset_peak_rss); return the current RSS in MiB."""
    _reset_peak_rss()
    return _proc_kib("VmRSS") / 1024


def peak_rss() -> float:
    """Peak RSS (MiB) since the last reset (VmHWM); falls back to ru_maxrss."""
    v = _proc_kib("VmHWM")
    return v / 1024 if v == v else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check(mask: np.ndarray, phi: np.ndarray, x_mid: int) -> dict:
    m, p = mask > 0.5, phi > 0.5
    res = {
        "voxels_mask": int(m.sum()),
        "voxels_phi": int(p.sum()),
        "volume_rel_diff": float(p.sum() / m.sum() - 1.0),
        "filled_bg": int((p & ~m).sum()),  # background voxels that became tissue
        "lost_tissue": int((m & ~p).sum()),
        "components_mask": int(ndimage.label(m)[1]),
        "components_phi": int(ndimage.label(p)[1]),
        "largest_component_phi_frac": 0.0,
    }
    lab, n = ndimage.label(p)
    if n:
        res["largest_component_phi_frac"] = float(np.bincount(lab.ravel())[1:].max() / p.sum())
    # Enclosed background (ventricles and closed sulcal pockets): background components of the
    # mask that do not touch the box edge; how much of them stays background in phi.
    lab, n = ndimage.label(~m)
    edge = np.unique(np.concatenate([np.take(lab, [0, -1], axis=a).ravel()
                                     for a in range(m.ndim)]))
    holes = (lab > 0) & ~np.isin(lab, edge)
    res["holes_voxels_mask"] = int(holes.sum())
    res["holes_kept_frac"] = float((holes & ~p).sum() / max(holes.sum(), 1))
    if mask.ndim == 3:
        gaps = fissure_gaps(mask, x_mid)
        kept = [phi[a : b + 1, y, z].min() < 0.5 for (y, z, a, b) in gaps]
        widths = np.array([b - a + 1 for (_, _, a, b) in gaps])
        kept = np.array(kept)
        res["fissure_lines"] = len(gaps)
        res["fissure_kept_frac"] = float(kept.mean())
        for w in (1, 3, 5):
            sel = widths == w
            res[f"fissure_kept_frac_w{w}"] = float(kept[sel].mean()) if sel.any() else float("nan")
        res["midplane_voxels_mask"] = int(m[x_mid].sum())
        res["midplane_voxels_phi"] = int(p[x_mid].sum())
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2D axial slice only")
    ap.add_argument("--epsilon", type=float, nargs="+", default=[0.5])
    ap.add_argument("--tol", type=float, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--dt", type=float, default=None)
    ap.add_argument("--margin", type=int, default=6)
    ap.add_argument("--save", type=Path, default=None, help="write mask and phi to this .npz")
    args = ap.parse_args(argv)

    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_fd import cpu_busy, machine

    m = machine()
    print(f"date {m['date']}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; rayon threads "
          f"{m['rayon_threads']}; Python {m['python']}, numpy {m['numpy']}, gbm {m['gbm']}; other "
          f"processes busy {cpu_busy():.2f} cores (1 s sample)")
    mask3, x_mid = load_mask(args.margin)
    cases = []
    if args.quick:
        # axial slice through world z = 0 (index 72 in the uncropped atlas)
        k = mask3.shape[2] // 2
        cases.append(("2D axial", np.ascontiguousarray(mask3[:, :, k]), [1.0, 1.0]))
    else:
        cases.append(("3D", mask3, [1.0, 1.0, 1.0]))
    kw = {}
    if args.tol is not None:
        kw["tol"] = args.tol
    if args.max_steps is not None:
        kw["max_steps"] = args.max_steps
    if args.dt is not None:
        kw["dt"] = args.dt
    saved = {}
    for name, mask, spacing in cases:
        print(f"{name}: shape {mask.shape}, mask voxels {int(mask.sum())}")
        for eps in args.epsilon:
            rss0 = reset_peak_rss()
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            phi, info = core.phase_field(mask, spacing, epsilon=eps, **kw)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            rss1 = peak_rss()
            c = check(mask, phi, x_mid)
            print(f"  eps {eps} mm: {wall:.2f} s wall ({cpu:.2f} s CPU), load average "
                  f"{os.getloadavg()[0]:.1f}, steps {info['steps']} (+{info['rejected']} "
                  f"retried), stopped {info['stopped']}, change {info['change']:.2e}, "
                  f"time {info['time']:.1f} mm^2")
            print(f"    mass rel change unclipped {info['mass_rel_change_unclipped']:.1e}, "
                  f"clipped {info['mass_rel_clipped']:.1e}, phi range before clip "
                  f"[{info['phi_min']:.3g}, {info['phi_max']:.4g}]")
            print(f"    peak RSS during the run {rss1:.0f} MiB (before it {rss0:.0f} MiB, "
                  f"increase {rss1 - rss0:.0f} MiB; the mask is {mask.nbytes / 2**20:.0f} MiB)")
            for key, v in c.items():
                print(f"    {key}: {v:.4g}" if isinstance(v, float) else f"    {key}: {v}")
            saved[f"phi_eps{eps}"] = phi.astype(np.float32)
        saved["mask"] = mask.astype(np.uint8)
    if args.save:
        np.savez_compressed(args.save, **saved)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
