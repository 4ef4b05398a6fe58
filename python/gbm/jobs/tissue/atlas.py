"""The atlas gbm registers onto a patient: ICBM152 2009a (symmetric, 1 mm) T1, WM and GM.

nilearn's wheel ships the three maps (``nilearn/datasets/data/mni_icbm152_{t1,wm,gm}_tal_nlin_sym_
09a_converted.nii.gz``, 197 x 233 x 189, RAS, uint8); they are read through
:mod:`importlib.resources` (no download at run time), scaled to [0, 1] by :func:`gbm.io.load_nifti`.
The T1 is brain-extracted: the atlas brain is ``t1 > 0`` with holes filled.  There is no CSF map:
gbm's CSF is ``clip(1 - wm - gm, 0, 1)`` inside the brain (:func:`csf_inside`), on the atlas for the
phantoms' truth and on the patient for the registered maps, so both follow one rule.

Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
Institute, McGill University (the notice in the README, "Embedded atlas and licence notice").
"""

from __future__ import annotations

import contextlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gbm import io
from gbm.errors import InputError, require
from gbm.model.coarse import block_average, coarse_affine

#: The atlas T1 file in nilearn's wheel (the WM and GM files are :data:`gbm.io.ATLAS_FILES`).
ATLAS_T1_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
#: What tissue.json and truth.json call the atlas.
ATLAS_NAME = "ICBM152 2009a nonlinear symmetric, 1 mm (nilearn's wheel): T1, WM, GM"


def atlas_t1_path() -> contextlib.AbstractContextManager[Path]:
    """Context manager yielding the path of the embedded ICBM152 2009a T1 (brain-extracted)."""
    res = importlib.resources.files("nilearn").joinpath("datasets", "data", ATLAS_T1_FILE)
    if not res.is_file():
        raise InputError(f"embedded atlas file {ATLAS_T1_FILE} not found in nilearn; reinstall "
                         "nilearn")
    return importlib.resources.as_file(res)


@dataclass(frozen=True, eq=False)
class Atlas:
    """The atlas on its RAS grid.

    Attributes
    ----------
    t1, wm, gm : ndarray, float64, shape (nx, ny, nz)
        T1 intensity and tissue fractions, all in [0, 1].
    affine : ndarray, shape (4, 4)
        Voxel -> MNI mm.
    brain : ndarray, bool
        ``t1 > 0``, holes filled.
    """

    t1: np.ndarray
    wm: np.ndarray
    gm: np.ndarray
    affine: np.ndarray
    brain: np.ndarray

    @property
    def csf(self) -> np.ndarray:
        """``clip(1 - wm - gm, 0, 1)`` inside :attr:`brain`, 0 outside."""
        return csf_inside(self.wm, self.gm, self.brain)

    @property
    def spacing(self) -> tuple[float, float, float]:
        z = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(z[0]), float(z[1]), float(z[2]))


def csf_inside(wm: np.ndarray, gm: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """CSF fraction: ``clip(1 - wm - gm, 0, 1)`` where ``brain``, 0 elsewhere (float64)."""
    return np.where(brain, np.clip(1.0 - wm - gm, 0.0, 1.0), 0.0)


def filled(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled (3D, bool)."""
    from scipy import ndimage

    return np.asarray(ndimage.binary_fill_holes(mask), dtype=bool)


def load_atlas(downsample: int = 1) -> Atlas:
    """The embedded atlas, block-averaged by ``downsample`` (1: the 1 mm original).

    Block averaging is :func:`gbm.model.coarse.block_average` (the grid of ``gbm synth
    --downsample``); the brain of a downsampled atlas is where at least half of a block lies in
    the 1 mm brain.
    """
    require(isinstance(downsample, int) and downsample >= 1,
            f"downsample must be an integer >= 1, got {downsample}")
    with atlas_t1_path() as pt, io.atlas_path("wm") as pw, io.atlas_path("gm") as pg:
        t1, aff = io.load_nifti(pt, "embedded atlas T1")
        wm, _ = io.load_nifti(pw, "embedded wm")
        gm, _ = io.load_nifti(pg, "embedded gm")
    brain = filled(t1 > 0)
    if downsample > 1:
        f = (downsample,) * 3
        t1, wm, gm = (block_average(a, f) for a in (t1, wm, gm))
        brain = block_average(brain, f) >= 0.5
        aff = coarse_affine(aff, f)
    wm, gm = np.clip(wm, 0.0, 1.0), np.clip(gm, 0.0, 1.0)
    return Atlas(t1=t1, wm=wm, gm=gm, affine=aff, brain=brain)
