"""A patient's data: tissue maps, tumour segmentations at scan dates, an optional recurrence.

Inputs (:func:`load_patient`)
-----------------------------
* Flags: ``wm``, ``gm`` [, ``csf``] tissue maps and one or more ``scans`` ``"SEG.nii.gz@DAY"``.
* A patient folder, in one of two layouts:

  - PredictGBM: ``tissue_segmentation/{wm,gm,csf}_pbmap.nii.gz`` (csf optional),
    ``tumor_segmentation/tumor_seg.nii.gz`` (one scan, day 0), optional
    ``longitudinal/recurrence_preop.nii.gz`` (the recurrence, unless one is passed);
  - container: ``<id>-{wm,gm,csf,tumorseg}.nii.gz`` (e.g. ``00000-wm.nii.gz``; csf optional);
  - a BraTS case (:mod:`gbm.problem.segmentation.brats`: ``<id>-{t1n,t1c,t2w,t2f,seg}.nii.gz`` or
    ``<id>_{t1,t1ce,t2,flair,seg}.nii.gz``) whose tissue maps lie in ``tissue_segmentation/``;
    without maps it is an error that names ``gbm tissue``, which makes them.

  gbm's extension for several scans: an optional ``scans.json`` in the folder,
  ``{"scans": [{"file": "tumor_segmentation/tumor_seg.nii.gz", "day": 0},
  {"file": "tumor_segmentation/tumor_seg_day90.nii.gz", "day": 90}],
  "recurrence": {"file": "longitudinal/recurrence_preop.nii.gz", "day": 240},
  "labels": "brats2023"}`` (paths relative to the folder; ``recurrence`` and ``labels`` optional;
  ``labels`` is used when none is passed).  ``gbm synth`` writes it.

Everything is reoriented to RAS+ (:mod:`gbm.io`) and must share one grid (shape) and affine
(``np.allclose``, atol 1e-3 mm); voxel sizes come from the affine (anisotropic allowed).  Maps are
fractions in [0, 1] (uint8 0..255 maps are scaled by 1/255); label images are read unscaled
(:func:`gbm.io.load_labels`).  The label convention is detected once over the union of the label
values of all scans and the recurrence (:mod:`gbm.problem.segmentation.labels`).

``tumour_tissue="wm"`` (``--tumour-tissue wm``) is for maps segmented from the patient's own scan,
where the tumour is labelled CSF or missing: in the union of the whole-tumour regions of all scans
it sets wm = 1, gm = 0, csf = 0.  Atlas-registered maps (PredictGBM's default) show healthy tissue
under the tumour and are used as they are.  A scan whose whole tumour lies less than half inside the
brain mask is refused.  The brain mask (:func:`gbm.model.geometry.brain_mask`) is built once, here,
and travels on :class:`PatientData` (``mask``) to the geometry and the figures.

Steps (each usable alone): :func:`patient_files` resolves the inputs (:func:`folder_files` detects a
folder's layout, :func:`flag_files` reads the flags) into :class:`PatientFiles`;
:func:`check_scan_days`; :func:`read_maps` and :func:`read_segmentations` read the images onto one
:class:`GridRef`; :func:`label_convention` checks the labels; :func:`make_scans` /
:func:`make_recurrence` split them into regions; :func:`tumour_as_white_matter` and
:func:`check_inside_brain` apply the brain checks; :func:`load_patient` runs them in that order.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gbm import io
from gbm.errors import InputError
from gbm.model.geometry import Geometry, brain_mask, from_maps
from gbm.problem.segmentation.brats import brats_case, find_case
from gbm.problem.segmentation.labels import (
    LabelConvention,
    Regions,
    detect_convention,
    parse_convention,
    regions,
    whole_union,
)

#: Accepted values of ``tumour_tissue``.
TUMOUR_TISSUES = (None, "wm")
#: Affine agreement tolerance (mm), as in gbm.model.geometry.load_geometry.
AFFINE_ATOL = 1e-3

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, eq=False)
class Scan:
    """One segmentation on the full input grid (RAS).

    Attributes
    ----------
    day : float
        Scan date in days (any origin; NaN for a recurrence without a date).
    path : str
        File it was read from.
    labels : ndarray, int16, shape (nx, ny, nz)
    regions : Regions
        Boolean regions of ``labels`` under the patient's convention.
    """

    day: float
    path: str
    labels: np.ndarray
    regions: Regions


@dataclass(frozen=True, eq=False)
class PatientData:
    """Tissue maps and segmentations of one patient, all on the full RAS input grid.

    Attributes
    ----------
    wm, gm : ndarray, float64, shape (nx, ny, nz)
        Tissue fractions in [0, 1] (``tumour_tissue`` already applied).
    csf : ndarray or None
        CSF fraction, when given.
    affine : ndarray, shape (4, 4)
        Voxel -> world mm of the RAS-reoriented grid.
    scans : tuple of Scan
        Segmentations, days strictly increasing.
    convention : LabelConvention
    recurrence : Scan or None
        Follow-up segmentation for plan coverage.
    source : str
        Where the data came from (folder or file names).
    tumour_tissue : str or None
    mask : ndarray, bool, shape (nx, ny, nz)
        The brain mask of these maps (:func:`gbm.model.geometry.brain_mask`), built once by
        :func:`load_patient`; :meth:`geometry` and callers reuse it.
    """

    wm: np.ndarray
    gm: np.ndarray
    csf: np.ndarray | None
    affine: np.ndarray
    scans: tuple[Scan, ...]
    convention: LabelConvention
    recurrence: Scan | None
    source: str
    tumour_tissue: str | None
    mask: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel sizes (mm) along the three array axes, from the affine's columns."""
        z = np.sqrt((np.asarray(self.affine)[:3, :3] ** 2).sum(axis=0))
        return (float(z[0]), float(z[1]), float(z[2]))

    @property
    def days_since_first(self) -> tuple[float, ...]:
        """Scan days minus the first scan's day."""
        d0 = self.scans[0].day
        return tuple(float(s.day - d0) for s in self.scans)

    def brain_mask(self) -> np.ndarray:
        """The brain mask on the full grid: :attr:`mask` (built once, not recomputed)."""
        return self.mask

    def geometry(self, slice_index: int | None = None, margin: int = 5) -> Geometry:
        """The cropped :class:`~gbm.model.geometry.Geometry` of these maps (no phase field yet),
        cropped by :attr:`mask`."""
        return from_maps(self.wm, self.gm, self.affine, self.csf, slice_index=slice_index,
                         margin=margin, source=self.source, mask=self.mask)


