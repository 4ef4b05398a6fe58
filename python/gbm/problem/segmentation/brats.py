"""BraTS case folders: which files hold the MR images and the tumour segmentation of one case.

BraTS ships one folder per case, skull-stripped, co-registered, 1 mm, 240 x 240 x 155, LPS headers,
and no tissue maps.  Two namings, any case id:

* 2021 (and the 2018-2020 releases): ``<id>_{t1,t1ce,t2,flair,seg}.nii.gz``
  (e.g. ``BraTS2021_00000_t1ce.nii.gz``); labels 1 necrosis, 2 edema, 4 enhancing (``brats2021``);
* 2023 on (GLI, MEN, MET, PED, SSA, the 2024 post-treatment set): ``<id>-{t1n,t1c,t2w,t2f,seg}.nii.gz``
  (e.g. ``BraTS-GLI-00000-000-t1c.nii.gz``); labels 1, 2, 3 (= enhancing), with 4 = resection
  cavity in 2024 post-treatment (detected from the label set, :mod:`gbm.problem.segmentation.labels`).

``.nii`` is accepted as well as ``.nii.gz``.  Only the folder's own files count (no recursion), so a
case folder may hold other sub-folders (``truth/`` of ``gbm synth --brats``, for example).

:func:`find_case` returns a :class:`BratsCase` or None (not a BraTS folder); :func:`brats_case`
raises :class:`~gbm.errors.InputError` for a folder that is not one case: several case ids, two
candidate segmentations (both namings, or ``.nii`` beside ``.nii.gz``), no segmentation, images
without one.  Nothing here reads an image.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from gbm.errors import InputError

#: naming -> (separator, {file suffix: role}); roles: t1 (native), t1c, t2, flair, seg.
NAMINGS: dict[str, tuple[str, dict[str, str]]] = {
    "brats2021": ("_", {"t1": "t1", "t1ce": "t1c", "t2": "t2", "flair": "flair", "seg": "seg"}),
    "brats2023": ("-", {"t1n": "t1", "t1c": "t1c", "t2w": "t2", "t2f": "flair", "seg": "seg"}),
}
#: Image roles, in the order messages list them.
ROLES = ("t1", "t1c", "t2", "flair", "seg")
#: The label convention each naming implies when none is given (None: detect from the labels).
NAMING_LABELS = {"brats2021": "brats2021", "brats2023": None}

_PATTERN = re.compile(r"^(?P<id>.+?)(?P<sep>[_-])(?P<suffix>t1ce|t1n|t1c|t2w|t2f|t1|t2|flair|seg)"
                      r"\.nii(?:\.gz)?$")


@dataclass(frozen=True)
class BratsFile:
    """One file of a BraTS naming: case id, naming, role and path."""

    case_id: str
    naming: str
    role: str
    path: Path


@dataclass(frozen=True)
class BratsCase:
    """The files of one BraTS case.

    Attributes
    ----------
    folder : Path
    case_id : str
        The id before the modality suffix (``BraTS2021_00000``, ``BraTS-GLI-00000-000``).
    naming : str
        ``"brats2021"`` or ``"brats2023"`` (see the module header).
    seg : Path
        The tumour segmentation.
    t1, t1c, t2, flair : Path or None
        Native T1, contrast-enhanced T1, T2, FLAIR, where present.
    """

    folder: Path
    case_id: str
    naming: str
    seg: Path
    t1: Path | None = None
    t1c: Path | None = None
    t2: Path | None = None
    flair: Path | None = None

    @property
    def labels(self) -> str | None:
        """The label convention the naming implies (None: detect it from the labels)."""
        return NAMING_LABELS[self.naming]

    def image(self, role: str) -> Path | None:
        """The path of ``role`` (``"t1"``, ``"t1c"``, ``"t2"``, ``"flair"``), or None."""
        if role not in ROLES[:-1]:
            raise KeyError(role)
        return getattr(self, role)


def parse_name(name: str) -> BratsFile | None:
    """The BraTS reading of one file name (no folder), or None if it follows neither naming."""
    m = _PATTERN.match(name)
    if m is None:
        return None
    for naming, (sep, suffixes) in NAMINGS.items():
        if m["sep"] == sep and m["suffix"] in suffixes:
            return BratsFile(m["id"], naming, suffixes[m["suffix"]], Path(name))
    return None


def _files(d: Path) -> list[BratsFile]:
    out = []
    for name in sorted(os.listdir(d)):
        f = parse_name(name)
        if f is not None and (d / name).is_file():
            out.append(BratsFile(f.case_id, f.naming, f.role, d / name))
    return out


def find_case(folder: str | os.PathLike[str]) -> BratsCase | None:
    """The BraTS case in ``folder``, or None when no file there follows a BraTS naming.

    Raises
    ------
    InputError
        BraTS-named files that are not exactly one case (see :func:`brats_case`).
    """
    d = Path(folder)
    if not d.is_dir():
        return None
    files = _files(d)
    if not files:
        return None
    segs = [f for f in files if f.role == "seg"]
    if len(segs) > 1:
        raise InputError(f"--patient: {d} holds {len(segs)} candidate segmentations ("
                         f"{', '.join(f.path.name for f in segs)}); keep one per case folder")
    if not segs:
        raise InputError(f"--patient: {d} holds BraTS images ({files[0].path.name}, ...) but no "
                         "segmentation (<id>-seg.nii.gz or <id>_seg.nii.gz)")
    (seg,) = segs
    others = sorted({f.case_id for f in files} - {seg.case_id})
    if others:
        raise InputError(f"--patient: {d} holds files of several BraTS cases ({seg.case_id}, "
                         f"{', '.join(others)}); give one folder per case")
    images: dict[str, Path] = {}
    for f in files:
        if f.role == "seg":
            continue
        if f.naming != seg.naming:
            raise InputError(f"--patient: {d} mixes BraTS namings ({f.path.name} beside "
                             f"{seg.path.name}); use one naming per case")
        if f.role in images:
            raise InputError(f"--patient: {d} holds two {f.role} images ({images[f.role].name}, "
                             f"{f.path.name}); keep one")
        images[f.role] = f.path
    return BratsCase(folder=d, case_id=seg.case_id, naming=seg.naming, seg=seg.path, **images)


def brats_case(folder: str | os.PathLike[str]) -> BratsCase:
    """The BraTS case in ``folder``; an :class:`InputError` when it is not one."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"--patient: not a folder: {d}")
    case = find_case(d)
    if case is None:
        raise InputError(f"--patient: {d} is not a BraTS case folder (expected "
                         "<id>-{t1n,t1c,t2w,t2f,seg}.nii.gz or <id>_{t1,t1ce,t2,flair,seg}.nii.gz)")
    return case
