"""Tissue maps made on the way: ``gbm fit --patient CASE`` (and ``gbm cohort`` on BraTS folders) for a
BraTS case folder without maps.

:func:`case_maps` runs ``gbm tissue`` (:func:`gbm.jobs.tissue.run.make_tissue`, the default preset)
into ``.<out>.tissue`` beside the fit's output folder and returns a :class:`CaseMaps`; the fit reads
the maps from there (:meth:`CaseMaps.fit_config`), copies the folder into its output as ``tissue/``
(:func:`copy_folder`) and removes the cache when it completes (:meth:`CaseMaps.remove_cache`).
With ``resume``, maps made earlier for the same case files and settings (``source.json``: a
fingerprint of the case's files, size and mtime, and of the tissue settings) are reused, from the
cache of an interrupted run or from the ``tissue/`` of a finished one.  A case that is not a BraTS
folder, or one with maps in ``tissue_segmentation/``, needs none (None).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbm import io
from gbm.jobs.tissue.config import DEFAULT_PRESET, TissueConfig
from gbm.jobs.tissue.run import make_tissue
from gbm.problem.segmentation.brats import BratsCase, find_case
from gbm.problem.segmentation.patient import folder_layout

#: The file in a maps folder that says what it was made from.
SOURCE_FILE = "source.json"
#: Where a finished fit keeps its maps.
FIT_TISSUE_DIR = "tissue"


@dataclass(frozen=True)
class CaseMaps:
    """Maps of a BraTS case for a fit.

    Attributes
    ----------
    case : str
        The case folder as given.
    folder : Path
        A ``gbm tissue`` folder (PredictGBM layout) with the maps and the segmentation.
    cache : Path
        ``.<out>.tissue`` beside the fit's output.
    labels : str or None
        The label convention the case's naming implies.
    made : bool
        Made by this run (False: reused with ``resume``).
    """

    case: str
    folder: Path
    cache: Path
    labels: str | None
    made: bool

    def fit_config(self, cfg: Any) -> Any:
        """``cfg`` (a :class:`gbm.jobs.fit.FitConfig`) reading the maps folder instead of the
        case, with the naming's label convention unless one is given."""
        return dataclasses.replace(cfg, patient=str(self.folder), labels=cfg.labels or self.labels)

    def relabel(self, inputs: Any) -> Any:
        """The fit's inputs (:class:`gbm.jobs.fit.steps.Inputs`) with the patient's ``source``
        naming the case and where its maps went."""
        src = f"{self.case} (BraTS case; tissue maps by gbm tissue, in {FIT_TISSUE_DIR}/)"
        return dataclasses.replace(inputs, patient=dataclasses.replace(inputs.patient, source=src))

    def remove_cache(self) -> None:
        """Delete the cache (the fit completed and copied it)."""
        shutil.rmtree(self.cache, ignore_errors=True)


def needs_maps(patient_dir: str | Path | None) -> BratsCase | None:
    """The BraTS case of ``patient_dir`` when it is one without tissue maps, else None."""
    if patient_dir is None or not Path(patient_dir).is_dir():
        return None
    if not folder_layout(patient_dir).startswith("brats:"):
        return None
    t = Path(patient_dir) / "tissue_segmentation"
    if (t / "wm_pbmap.nii.gz").exists() or (t / "wm_pbmap.nii").exists():
        return None
    return find_case(patient_dir)


def _fingerprint(case: BratsCase, cfg: TissueConfig) -> str:
    files = sorted(p for p in case.folder.iterdir() if p.is_file())
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    key = json.dumps({"files": stamp, "settings": dataclasses.asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def _valid(folder: Path, fingerprint: str) -> bool:
    try:
        got = json.loads((folder / SOURCE_FILE).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return False
    return got == fingerprint and (folder / "tissue_segmentation" / "wm_pbmap.nii.gz").is_file()


def case_maps(patient_dir: str | Path | None, out: str | Path, resume: bool = False,
              labels: str | None = None, threads: int | None = None,
              printer: Callable[[str], None] | None = None,
              preset: str = DEFAULT_PRESET) -> CaseMaps | None:
    """Maps for a fit of ``patient_dir`` into ``out`` (module header); None when none are needed.

    Raises
    ------
    InputError
        The case's images are bad (:mod:`gbm.jobs.tissue.inputs`) or the extra ``gbm[tissue]``
        is missing.
    """
    case = needs_maps(patient_dir)
    if case is None:
        return None
    o = Path(out)
    cache = o.parent / f".{o.name}.tissue"
    cfg = TissueConfig(case=str(case.folder), labels=labels, preset=preset,
                       threads=threads)
    fp = _fingerprint(case, cfg)
    common = {"case": str(patient_dir), "cache": cache, "labels": labels or case.labels}
    if resume:
        for folder in (cache, o / FIT_TISSUE_DIR):
            if _valid(folder, fp):
                return CaseMaps(folder=folder, made=False, **common)
    if printer is not None:
        printer(f"gbm fit: {case.folder} is a BraTS case without tissue maps: making them "
                f"(gbm tissue --preset {cfg.preset}) into {cache}")
    make_tissue(cfg, cache, force=True, printer=printer)
    io.write_json_atomic(cache / SOURCE_FILE, {"case": str(case.folder), "fingerprint": fp,
                                               "settings": dataclasses.asdict(cfg)}, force=True)
    return CaseMaps(folder=cache, made=True, **common)


def copy_folder(src: Path, dest: Path) -> None:
    """Every file under ``src`` to the same place under ``dest`` (atomic writes)."""
    for p in sorted(src.rglob("*")):
        if p.is_file():
            io.write_bytes_atomic(dest / p.relative_to(src), p.read_bytes(), force=True)
