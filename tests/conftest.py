"""Shared fixtures: small synthetic brains written as NIfTI files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Phase fields go to a cache of this test session, never to the user's (gbm.model.phase_cache);
# subprocesses of the CLI tests inherit it.
os.environ["GBM_CACHE_DIR"] = tempfile.mkdtemp(prefix="gbm-test-cache-")

AFFINE = np.array([[1.0, 0, 0, -20.0], [0, 1.0, 0, -22.0], [0, 0, 1.0, -15.0], [0, 0, 0, 1]])


def synthetic_maps(shape: tuple[int, int, int] = (40, 44, 30), r_brain: float = 13.0,
                   r_wm: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """A ball-shaped 'brain': WM core of radius r_wm, GM shell out to r_brain (voxels)."""
    c = (np.asarray(shape) - 1) / 2
    idx = np.indices(shape).astype(float)
    r = np.sqrt(sum((idx[a] - c[a]) ** 2 for a in range(3)))
    wm = (r <= r_wm).astype(float)
    gm = ((r > r_wm) & (r <= r_brain)).astype(float)
    return wm, gm


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE,
                dtype: type = np.float32) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(data, dtype=dtype), affine), str(path))
    return path


@pytest.fixture
def brain_files(tmp_path: Path) -> dict[str, Path]:
    wm, gm = synthetic_maps()
    return {"wm": write_nifti(tmp_path / "wm.nii.gz", wm),
            "gm": write_nifti(tmp_path / "gm.nii.gz", gm),
            "dir": tmp_path}


#: World coordinate of the synthetic brain's centre (voxel ((40-1)/2, (44-1)/2, (30-1)/2)).
CENTRE_WORLD = (19.5 - 20.0, 21.5 - 22.0, 14.5 - 15.0)