# ---------------------------------------------------------------- the inputs: files and days

@dataclass(frozen=True)
class SegFile:
    """A segmentation file and its date (days; NaN for a recurrence without a date)."""

    path: Path
    day: float


@dataclass(frozen=True)
class Roles:
    """The flag that names each input in error messages (``--patient`` for a folder's files)."""

    wm: str = "--wm"
    gm: str = "--gm"
    csf: str = "--csf"
    scan: str = "--scan"
    recurrence: str = "--recurrence"


#: Every input of a patient folder is named ``--patient`` in messages.
FOLDER_ROLES = Roles("--patient", "--patient", "--patient", "--patient", "--patient")


@dataclass(frozen=True)
class PatientFiles:
    """The resolved inputs of one patient (before anything is read).

    Attributes
    ----------
    wm, gm : Path
    csf : Path or None
    scans : tuple of SegFile
        In the given order (:func:`check_scan_days` checks it).
    recurrence : SegFile or None
    labels : str or None
        A folder's ``scans.json`` ``labels`` (used when no convention is passed).
    source : str
        Folder or map file names, for provenance.
    roles : Roles
        How messages name each input.
    """

    wm: Path
    gm: Path
    csf: Path | None
    scans: tuple[SegFile, ...]
    recurrence: SegFile | None = None
    labels: str | None = None
    source: str = ""
    roles: Roles = Roles()


