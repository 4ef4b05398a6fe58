"""What ``gbm tissue`` reads: the fixed image, the segmentation, the brain and the metric mask.

* Files: a BraTS case folder (``--case``, :mod:`gbm.problem.segmentation.brats`) or flags
  (``--t1c``, ``--t1``, ``--seg``).  The fixed image is the T1c (``--fixed t1c``, the default with
  ``--case`` or ``--t1c``) or the native T1 (``--fixed t1``, the default when only ``--t1`` is
  given); a role named by ``--fixed`` that the case or the flags lack is an error.
* Everything is read RAS-reoriented (:mod:`gbm.io`) and must lie on the segmentation's grid (shape,
  and affine within 1e-3 mm: :class:`gbm.problem.segmentation.patient.GridRef`).
* Brain (:func:`brain_of`): the fixed image's non-zero voxels, holes filled, or ``--brain-mask``
  (> 0.5).  An image whose non-zero region is larger than :data:`MAX_BRAIN_ML` is not
  skull-stripped (a brain with its CSF is 1,000-2,000 ml; a head 3,500-5,000 ml): an error unless
  a brain mask is given, which then also zeroes the image outside it.
* Metric mask (:func:`metric_mask`): the brain minus the tumour core (PredictGBM's rule) and minus
  a resection cavity (no tissue to match), minus the edema as well with ``mask_edema``.

Bad input (another grid, a 4D image, a missing modality, an empty segmentation, an image of zeros,
a tumour outside the brain) raises :class:`~gbm.errors.InputError` before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gbm import io
from gbm.errors import InputError, require
from gbm.jobs.tissue.atlas import filled
from gbm.jobs.tissue.config import TissueConfig
from gbm.jobs.tissue.engine import Volume
from gbm.problem.segmentation.brats import brats_case
from gbm.problem.segmentation.labels import LabelConvention, Regions, parse_convention, regions
from gbm.problem.segmentation.patient import GridRef, RawSeg, Roles, label_convention

#: Largest non-zero volume (ml) of an image taken as skull-stripped.
MAX_BRAIN_ML = 2400.0


@dataclass(frozen=True)
class TissueFiles:
    """The resolved inputs: fixed image (role and path), the other T1 if any, the segmentation."""

    fixed_role: str
    fixed: Path
    seg: Path
    brain_mask: Path | None
    labels: str | None
    case_id: str | None = None


@dataclass(frozen=True, eq=False)
class TissueInputs:
    """The inputs on the segmentation's RAS grid.

    Attributes
    ----------
    files : TissueFiles
    fixed : Volume
        The image the atlas is registered onto (zero outside ``brain``).
    labels : ndarray, int16
    convention : LabelConvention
    regions : Regions
    brain : ndarray, bool
    brain_rule : str
        How ``brain`` was made, for tissue.json.
    """

    files: TissueFiles
    fixed: Volume
    labels: np.ndarray
    convention: LabelConvention
    regions: Regions
    brain: np.ndarray
    brain_rule: str

    @property
    def affine(self) -> np.ndarray:
        return self.fixed.affine

    @property
    def spacing(self) -> tuple[float, float, float]:
        z = np.sqrt((np.asarray(self.affine)[:3, :3] ** 2).sum(axis=0))
        return (float(z[0]), float(z[1]), float(z[2]))

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0


def resolve_files(cfg: TissueConfig) -> TissueFiles:
    """The files of ``cfg`` (a BraTS case or flags), with the fixed image's role checked."""
    fixed_role = cfg.fixed
    if cfg.case is not None:
        case = brats_case(cfg.case)
        path = case.image(fixed_role)
        if path is None:
            names = {"t1c": "T1c (-t1c / _t1ce)", "t1": "native T1 (-t1n / _t1)"}
            raise InputError(f"--case: {case.folder} has no {names[fixed_role]} image of case "
                             f"{case.case_id}; --fixed {fixed_role} needs it")
        return TissueFiles(fixed_role, path, case.seg, _opt(cfg.brain_mask), cfg.labels or
                           case.labels, case.case_id)
    assert cfg.seg is not None
    given = {"t1c": cfg.t1c, "t1": cfg.t1}
    if given[fixed_role] is None:
        raise InputError(f"--fixed {fixed_role} needs --{fixed_role} (the image is missing)")
    return TissueFiles(fixed_role, Path(str(given[fixed_role])), Path(cfg.seg),
                       _opt(cfg.brain_mask), cfg.labels)


