"""The patients of a cohort and the work to do for them.

Source: a folder with one sub-folder per patient, in any layout
:func:`gbm.problem.segmentation.patient.load_patient` reads (PredictGBM, container, with or without
``scans.json``; ``gbm synth --cohort N`` writes such a folder) or a BraTS case folder (its fit
makes its tissue maps, :mod:`gbm.jobs.tissue.cache`), or a CSV manifest with the columns
``patient_id, wm, gm, csf, scans[, recurrence]`` where ``scans`` is ``"seg@day;seg@day"`` (days),
``csf`` and ``recurrence`` may be empty and relative paths count from the CSV's folder. Hidden
sub-folders and sub-folders in neither layout are ignored (:func:`discover` lists them).

Work (:func:`plan_work`): a patient whose output folder holds a ``results.json`` is skipped and
its :class:`gbm.jobs.fit.report.FitReport` read back (fitted with other settings: refused unless
``force``); every other patient becomes a :class:`Job`.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbm.errors import InputError, require
from gbm.jobs.fit.config import FitConfig
from gbm.jobs.fit.report import FitReport
from gbm.problem.segmentation.brats import parse_name
from gbm.problem.segmentation.patient import parse_scan

__all__ = ["INPUT_FIELDS", "Cohort", "Job", "Work", "check_template", "discover", "plan_work",
           "settings_of"]

#: FitConfig fields that name a patient's files (set per patient, never by the cohort).
INPUT_FIELDS = ("patient", "wm", "gm", "csf", "scans", "recurrence")
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
_MANIFEST_REQUIRED = ("patient_id", "wm", "gm", "scans")


@dataclass(frozen=True)
class Job:
    """One patient's fit: id, the full :class:`FitConfig` (absolute paths), its output folder."""

    pid: str
    cfg: FitConfig
    out: str
    force: bool = False


@dataclass(frozen=True)
class Cohort:
    """What :func:`discover` found: the source, its kind ("folders" or "manifest"), the
    patients (id, FitConfig input fields) and the ignored sub-folders."""

    source: str
    kind: str
    patients: list[tuple[str, dict[str, Any]]]
    ignored: list[str]

    @property
    def ids(self) -> list[str]:
        return [pid for pid, _ in self.patients]


@dataclass(frozen=True)
class Work:
    """The fits to run and the reports of the patients already fitted (by id)."""

    jobs: list[Job]
    existing: dict[str, FitReport]


def discover(source: str | os.PathLike[str], exclude: Path | None = None
             ) -> tuple[str, list[tuple[str, dict[str, Any]]], list[str]]:
    """The patients of ``source`` (module header).

    Returns
    -------
    kind : {"folders", "manifest"}
    patients : list of (id, FitConfig input fields with absolute paths), sorted by id for folders,
        in file order for a manifest
    ignored : sub-folders that are in neither patient layout (folders only)

    Raises
    ------
    InputError
        ``source`` missing, holding no patient, a single patient's folder, or a manifest row that
        is malformed or names a missing file.
    """
    src = Path(source)
    if src.is_file():
        return "manifest", _read_manifest(src), []
    require(src.is_dir(), f"{src}: no such cohort folder or CSV manifest")
    require(not _looks_like_patient(src),
            f"{src} is one patient's folder; give the folder that holds one sub-folder per "
            "patient (or use gbm fit --patient)")
    patients, ignored = [], []
    for d in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if exclude is not None and d.resolve() == exclude:
            continue
        if _looks_like_patient(d):
            patients.append((d.name, {"patient": str(d.resolve())}))
        else:
            ignored.append(d.name)
    require(bool(patients),
            f"{src} holds no patient folder (sub-folders in the PredictGBM layout "
            "tissue_segmentation/ + tumor_segmentation/, the container layout "
            "<id>-wm.nii.gz ..., or BraTS cases <id>-t1c.nii.gz ... <id>-seg.nii.gz)")
    return "folders", patients, ignored


def _looks_like_patient(d: Path) -> bool:
    return ((d / "tissue_segmentation").is_dir() or (d / "scans.json").is_file()
            or any(d.glob("*-wm.nii.gz")) or any(d.glob("*-wm.nii"))
            or any(parse_name(p.name) is not None for p in d.iterdir()))  # a BraTS case


