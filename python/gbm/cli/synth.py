"""``gbm synth``: the parser and the command (the job is :mod:`gbm.jobs.synth`)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from gbm.cli.common import (
    add_config,
    add_force,
    add_out,
    config_from,
    float_list,
    read_config,
    seed_mm_text,
    world_point,
)
from gbm.errors import InputError
from gbm.jobs.synth import SynthConfig, synth, synth_cohort
from gbm.jobs.tissue.phantom import PHANTOM_TUMOUR, PhantomConfig, write_phantom


def register(sub: Any) -> None:
    """Add ``synth`` to the ``gbm`` subparsers."""
    d = SynthConfig()
    p = sub.add_parser(
        "synth", help="write a synthetic patient (known truth) in the PredictGBM layout",
        description="Simulate a tumour with gbm's FD solver from a known origin, Dw, rho and age, "
        "threshold it into BraTS-style segmentations at the scan days, and write a patient folder "
        "(tissue_segmentation/, tumor_segmentation/, longitudinal/recurrence_preop.nii.gz, "
        "scans.json) with the truth (truth/u_day<D>.nii.gz, truth.json). Days D count from the "
        "first scan.", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="units: mm (world coordinates of the maps), days, Dw mm^2/day, rho 1/day.")
    g = p.add_argument_group("maps (default: embedded ICBM152 2009a atlas, 1 mm; csf derived)")
    g.add_argument("--wm", help="white-matter map (NIfTI)")
    g.add_argument("--gm", help="gray-matter map (same grid)")
    g.add_argument("--csf", help="CSF map (default: derived from wm and gm)")
    g.add_argument("--downsample", type=int, default=None,
                   help=f"block-average the maps by this integer factor ({d.downsample})")
    m = p.add_argument_group("tumour")
    m.add_argument("--origin-mm", type=world_point, default=None,
                   help=f"origin x,y,z in world mm (default {seed_mm_text()})")
    m.add_argument("--dw", type=float, default=None, help=f"Dw, mm^2/day ({d.dw})")
    m.add_argument("--rho", type=float, default=None, help=f"rho, 1/day ({d.rho})")
    m.add_argument("--ratio", type=float, default=None, help=f"Dw/Dg ({d.ratio:g})")
    m.add_argument("--age-days", type=float, default=None,
                   help=f"tumour age at the first scan, days ({d.age_days:g})")
    m.add_argument("--scheme", choices=["strang-rkl2", "euler"], default=None,
                   help=f"time integrator: strang-rkl2 (rho dt = 0.125) or euler ({d.scheme})")
    m.add_argument("--safety", type=float, default=None,
                   help=f"--scheme euler: time step as a fraction of the stability bound "
                   f"({d.safety})")
    m.add_argument("--no-cache", dest="phase_cache", action="store_false", default=None,
                   help="solve the phase field afresh instead of reusing it from the user's "
                   "cache ($GBM_CACHE_DIR or ~/.cache/gbm)")
    v = p.add_argument_group(
        "start and model variants (default: gbm's own model from the paper's start)",
        "The start is u0 = peak exp(-|x - origin|^2 / R^2) at age 0, set to 0 below the\n"
        "cutoff; R is the e-folding radius (u0 = peak/e at R). The paper's: peak 0.1,\n"
        "R = sqrt(10) = 3.162 mm. Issue 18's independent solver: --start-peak 0.5\n"
        "--start-radius-mm 4.472 --start-cutoff 0.1 --closed-below 0.1 --face-mean arithmetic\n"
        "(its start is 0 beyond 5.67 mm).")
    v.add_argument("--start-peak", type=float, default=None,
                   help="peak of the starting Gaussian, in (0, 1] (0.1)")
    v.add_argument("--start-radius-mm", type=float, default=None,
                   help="e-folding radius R of the starting Gaussian, mm (3.162)")
    v.add_argument("--start-cutoff", type=float, default=None,
                   help=f"start set to 0 where below this ({d.start_cutoff:g}: no cutoff)")
    v.add_argument("--closed-below", type=float, default=None,
                   help="no phase field: the domain is wm + gm >= this (faces to cells below "
                   "are closed), e.g. 0.1 (default: phase field)")
    v.add_argument("--face-mean", choices=("harmonic", "arithmetic"), default=None,
                   help=f"mean of D phi on a cell face ({d.face_mean})")
    s = p.add_argument_group("scans and labels")
    s.add_argument("--scan-days", type=float_list, default=None,
                   help="scan days since the first scan, comma-separated, first 0 (0)")
    s.add_argument("--recurrence-after", type=float, default=None,
                   help=f"recurrence this many days after the last scan ({d.recurrence_after:g})")
    s.add_argument("--no-recurrence", action="store_true", help="write no recurrence")
    s.add_argument("--theta-c", type=float, default=None,
                   help=f"core threshold, u >= theta_c ({d.theta_c})")
    s.add_argument("--theta-e", type=float, default=None,
                   help=f"whole-tumour threshold, u >= theta_e ({d.theta_e})")
    s.add_argument("--theta-n", type=float, default=None,
                   help=f"necrosis threshold inside the core, u >= theta_n ({d.theta_n})")
    s.add_argument("--labels", default=None,
                   help="label convention: brats2021, brats2023, brats2024post, tum or "
                   f"necrosis=1,edema=2,enhancing=4 ({d.labels})")
    s.add_argument("--label-noise", type=float, default=None,
                   help="probability that a boundary voxel takes a neighbour's label "
                   f"({d.label_noise:g})")
    s.add_argument("--blur-mm", type=float, default=None,
                   help=f"Gaussian blur sigma of u before thresholding, mm ({d.blur_mm:g})")
    s.add_argument("--seed", type=int, default=None, help=f"random seed ({d.seed})")
    p.add_argument("--cohort", type=int, default=None,
                   help="write N patients patient-000.. with random origins, Dw and rho")
    b = p.add_argument_group(
        "BraTS phantom (--brats): a BraTS case folder with MR images and no tissue maps, the "
        "atlas and the tumour pulled into a 240x240x155 LPS grid (or that field of view at "
        "--downsample mm) through a known affine + smooth random warp + mass effect; the true "
        "maps in truth/ (gbm.jobs.tissue.phantom). --theta-n defaults to 0.9 here")
    ph = PhantomConfig()
    b.add_argument("--brats", nargs="?", const="2023", default=None, choices=("2021", "2023"),
                   help="write a BraTS phantom with this release's naming and labels (2023)")
    b.add_argument("--warp-mm", type=float, default=None,
                   help=f"largest random displacement, mm ({ph.warp_mm:g})")
    b.add_argument("--mass-mm", type=float, default=None,
                   help=f"largest mass-effect displacement, mm ({ph.mass_mm:g})")
    b.add_argument("--case-id", default=None, help=f"case id of the file names ({ph.case_id})")
    add_config(p)
    add_out(p, "runs/synth", "output folder (runs/synth)")
    add_force(p, "replace an existing output folder")
    p.set_defaults(func=command)



#: The flags that set SynthConfig fields.
FIELDS = ("wm", "gm", "csf", "downsample", "origin_mm", "dw", "rho", "ratio", "age_days",
           "scan_days", "recurrence_after", "theta_c", "theta_e", "theta_n", "labels",
           "label_noise", "blur_mm", "scheme", "safety", "phase_cache", "seed", "start_peak",
           "start_radius_mm",
           "start_cutoff", "closed_below", "face_mean")


def command(a: argparse.Namespace) -> int:
    """Write one synthetic patient (or ``--cohort N``), print a one-line summary."""
    file_values = read_config(a)
    if str(file_values.get("recurrence_after", "")).lower() in ("none", "false"):
        file_values["recurrence_after"] = None  # TOML has no None: "none" or false says none
    if a.brats is not None:
        return _brats(a, file_values)
    cfg = config_from(SynthConfig, a, FIELDS, values=file_values)
    if a.no_recurrence:
        cfg = dataclasses.replace(cfg, recurrence_after=None)
    t0 = time.perf_counter()
    if a.cohort is not None:
        truths = synth_cohort(cfg, a.cohort, a.out, force=a.force, progress=True)
        print(f"gbm synth: {len(truths)} patients in {time.perf_counter() - t0:.1f} s -> {a.out}")
        return 0
    t = synth(cfg, a.out, force=a.force, progress=True)
    vols = "; ".join(f"day {s['day']:g} ({s['kind']}): whole {s['whole_ml']:.1f} ml, core "
                     f"{s['core_ml']:.1f} ml" for s in t["snapshots"])
    print(f"gbm synth: lambda {t['lambda_mm']:.2f} mm, rho*T {t['rho_T']:.2f}; {vols}; "
          f"{time.perf_counter() - t0:.1f} s -> {a.out}")
    return 0


def _brats(a: argparse.Namespace, file_values: dict[str, Any]) -> int:
    """``--brats``: one phantom case folder (:func:`gbm.jobs.tissue.phantom.write_phantom`)."""
    if a.cohort is not None:
        raise InputError("--brats writes one case; --cohort is not available with it")
    under = {"theta_n": PHANTOM_TUMOUR.theta_n, "recurrence_after": None} | file_values
    tumour = config_from(SynthConfig, a, FIELDS, values=under)
    naming = "brats2021" if a.brats == "2021" else "brats2023"
    d = PhantomConfig()
    over = {k: v for k, v in (("warp_mm", a.warp_mm), ("mass_mm", a.mass_mm),
                              ("case_id", a.case_id)) if v is not None}
    cfg = dataclasses.replace(d, tumour=tumour, naming=naming, **over)
    if naming == "brats2021" and a.case_id is None:
        cfg = dataclasses.replace(cfg, case_id="BraTS2021_90000")
    t0 = time.perf_counter()
    t = write_phantom(cfg, a.out, force=a.force)
    print(f"gbm synth: BraTS phantom {cfg.case_id} ({naming}), lambda {t['lambda_mm']:.2f} mm, "
          f"origin {tuple(round(v, 1) for v in t['origin_world_mm'])} mm; "
          f"{time.perf_counter() - t0:.1f} s -> {a.out}")
    return 0
