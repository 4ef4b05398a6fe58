"""``tissue.png``: the check a person does at a glance after ``gbm tissue``.

Axial, coronal and sagittal planes through the tumour core's centroid (the whole tumour's when there
is no core) of the patient's fixed image, two rows: the warped WM > 0.5 outline (cyan), then the
GM > 0.5 outline (magenta, dashed; one row each, as the two share the WM/GM boundary), with the
tumour core (red) and whole tumour (yellow) contours; neurological view
(:func:`gbm.viz.patient.stacked_panels`).  WM outlines following the patient's white matter and
GM outlines on its cortex mean the registration worked; outlines offset from the anatomy mean it
did not.
"""

from __future__ import annotations

import numpy as np

from gbm.problem.segmentation.labels import Regions
from gbm.viz.patient import stacked_panels


def centre_voxel(regions: Regions) -> tuple[int, int, int]:
    """The voxel nearest the core's centroid (the whole tumour's when the core is empty)."""
    r = regions.core if regions.core.any() else regions.whole
    c = np.rint(np.argwhere(r).mean(axis=0)).astype(int)
    return (int(c[0]), int(c[1]), int(c[2]))


def tissue_figure(image: np.ndarray, affine: np.ndarray, wm: np.ndarray, gm: np.ndarray,
                  regions: Regions, brain: np.ndarray, title: str) -> bytes:
    """The figure (module header) as PNG bytes; arrays RAS on one grid."""
    common = {"background": image, "affine": affine, "center_vox": centre_voxel(regions),
              "core": regions.core, "whole": regions.whole, "crop": brain}
    rows = [dict(common, plans={"WM > 0.5 (registered atlas)": wm > 0.5}, label="white matter"),
            dict(common, plans={"GM > 0.5 (registered atlas)": gm > 0.5}, label="gray matter")]
    return stacked_panels(rows, title)