def _read_manifest(path: Path) -> list[tuple[str, dict[str, Any]]]:
    base = path.resolve().parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the manifest ({e})") from None
    reader = csv.DictReader(_io.StringIO(text))
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in _MANIFEST_REQUIRED if c not in cols]
    require(not missing, f"{path}: manifest needs the columns patient_id, wm, gm, csf, scans "
            f"[, recurrence]; missing {', '.join(missing)}")
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for raw in reader:
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()
               if not isinstance(v, list)}
        if not any(row.values()):
            continue
        where = f"{path} line {reader.line_num}"
        pid = row.get("patient_id", "")
        require(bool(_SAFE_ID.match(pid)),
                f"{where}: patient_id {pid!r} must be a folder name (letters, digits, . _ -)")
        require(pid not in seen, f"{where}: patient_id {pid!r} appears twice")
        seen.add(pid)
        out.append((pid, _manifest_fields(row, base, f"{where} (patient {pid})")))
    require(bool(out), f"{path}: the manifest holds no patient row")
    return out


def _manifest_fields(row: dict[str, str], base: Path, at: str) -> dict[str, Any]:
    """The FitConfig input fields of one manifest row (absolute paths, each checked)."""
    require(bool(row.get("wm")) and bool(row.get("gm")), f"{at}: wm and gm are required")
    fields: dict[str, Any] = {
        "wm": _manifest_file(row["wm"], "wm", base, at),
        "gm": _manifest_file(row["gm"], "gm", base, at),
        "csf": _manifest_file(row["csf"], "csf", base, at) if row.get("csf") else None}
    specs = [s.strip() for s in row.get("scans", "").split(";") if s.strip()]
    require(bool(specs), f"{at}: scans is empty (expected \"seg.nii.gz@day;seg.nii.gz@day\")")
    scans = []
    for s in specs:
        try:
            seg, day = parse_scan(s)
        except InputError as e:
            raise InputError(f"{at}: {e}") from None
        scans.append(f"{_manifest_file(seg, 'scan', base, at)}@{day:.17g}")
    fields["scans"] = tuple(scans)
    rec = row.get("recurrence", "")
    if rec:
        seg, sep, day = rec.rpartition("@")
        fields["recurrence"] = (f"{_manifest_file(seg, 'recurrence', base, at)}@{day}" if sep
                                else _manifest_file(rec, "recurrence", base, at))
    return fields


def _manifest_file(value: str, what: str, base: Path, at: str) -> str:
    """A manifest path, relative to the manifest's folder unless absolute; it must exist."""
    p = Path(value)
    p = p if p.is_absolute() else base / p
    require(p.is_file(), f"{at}: {what} file not found: {p}")
    return str(p)


def check_template(cfg: FitConfig) -> None:
    """The cohort's fit settings: valid, and naming no patient's files."""
    named = [f.name for f in dataclasses.fields(cfg)
             if f.name in INPUT_FIELDS and getattr(cfg, f.name) not in (None, ())]
    require(not named, f"the cohort's fit settings must not name a patient's files "
            f"({', '.join(named)}): they come from the cohort folder or manifest")
    dataclasses.replace(cfg, patient="<each patient>").validate()


def settings_of(cfg: FitConfig) -> dict[str, Any]:
    """The fit settings that must agree between runs into one ``out`` (JSON-normalised)."""
    d = {k: v for k, v in cfg.to_json().items() if k not in INPUT_FIELDS}
    return json.loads(json.dumps(d))


def plan_work(cohort: Cohort, cfg: FitConfig, out: Path, force: bool) -> Work:
    """A :class:`Job` per patient to fit into ``out/patients/<id>``; without ``force`` the
    patients with a ``results.json`` there are skipped (module header).

    Raises
    ------
    InputError
        A finished patient was fitted with other settings (or its results.json is not a fit's).
    """
    pdir = out / "patients"
    jobs: list[Job] = []
    existing: dict[str, FitReport] = {}
    want = settings_of(cfg)
    for pid, fields in cohort.patients:
        res_file = pdir / pid / "results.json"
        report = None if force else _finished(res_file, out, pid)
        if report is None:
            jobs.append(Job(pid, dataclasses.replace(cfg, **fields), str(pdir / pid), force))
            continue
        got = settings_of(report.config)
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        require(not diff, f"--out {out}: patient {pid} was fitted with other settings "
                f"({', '.join(f'{k} {got.get(k)!r} != {want.get(k)!r}' for k in diff[:3])})"
                "; use --force to refit or another --out")
        existing[pid] = report
    return Work(jobs, existing)


def _finished(res_file: Path, out: Path, pid: str) -> FitReport | None:
    """The report of a finished patient; None when there is none or its file is unreadable
    (the patient is redone)."""
    if not res_file.is_file():
        return None
    try:
        data = json.loads(res_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return FitReport.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(f"--out {out}: patient {pid}: {res_file} is not the results.json of "
                         f"this gbm's fit ({type(e).__name__}: {e}); use --force to refit or "
                         "another --out") from None