def parse_scan(spec: str) -> tuple[str, float]:
    """``"path/seg.nii.gz@120"`` -> ``("path/seg.nii.gz", 120.0)``.

    Raises
    ------
    InputError
        Without ``@DAY``, with an empty path or a day that is not a finite number.
    """
    path, sep, day = str(spec).rpartition("@")
    if not sep or not path:
        raise InputError(f"--scan: expected SEG.nii.gz@DAY (scan date in days), got {spec!r}")
    try:
        d = float(day)
    except ValueError:
        raise InputError(f"--scan: day must be a number in {spec!r}") from None
    if not math.isfinite(d):
        raise InputError(f"--scan: day must be finite in {spec!r}")
    return path, d


def parse_recurrence(spec: PathLike | None) -> SegFile | None:
    """``"SEG.nii.gz"`` (no date: day NaN) or ``"SEG.nii.gz@DAY"``; None passes through."""
    if spec is None:
        return None
    r = str(spec)
    if "@" in r:
        p, day = parse_scan(r)
        return SegFile(Path(p), day)
    return SegFile(Path(r), math.nan)


def _container_prefix(d: Path) -> str | None:
    hits = sorted(p.name[: -len("-wm.nii.gz")] for p in d.glob("*-wm.nii.gz"))
    hits += sorted(p.name[: -len("-wm.nii")] for p in d.glob("*-wm.nii"))
    if not hits:
        return None
    if len(set(hits)) > 1:
        raise InputError(f"--patient: {d} holds several container-layout patients "
                         f"({', '.join(sorted(set(hits)))}); give one folder per patient")
    return hits[0]


def _in_dir(d: Path, stem: str) -> Path:
    """``d/stem.nii.gz``, or ``d/stem.nii`` when only that exists."""
    gz = d / f"{stem}.nii.gz"
    plain = d / f"{stem}.nii"
    return plain if (not gz.exists() and plain.exists()) else gz


def _existing(p: Path) -> Path | None:
    return p if p.exists() else None


def _predictgbm_files(d: Path) -> PatientFiles:
    t = d / "tissue_segmentation"
    rec = _in_dir(d / "longitudinal", "recurrence_preop")
    return PatientFiles(wm=_in_dir(t, "wm_pbmap"), gm=_in_dir(t, "gm_pbmap"),
                        csf=_existing(_in_dir(t, "csf_pbmap")),
                        scans=(SegFile(_in_dir(d / "tumor_segmentation", "tumor_seg"), 0.0),),
                        recurrence=SegFile(rec, math.nan) if rec.exists() else None,
                        source=str(d), roles=FOLDER_ROLES)


def _container_files(d: Path, prefix: str) -> PatientFiles:
    return PatientFiles(wm=_in_dir(d, f"{prefix}-wm"), gm=_in_dir(d, f"{prefix}-gm"),
                        csf=_existing(_in_dir(d, f"{prefix}-csf")),
                        scans=(SegFile(_in_dir(d, f"{prefix}-tumorseg"), 0.0),),
                        source=str(d), roles=FOLDER_ROLES)


