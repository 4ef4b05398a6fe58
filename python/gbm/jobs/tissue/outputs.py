"""The output folder of ``gbm tissue`` (a PredictGBM-layout patient folder that ``gbm fit --patient``
reads unchanged), assembled in a temporary sibling and renamed into place (:func:`gbm.io.staged_outdir`):

=========================================  ======================================================
``tissue_segmentation/{wm,gm,csf}_pbmap``  registered atlas maps, float32, on the segmentation's
                                           grid **and header** (its stored voxel order and affine)
``tumor_segmentation/tumor_seg.nii.gz``    the segmentation, a byte-for-byte copy
``transforms/atlas_to_patient_*``          ANTs transforms (``0GenericAffine.mat``, and for SyN
                                           ``1Warp.nii.gz``, ``1InverseWarp.nii.gz``)
``tissue.json``                            atlas, engine and version, preset, mask, times, quality
``tissue.png``                             the patient's image with the warped tissue contours,
                                           three planes through the tumour
=========================================  ======================================================

The maps are computed on the RAS-reoriented grid (:mod:`gbm.io`) and turned back into the
segmentation file's stored orientation (:class:`gbm.io.StoredGrid`) before writing, so a BraTS (LPS) case
gets LPS maps with the segmentation's exact affine: arrays from ``nibabel.load(...).get_fdata()`` of
the map and of the segmentation line up voxel for voxel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gbm import io
from gbm.io import StoredGrid

#: Paths of the outputs inside the folder.
MAP_FILES = {t: f"tissue_segmentation/{t}_pbmap.nii.gz" for t in ("wm", "gm", "csf")}
SEG_FILE = "tumor_segmentation/tumor_seg.nii.gz"
TRANSFORM_PREFIX = "transforms/atlas_to_patient_"
JSON_FILE = "tissue.json"
FIGURE_FILE = "tissue.png"


def write_maps(folder: Path, maps: dict[str, np.ndarray], grid: StoredGrid) -> None:
    """``maps`` (name -> RAS array) as ``tissue_segmentation/<name>_pbmap.nii.gz`` in ``grid``."""
    for name, a in maps.items():
        io.save_nifti_atomic(folder / MAP_FILES[name], grid.from_ras(a), grid.affine,
                             description=f"gbm tissue {name} (registered ICBM152)")


def copy_file(src: Path, dest: Path) -> None:
    """``src``'s bytes to ``dest`` (atomic write)."""
    io.write_bytes_atomic(dest, Path(src).read_bytes())
