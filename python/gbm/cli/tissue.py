"""``gbm tissue``: the parser and the command (the job is :func:`gbm.jobs.tissue.run.make_tissue`)."""

from __future__ import annotations

import argparse
from typing import Any

from gbm.cli.common import add_config, add_force, add_out, add_threads, config_from
from gbm.jobs.tissue.config import DEFAULT_PRESET, PRESETS, TissueConfig
from gbm.jobs.tissue.run import make_tissue

#: The flags that set TissueConfig fields.
FIELDS = ("t1c", "t1", "seg", "case", "fixed", "brain_mask", "labels", "preset", "mask_edema",
          "threads", "seed")


def register(sub: Any) -> None:
    """Add ``tissue`` to the ``gbm`` subparsers."""
    d = TissueConfig()
    presets = "; ".join(f"{p.name}: {p.summary}" for p in PRESETS.values())
    p = sub.add_parser(
        "tissue", help="white/gray matter and CSF maps from MR images by atlas registration "
        "(optional extra gbm[tissue])",
        description="Register the ICBM152 2009a atlas T1 (nilearn's wheel) onto the patient's "
        "skull-stripped T1c (or native T1) with ANTsPy, keeping the tumour core out of the "
        "cost function, and warp the atlas WM and GM maps onto the segmentation's grid (CSF = "
        "clip(1 - wm - gm) inside the brain). Writes OUT/tissue_segmentation/{wm,gm,csf}_pbmap"
        ".nii.gz (on the segmentation's grid and header), OUT/tumor_segmentation/tumor_seg.nii.gz "
        "(a copy), OUT/transforms/, OUT/tissue.json and OUT/tissue.png: a PredictGBM-layout "
        "folder that `gbm fit --patient OUT` reads. Needs pip install \"gbm[tissue]\".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"presets: {presets}. units: mm, seconds, ml.")
    g = p.add_argument_group("patient (images on the segmentation's grid, skull-stripped)")
    g.add_argument("--case", help="a BraTS case folder (<id>-{t1n,t1c,t2w,t2f,seg}.nii.gz or "
                   "<id>_{t1,t1ce,t2,flair,seg}.nii.gz)")
    g.add_argument("--t1c", help="contrast-enhanced T1 (the fixed image by default)")
    g.add_argument("--t1", help="native T1 (the fixed image when given without --t1c)")
    g.add_argument("--seg", help="tumour segmentation (labels as gbm fit reads them)")
    g.add_argument("--fixed", choices=("t1c", "t1"), default=None,
                   help="the image the atlas is registered onto (t1c; t1 when only --t1 is "
                   "given)")
    g.add_argument("--brain-mask", help="brain mask (> 0.5) for images that are not "
                   "skull-stripped")
    g.add_argument("--labels", default=None,
                   help="label convention: brats2021, brats2023, brats2024post, tum or "
                   "necrosis=1,edema=2,enhancing=4 (default: detected; brats2021 for a BraTS "
                   "2021 case)")
    r = p.add_argument_group("registration")
    r.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help=f"registration recipe ({DEFAULT_PRESET}; see below)")
    r.add_argument("--mask-edema", action="store_true", default=None,
                   help="keep the edema out of the cost function too (the core always is)")
    r.add_argument("--seed", type=int, default=None,
                   help=f"the engine's random seed, non-zero ({d.seed})")
    add_threads(r, "ANTs threads (2)")
    add_config(p)
    add_out(p, None, "output folder", required=True)
    add_force(p, "replace an existing output folder")
    p.set_defaults(func=command)


def command(a: argparse.Namespace) -> int:
    """Make the maps and write the folder."""
    fixed = a.fixed
    if fixed is None and a.t1 is not None and a.t1c is None and a.case is None:
        fixed = "t1"
    cfg = config_from(TissueConfig, a, [f for f in FIELDS if f != "fixed"],
                      extra={"fixed": fixed})
    make_tissue(cfg, a.out, force=a.force)
    return 0