def folder_layout(patient_dir: PathLike) -> str:
    """Which layout a patient folder has: ``"predictgbm"``, ``"container:<id>"`` or
    ``"brats:<id>"`` (a BraTS case, :mod:`gbm.problem.segmentation.brats`, checked last; a
    folder with ``tissue_segmentation/`` and a BraTS segmentation but no ``tumor_segmentation/``
    is a BraTS case with maps).

    Raises
    ------
    InputError
        Not a folder, no layout, several container-layout patients or BraTS cases in it, or two
        candidate BraTS segmentations.
    """
    d = Path(patient_dir)
    if not d.is_dir():
        raise InputError(f"--patient: not a folder: {d}")
    if (d / "tissue_segmentation").is_dir():
        case = None if (d / "tumor_segmentation").is_dir() else find_case(d)
        return "predictgbm" if case is None else f"brats:{case.case_id}"
    prefix = _container_prefix(d)
    if prefix is not None:
        return f"container:{prefix}"
    case = find_case(d)
    if case is not None:
        return f"brats:{case.case_id}"
    raise InputError(f"--patient: {d} has neither the PredictGBM layout "
                     "(tissue_segmentation/wm_pbmap.nii.gz, tumor_segmentation/"
                     "tumor_seg.nii.gz) nor the container layout (<id>-wm.nii.gz, "
                     "<id>-gm.nii.gz, <id>-tumorseg.nii.gz) nor a BraTS case "
                     "(<id>-{t1n,t1c,t2w,t2f,seg}.nii.gz or <id>_{t1,t1ce,t2,flair,seg}.nii.gz)")


def _brats_files(d: Path) -> PatientFiles:
    """A BraTS case with tissue maps in ``tissue_segmentation/`` (PredictGBM names); without them
    an InputError that says how to make them."""
    case = brats_case(d)
    t = d / "tissue_segmentation"
    wm, gm = _in_dir(t, "wm_pbmap"), _in_dir(t, "gm_pbmap")
    if not (wm.exists() and gm.exists()):
        raise InputError(f"--patient: {d} is a BraTS case ({case.seg.name}) without tissue maps; "
                         f"make them with `gbm tissue --case {d} --out MAPS` (optional extra "
                         "gbm[tissue]) and fit MAPS")
    return PatientFiles(wm=wm, gm=gm, csf=_existing(_in_dir(t, "csf_pbmap")),
                        scans=(SegFile(case.seg, 0.0),), labels=case.labels, source=str(d),
                        roles=FOLDER_ROLES)


def folder_files(patient_dir: PathLike) -> PatientFiles:
    """The files of a patient folder (module header), ``scans.json`` applied.  ``source`` is the
    folder as given."""
    d = Path(patient_dir)
    layout = folder_layout(d)
    kind, _, ident = layout.partition(":")
    files = (_predictgbm_files(d) if kind == "predictgbm"
             else _brats_files(d) if kind == "brats" else _container_files(d, ident))
    files = replace(files, source=str(patient_dir))
    sj = d / "scans.json"
    return _with_scans_json(files, sj, d) if sj.exists() else files


def _json_entry(e: Any, what: str, path: Path, d: Path) -> SegFile:
    if not (isinstance(e, dict) and isinstance(e.get("file"), str)):
        raise InputError(f"--patient: {path}: each {what} needs a \"file\" (and \"day\")")
    day = e.get("day", math.nan if what == "recurrence" else None)
    if isinstance(day, bool) or not isinstance(day, (int, float)):
        raise InputError(f"--patient: {path}: {what} {e['file']} needs a numeric \"day\"")
    return SegFile(d / e["file"], float(day))


