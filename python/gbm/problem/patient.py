"""A patient's data: tissue maps, tumour segmentations at scan dates, an optional recurrence.

Inputs (:func:`load_patient`)
-----------------------------
* Flags: ``wm``, ``gm`` [, ``csf``] tissue maps and one or more ``scans`` ``"SEG.nii.gz@DAY"``.
* A patient folder, in one of two layouts:

  - PredictGBM: ``tissue_segmentation/{wm,gm,csf}_pbmap.nii.gz`` (csf optional),
    ``tumor_segmentation/tumor_seg.nii.gz`` (one scan, day 0), optional
    ``longitudinal/recurrence_preop.nii.gz`` (the recurrence, unless one is passed);
  - container: ``<id>-{wm,gm,csf,tumorseg}.nii.gz`` (e.g. ``00000-wm.nii.gz``; csf optional).

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
values of all scans and the recurrence (:mod:`gbm.problem.labels`).

``tumour_tissue="wm"`` (``--tumour-tissue wm``) is for maps segmented from the patient's own scan,
where the tumour is labelled CSF or missing: in the union of the whole-tumour regions of all scans
it sets wm = 1, gm = 0, csf = 0.  Atlas-registered maps (PredictGBM's default) show healthy tissue
under the tumour and are used as they are.  A scan whose whole tumour lies less than half inside the
brain mask is refused.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import io
from ..errors import InputError
from ..geometry import Geometry, brain_mask, from_maps
from .labels import LabelConvention, Regions, detect_convention, parse_convention, regions

#: Accepted values of ``tumour_tissue``.
TUMOUR_TISSUES = (None, "wm")
#: Affine agreement tolerance (mm), as in gbm.geometry.load_geometry.
AFFINE_ATOL = 1e-3


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
        """Binary brain mask on the full grid (:func:`gbm.geometry.brain_mask`)."""
        return brain_mask(self.wm, self.gm, self.csf)

    def geometry(self, slice_index: int | None = None, margin: int = 5) -> Geometry:
        """The cropped :class:`~gbm.geometry.Geometry` of these maps (no phase field yet)."""
        return from_maps(self.wm, self.gm, self.affine, self.csf, slice_index=slice_index,
                         margin=margin, source=self.source)


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


def _fraction(name: str, path: str, a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(f"{name}: {path} values must be tissue fractions in [0, 1] (or uint8 "
                         f"0..255), found range [{lo:.4g}, {hi:.4g}]")
    return np.clip(a, 0.0, 1.0)


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


def _folder_inputs(patient_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Resolve the files of a patient folder (see the module header)."""
    d = Path(patient_dir)
    if not d.is_dir():
        raise InputError(f"--patient: not a folder: {d}")
    out: dict[str, Any] = {"recurrence": None, "labels": None}
    if (d / "tissue_segmentation").is_dir():
        t = d / "tissue_segmentation"
        out["wm"], out["gm"] = _in_dir(t, "wm_pbmap"), _in_dir(t, "gm_pbmap")
        csf = _in_dir(t, "csf_pbmap")
        out["csf"] = csf if csf.exists() else None
        out["scans"] = [(_in_dir(d / "tumor_segmentation", "tumor_seg"), 0.0)]
        rec = _in_dir(d / "longitudinal", "recurrence_preop")
        if rec.exists():
            out["recurrence"] = (rec, math.nan)
    else:
        prefix = _container_prefix(d)
        if prefix is None:
            raise InputError(f"--patient: {d} has neither the PredictGBM layout "
                             "(tissue_segmentation/wm_pbmap.nii.gz, tumor_segmentation/"
                             "tumor_seg.nii.gz) nor the container layout (<id>-wm.nii.gz, "
                             "<id>-gm.nii.gz, <id>-tumorseg.nii.gz)")
        out["wm"], out["gm"] = _in_dir(d, f"{prefix}-wm"), _in_dir(d, f"{prefix}-gm")
        csf = _in_dir(d, f"{prefix}-csf")
        out["csf"] = csf if csf.exists() else None
        out["scans"] = [(_in_dir(d, f"{prefix}-tumorseg"), 0.0)]
    sj = d / "scans.json"
    if sj.exists():
        out.update(_scans_json(sj, d))
    return out


