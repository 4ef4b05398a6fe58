"""Accuracy of recovered tissue maps against a phantom's known maps (benches/bench_tissue.py, the
tests).

Dice(wm > 0.5) and Dice(gm > 0.5) of the recovered maps against the true ones, in three regions of
the patient's grid: ``outside_core`` (the brain minus the tumour core: where the fit uses the maps),
``edema`` (the whole tumour minus the core: where the image misleads the registration most) and
``near_lesion`` (brain voxels outside the core within :data:`NEAR_MM` of the whole tumour, by the
Euclidean distance in mm of the voxel spacing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gbm.problem.segmentation.labels import Regions

#: Distance (mm) from the whole tumour that counts as near the lesion.
NEAR_MM = 10.0


@dataclass(frozen=True)
class RegionDice:
    """Dice of WM > 0.5 and GM > 0.5 in one region, and the region's size in voxels."""

    region: str
    wm: float
    gm: float
    voxels: int


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean arrays (1.0 when both are empty)."""
    n = int(a.sum()) + int(b.sum())
    return 1.0 if n == 0 else 2.0 * float((a & b).sum()) / n


def regions_of(reg: Regions, brain: np.ndarray, spacing: Sequence[float],
               near_mm: float = NEAR_MM) -> dict[str, np.ndarray]:
    """The three regions of the module header (name -> bool array)."""
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(~reg.whole, sampling=tuple(float(v) for v in spacing))
    return {"outside_core": brain & ~reg.core, "edema": reg.edema & brain,
            "near_lesion": brain & ~reg.core & (dist <= near_mm)}


def map_accuracy(wm: np.ndarray, gm: np.ndarray, true_wm: np.ndarray, true_gm: np.ndarray,
                 regions: dict[str, np.ndarray]) -> list[RegionDice]:
    """Dice(wm > 0.5), Dice(gm > 0.5) against the truth in each region."""
    out = []
    for name, r in regions.items():
        out.append(RegionDice(name, dice((wm > 0.5) & r, (true_wm > 0.5) & r),
                              dice((gm > 0.5) & r, (true_gm > 0.5) & r), int(r.sum())))
    return out