def _with_scans_json(files: PatientFiles, path: Path, d: Path) -> PatientFiles:
    """``files`` with the scans (and recurrence, labels, when listed) of ``scans.json``."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--patient: cannot read {path} as JSON ({str(e).splitlines()[0]})") \
            from None
    if not isinstance(obj, dict) or not isinstance(obj.get("scans"), list) or not obj["scans"]:
        raise InputError(f"--patient: {path} must hold {{\"scans\": [{{\"file\": ..., "
                         "\"day\": ...}, ...]}")
    files = replace(files, scans=tuple(_json_entry(e, "scan", path, d) for e in obj["scans"]))
    if obj.get("recurrence") is not None:
        files = replace(files, recurrence=_json_entry(obj["recurrence"], "recurrence", path, d))
    if obj.get("labels") is not None:
        files = replace(files, labels=str(obj["labels"]))
    return files


def flag_files(wm: PathLike | None, gm: PathLike | None, csf: PathLike | None,
               scans: Sequence[str]) -> PatientFiles:
    """The files given as flags: maps and ``"SEG.nii.gz@DAY"`` scans (:func:`parse_scan`)."""
    if wm is None or gm is None:
        raise InputError("give --wm and --gm (and --scan SEG@DAY), or --patient DIR")
    if not scans:
        raise InputError("give at least one --scan SEG.nii.gz@DAY")
    segs = []
    for s in scans:
        p, day = parse_scan(s)
        segs.append(SegFile(Path(p), day))
    return PatientFiles(wm=Path(wm), gm=Path(gm), csf=Path(csf) if csf is not None else None,
                        scans=tuple(segs),
                        source=f"{wm}, {gm}" + (f", {csf}" if csf is not None else ""))


def patient_files(*, wm: PathLike | None = None, gm: PathLike | None = None,
                  csf: PathLike | None = None, scans: Any = (),
                  patient_dir: PathLike | None = None,
                  recurrence: PathLike | None = None) -> PatientFiles:
    """Resolve :func:`load_patient`'s file arguments: a folder or flags, plus a ``recurrence``
    flag that overrides a folder's recurrence (then messages name it ``--recurrence``)."""
    if isinstance(scans, str):
        scans = [scans]
    rec = parse_recurrence(recurrence)
    if patient_dir is None:
        files = flag_files(wm, gm, csf, scans)
        return replace(files, recurrence=rec)
    given = [n for n, v in (("--wm", wm), ("--gm", gm), ("--csf", csf),
                            ("--scan", scans or None)) if v is not None]
    if given:
        raise InputError(f"--patient: do not combine with {', '.join(given)} (the folder "
                         "provides the maps and segmentations)")
    files = folder_files(patient_dir)
    if rec is None:
        return files
    return replace(files, recurrence=rec, roles=replace(files.roles, recurrence="--recurrence"))


def check_scan_days(files: PatientFiles) -> None:
    """Scan days must be finite and strictly increasing."""
    name = files.roles.scan
    for s in files.scans:
        if not math.isfinite(s.day):
            raise InputError(f"{name}: day of {s.path} must be finite, got {s.day}")
    for a, b in itertools.pairwise(files.scans):
        if not b.day > a.day:
            raise InputError(f"{name}: scan days must be strictly increasing, got "
                             f"{a.day:g} ({a.path}) then {b.day:g} ({b.path})")


# ---------------------------------------------------------------- reading the images

@dataclass(frozen=True, eq=False)
class GridRef:
    """The grid every image must share: the first map's shape and affine, and who set it."""

    name: str
    path: str
    shape: tuple[int, ...]
    affine: np.ndarray

    def check(self, name: str, path: str, shape: tuple[int, ...], affine: np.ndarray) -> None:
        """Raise :class:`InputError` unless (shape, affine) is this grid (affine within
        :data:`AFFINE_ATOL` mm)."""
        if tuple(shape) != tuple(self.shape):
            raise InputError(f"{name}: {path} is on another grid (shape {tuple(shape)} after RAS "
                             f"reorientation) than {self.name} {self.path} (shape "
                             f"{tuple(self.shape)})")
        if not np.allclose(affine, self.affine, atol=AFFINE_ATOL):
            diff = float(np.abs(np.asarray(affine) - np.asarray(self.affine)).max())
            raise InputError(f"{name}: {path} has another affine than {self.name} {self.path} "
                             f"(max difference {diff:.4g}); segmentations and maps must share "
                             "one grid")


@dataclass(frozen=True, eq=False)
class TissueMaps:
    """Tissue fractions in [0, 1] on one grid, and that grid."""

    wm: np.ndarray
    gm: np.ndarray
    csf: np.ndarray | None
    grid: GridRef

    @property
    def affine(self) -> np.ndarray:
        return self.grid.affine


@dataclass(frozen=True, eq=False)
class RawSeg:
    """A segmentation as read (labels unscaled), before its convention is known."""

    path: Path
    day: float
    labels: np.ndarray