def _scans_json(path: Path, d: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--patient: cannot read {path} as JSON ({str(e).splitlines()[0]})") \
            from None

    def entry(e: Any, what: str) -> tuple[Path, float]:
        if not (isinstance(e, dict) and isinstance(e.get("file"), str)):
            raise InputError(f"--patient: {path}: each {what} needs a \"file\" (and \"day\")")
        day = e.get("day", math.nan if what == "recurrence" else None)
        if isinstance(day, bool) or not isinstance(day, (int, float)):
            raise InputError(f"--patient: {path}: {what} {e['file']} needs a numeric \"day\"")
        return d / e["file"], float(day)

    if not isinstance(obj, dict) or not isinstance(obj.get("scans"), list) or not obj["scans"]:
        raise InputError(f"--patient: {path} must hold {{\"scans\": [{{\"file\": ..., "
                         "\"day\": ...}, ...]}")
    out: dict[str, Any] = {"scans": [entry(e, "scan") for e in obj["scans"]]}
    if obj.get("recurrence") is not None:
        out["recurrence"] = entry(obj["recurrence"], "recurrence")
    if obj.get("labels") is not None:
        out["labels"] = str(obj["labels"])
    return out


def _same_grid(name: str, path: str, shape: tuple[int, ...], affine: np.ndarray,
               ref: tuple[str, str, tuple[int, ...], np.ndarray]) -> None:
    rname, rpath, rshape, raff = ref
    if tuple(shape) != tuple(rshape):
        raise InputError(f"{name}: {path} is on another grid (shape {tuple(shape)} after RAS "
                         f"reorientation) than {rname} {rpath} (shape {tuple(rshape)})")
    if not np.allclose(affine, raff, atol=AFFINE_ATOL):
        diff = float(np.abs(np.asarray(affine) - np.asarray(raff)).max())
        raise InputError(f"{name}: {path} has another affine than {rname} {rpath} (max "
                         f"difference {diff:.4g}); segmentations and maps must share one grid")


def load_patient(*, wm: str | os.PathLike[str] | None = None,
                 gm: str | os.PathLike[str] | None = None,
                 csf: str | os.PathLike[str] | None = None, scans: Any = (),
                 patient_dir: str | os.PathLike[str] | None = None,
                 labels: str | LabelConvention | None = None, tumour_tissue: str | None = None,
                 recurrence: str | os.PathLike[str] | None = None) -> PatientData:
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
    if isinstance(scans, str):
        scans = [scans]
    rec_spec: tuple[Path, float] | None = None
    if recurrence is not None:
        r = str(recurrence)
        if "@" in r:
            p, day = parse_scan(r)
            rec_spec = (Path(p), day)
        else:
            rec_spec = (Path(r), math.nan)
    if patient_dir is not None:
        given = [n for n, v in (("--wm", wm), ("--gm", gm), ("--csf", csf),
                                ("--scan", scans or None)) if v is not None]
        if given:
            raise InputError(f"--patient: do not combine with {', '.join(given)} (the folder "
                             "provides the maps and segmentations)")
        f = _folder_inputs(patient_dir)
        names = {"wm": "--patient", "gm": "--patient", "csf": "--patient",
                 "scan": "--patient", "recurrence": "--patient"}
        wm_p, gm_p, csf_p = f["wm"], f["gm"], f["csf"]
        scan_specs = f["scans"]
        if rec_spec is None:
            rec_spec = f["recurrence"]
        else:
            names["recurrence"] = "--recurrence"
        if labels is None and f["labels"] is not None:
            labels = f["labels"]
        source = str(patient_dir)
    else:
        if wm is None or gm is None:
            raise InputError("give --wm and --gm (and --scan SEG@DAY), or --patient DIR")
        if not scans:
            raise InputError("give at least one --scan SEG.nii.gz@DAY")
        names = {"wm": "--wm", "gm": "--gm", "csf": "--csf", "scan": "--scan",
                 "recurrence": "--recurrence"}
        wm_p, gm_p, csf_p = Path(wm), Path(gm), (Path(csf) if csf is not None else None)
        scan_specs = []
        for s in scans:
            p, day = parse_scan(s)
            scan_specs.append((Path(p), day))
        source = f"{wm}, {gm}" + (f", {csf}" if csf is not None else "")
    conv_given = labels if isinstance(labels, LabelConvention) else parse_convention(labels)

    for (p, d) in scan_specs:
        if not math.isfinite(d):
            raise InputError(f"{names['scan']}: day of {p} must be finite, got {d}")
    for (p0, d0), (p1, d1) in itertools.pairwise(scan_specs):
        if not d1 > d0:
            raise InputError(f"{names['scan']}: scan days must be strictly increasing, got "
                             f"{d0:g} ({p0}) then {d1:g} ({p1})")

    w, aff = io.load_nifti(wm_p, names["wm"])
    ref = (names["wm"], str(wm_p), w.shape, aff)
    w = _fraction(names["wm"], str(wm_p), w)
    g, aff_g = io.load_nifti(gm_p, names["gm"])
    _same_grid(names["gm"], str(gm_p), g.shape, aff_g, ref)
    g = _fraction(names["gm"], str(gm_p), g)
    c = None
    if csf_p is not None:
        c, aff_c = io.load_nifti(csf_p, names["csf"])
        _same_grid(names["csf"], str(csf_p), c.shape, aff_c, ref)
        c = _fraction(names["csf"], str(csf_p), c)

    raw: list[tuple[Path, float, np.ndarray]] = []
    for p, d in scan_specs:
        lab, aff_s = io.load_labels(p, names["scan"])
        _same_grid(names["scan"], str(p), lab.shape, aff_s, ref)
        raw.append((p, d, lab))
    rec_raw = None
    if rec_spec is not None:
        lab, aff_r = io.load_labels(rec_spec[0], names["recurrence"])
        _same_grid(names["recurrence"], str(rec_spec[0]), lab.shape, aff_r, ref)
        rec_raw = (rec_spec[0], rec_spec[1], lab)

    per_file = [(names["scan"], p, lab) for p, _, lab in raw]
    if rec_raw is not None:
        per_file.append((names["recurrence"], rec_raw[0], rec_raw[2]))
    values: set[int] = set()
    for what, p, lab in per_file:
        vals = set(np.flatnonzero(np.bincount(lab.ravel())).tolist()) - {0}
        if not vals:
            raise InputError(f"{what}: no tumour labels in {p} (all voxels are 0)")
        values |= vals
    files = (", ".join(str(p) for _, p, _ in per_file) if len(per_file) < 4
             else f"{len(per_file)} segmentations ({per_file[0][1]}, ...)")
    conv = detect_convention(values, conv_given, files)

    scan_objs = []
    for p, d, lab in raw:
        reg = regions(lab, conv)
        if not reg.whole.any():
            raise InputError(f"{names['scan']}: no tumour labels in {p} (only the resection "
                             "cavity is labelled)")
        scan_objs.append(Scan(day=float(d), path=str(p), labels=lab, regions=reg))
    rec_obj = None
    if rec_raw is not None:
        reg = regions(rec_raw[2], conv)
        if not reg.tumour.any():
            raise InputError(f"{names['recurrence']}: no tumour labels in {rec_raw[0]} (only the "
                             "resection cavity is labelled)")
        rec_obj = Scan(day=float(rec_raw[1]), path=str(rec_raw[0]), labels=rec_raw[2],
                       regions=reg)

    if tumour_tissue == "wm":
        union = np.zeros(w.shape, dtype=bool)
        for s in scan_objs:
            union |= s.regions.whole
        w = w.copy()
        g = g.copy()
        w[union], g[union] = 1.0, 0.0
        if c is not None:
            c = c.copy()
            c[union] = 0.0
    mask = brain_mask(w, g, c)
    for s in scan_objs:
        n = int(s.regions.whole.sum())
        inside = int((s.regions.whole & mask).sum())
        if inside < 0.5 * n:
            raise InputError(f"{names['scan']}: {s.path}: tumour lies outside the brain mask "
                             f"({100.0 * inside / n:.1f} % inside); for maps segmented from the "
                             "patient's own scan use --tumour-tissue wm")
    return PatientData(wm=np.ascontiguousarray(w), gm=np.ascontiguousarray(g),
                       csf=None if c is None else np.ascontiguousarray(c), affine=aff,
                       scans=tuple(scan_objs), convention=conv, recurrence=rec_obj,
                       source=source, tumour_tissue=tumour_tissue)