def _opt(p: str | None) -> Path | None:
    return None if p is None else Path(p)


def brain_of(image: np.ndarray, voxel_ml: float, name: str, path: Path,
             mask: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The brain mask (module header) and how it was made."""
    if mask is not None:
        brain = mask > 0.5
        require(bool(brain.any()), "--brain-mask: the mask is empty (nothing > 0.5)")
        return brain, "--brain-mask > 0.5"
    brain = filled(image != 0)
    ml = float(brain.sum()) * voxel_ml
    if ml > MAX_BRAIN_ML:
        raise InputError(f"{name}: {path} does not look skull-stripped ({ml:.0f} ml of non-zero "
                         f"voxels; a skull-stripped brain is 1000-2000 ml): give --brain-mask "
                         "MASK, or skull-strip it first")
    return brain, f"non-zero voxels of the {name[2:]} image, holes filled"


def _check_image(a: np.ndarray, name: str, path: Path) -> None:
    if not np.any(a):
        raise InputError(f"{name}: {path} is all zeros")
    if float(a.min()) < 0 and float(a.max()) <= 0:
        raise InputError(f"{name}: {path} has no positive intensities")


def read_inputs(cfg: TissueConfig) -> TissueInputs:
    """Read and check ``cfg``'s images (module header)."""
    files = resolve_files(cfg)
    seg_name = "--case" if cfg.case is not None else "--seg"
    fixed_name = "--case" if cfg.case is not None else f"--{files.fixed_role}"
    lab, aff = io.load_labels(files.seg, seg_name)
    grid = GridRef(seg_name, str(files.seg), lab.shape, aff)
    img, aff_i = io.load_nifti(files.fixed, fixed_name)
    grid.check(fixed_name, str(files.fixed), img.shape, aff_i)
    _check_image(img, fixed_name, files.fixed)
    mask = None
    if files.brain_mask is not None:
        mask, aff_m = io.load_nifti(files.brain_mask, "--brain-mask")
        grid.check("--brain-mask", str(files.brain_mask), mask.shape, aff_m)
    voxel_ml = float(np.prod(np.sqrt((aff[:3, :3] ** 2).sum(axis=0)))) / 1000.0
    brain, rule = brain_of(img, voxel_ml, f"--{files.fixed_role}", files.fixed, mask)
    given = parse_convention(files.labels)
    conv = label_convention([RawSeg(files.seg, 0.0, lab)], None, Roles(scan=seg_name), given)
    reg = regions(lab, conv)
    require(bool(reg.whole.any()), f"{seg_name}: no tumour labels in {files.seg} (only the "
            "resection cavity is labelled)")
    inside = float((reg.whole & brain).sum()) / float(reg.whole.sum())
    require(inside >= 0.5, f"{seg_name}: {files.seg}: the tumour lies outside the brain of "
            f"{files.fixed} ({100 * inside:.1f} % inside)")
    fixed = Volume(np.where(brain, img, 0.0), aff)
    return TissueInputs(files, fixed, lab, conv, reg, brain, rule)


def metric_mask(inputs: TissueInputs, mask_edema: bool) -> np.ndarray:
    """Where the registration metric is evaluated: brain minus the core and the cavity (minus the
    edema)."""
    out = inputs.brain & ~inputs.regions.core & ~inputs.regions.cavity
    if mask_edema:
        out &= ~inputs.regions.whole
    require(bool(out.any()), "the registration mask is empty (the tumour covers the brain)")
    return out