def _fraction(name: str, path: str, a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(f"{name}: {path} values must be tissue fractions in [0, 1] (or uint8 "
                         f"0..255), found range [{lo:.4g}, {hi:.4g}]")
    return np.clip(a, 0.0, 1.0)


def read_maps(files: PatientFiles) -> TissueMaps:
    """Read wm, gm (and csf) as fractions; gm and csf must be on wm's grid."""
    r = files.roles
    w, aff = io.load_nifti(files.wm, r.wm)
    grid = GridRef(r.wm, str(files.wm), w.shape, aff)
    w = _fraction(r.wm, str(files.wm), w)
    g, aff_g = io.load_nifti(files.gm, r.gm)
    grid.check(r.gm, str(files.gm), g.shape, aff_g)
    g = _fraction(r.gm, str(files.gm), g)
    c = None
    if files.csf is not None:
        c, aff_c = io.load_nifti(files.csf, r.csf)
        grid.check(r.csf, str(files.csf), c.shape, aff_c)
        c = _fraction(r.csf, str(files.csf), c)
    return TissueMaps(w, g, c, grid)


def _read_seg(f: SegFile, name: str, grid: GridRef) -> RawSeg:
    lab, aff = io.load_labels(f.path, name)
    grid.check(name, str(f.path), lab.shape, aff)
    return RawSeg(f.path, f.day, lab)


def read_segmentations(files: PatientFiles, grid: GridRef) -> tuple[list[RawSeg], RawSeg | None]:
    """Read the scans and the recurrence (labels unscaled) on ``grid``."""
    scans = [_read_seg(f, files.roles.scan, grid) for f in files.scans]
    rec = (None if files.recurrence is None
           else _read_seg(files.recurrence, files.roles.recurrence, grid))
    return scans, rec


# ---------------------------------------------------------------- labels and regions

def label_convention(scans: Sequence[RawSeg], recurrence: RawSeg | None, roles: Roles,
                     given: LabelConvention | None) -> LabelConvention:
    """Check ``given`` (or detect a convention) over the label values of all segmentations.

    Raises
    ------
    InputError
        A segmentation without any non-zero label, or the errors of
        :func:`~gbm.problem.segmentation.labels.detect_convention`.
    """
    per_file = [(roles.scan, s) for s in scans]
    if recurrence is not None:
        per_file.append((roles.recurrence, recurrence))
    values: set[int] = set()
    for what, s in per_file:
        vals = set(np.flatnonzero(np.bincount(s.labels.ravel())).tolist()) - {0}
        if not vals:
            raise InputError(f"{what}: no tumour labels in {s.path} (all voxels are 0)")
        values |= vals
    names = (", ".join(str(s.path) for _, s in per_file) if len(per_file) < 4
             else f"{len(per_file)} segmentations ({per_file[0][1].path}, ...)")
    return detect_convention(values, given, names)


def make_scans(raw: Sequence[RawSeg], conv: LabelConvention, name: str) -> tuple[Scan, ...]:
    """Split each scan into regions; a scan with no whole tumour (cavity only) is refused."""
    out = []
    for s in raw:
        reg = regions(s.labels, conv)
        if not reg.whole.any():
            raise InputError(f"{name}: no tumour labels in {s.path} (only the resection "
                             "cavity is labelled)")
        out.append(Scan(day=float(s.day), path=str(s.path), labels=s.labels, regions=reg))
    return tuple(out)


def make_recurrence(raw: RawSeg | None, conv: LabelConvention, name: str) -> Scan | None:
    """The recurrence's regions; one with no tumour outside the cavity is refused."""
    if raw is None:
        return None
    reg = regions(raw.labels, conv)
    if not reg.tumour.any():
        raise InputError(f"{name}: no tumour labels in {raw.path} (only the resection cavity "
                         "is labelled)")
    return Scan(day=float(raw.day), path=str(raw.path), labels=raw.labels, regions=reg)


# ---------------------------------------------------------------- the brain

def tumour_as_white_matter(maps: TissueMaps, scans: Sequence[Scan]) -> TissueMaps:
    """``--tumour-tissue wm``: wm = 1, gm = 0, csf = 0 in the union of the scans' whole tumours
    (new arrays; ``maps`` is not modified)."""
    union = whole_union(s.regions for s in scans)
    w, g = maps.wm.copy(), maps.gm.copy()
    w[union], g[union] = 1.0, 0.0
    c = None
    if maps.csf is not None:
        c = maps.csf.copy()
        c[union] = 0.0
    return TissueMaps(w, g, c, maps.grid)


def check_inside_brain(scans: Sequence[Scan], mask: np.ndarray, name: str) -> None:
    """Refuse a scan whose whole tumour lies less than half inside the brain ``mask``."""
    for s in scans:
        n = int(s.regions.whole.sum())
        inside = int((s.regions.whole & mask).sum())
        if inside < 0.5 * n:
            raise InputError(f"{name}: {s.path}: tumour lies outside the brain mask "
                             f"({100.0 * inside / n:.1f} % inside); for maps segmented from the "
                             "patient's own scan use --tumour-tissue wm")


def load_patient(*, wm: PathLike | None = None, gm: PathLike | None = None,
                 csf: PathLike | None = None, scans: Any = (),
                 patient_dir: PathLike | None = None,
                 labels: str | LabelConvention | None = None, tumour_tissue: str | None = None,
                 recurrence: PathLike | None = None) -> PatientData:
    """Load and validate a patient's maps and segmentations.

    Parameters
    ----------
    wm, gm, csf : path, optional
        Tissue maps (``csf`` optional); not with ``patient_dir``.
    scans : sequence of str
        ``"SEG.nii.gz@DAY"`` strings (see :func:`parse_scan`); not with ``patient_dir``.
    patient_dir : path, optional
        PredictGBM or container layout folder (module header).
    labels : str or LabelConvention, optional
        Convention name, custom mapping or None/"auto" to detect.
    tumour_tissue : {None, "wm"}
        ``"wm"``: treat the union of the scans' whole tumours as white matter.
    recurrence : path, optional
        Follow-up segmentation, ``"SEG.nii.gz"`` or ``"SEG.nii.gz@DAY"``; overrides a folder's.

    Raises
    ------
    InputError
        Missing/unreadable files, grids or affines that differ, scan days not strictly increasing,
        unknown/ambiguous labels, an empty segmentation, a tumour outside the brain mask.
    """
    if tumour_tissue not in TUMOUR_TISSUES:
        raise InputError(f"--tumour-tissue must be wm (or not given), got {tumour_tissue!r}")
    files = patient_files(wm=wm, gm=gm, csf=csf, scans=scans, patient_dir=patient_dir,
                          recurrence=recurrence)
    if labels is None:
        labels = files.labels
    given = labels if isinstance(labels, LabelConvention) else parse_convention(labels)
    check_scan_days(files)
    maps = read_maps(files)
    raw, rec_raw = read_segmentations(files, maps.grid)
    conv = label_convention(raw, rec_raw, files.roles, given)
    scan_objs = make_scans(raw, conv, files.roles.scan)
    rec = make_recurrence(rec_raw, conv, files.roles.recurrence)
    if tumour_tissue == "wm":
        maps = tumour_as_white_matter(maps, scan_objs)
    mask = brain_mask(maps.wm, maps.gm, maps.csf)
    check_inside_brain(scan_objs, mask, files.roles.scan)
    return PatientData(wm=np.ascontiguousarray(maps.wm), gm=np.ascontiguousarray(maps.gm),
                       csf=None if maps.csf is None else np.ascontiguousarray(maps.csf),
                       affine=maps.affine, scans=scan_objs, convention=conv, recurrence=rec,
                       source=files.source, tumour_tissue=tumour_tissue, mask=mask)
