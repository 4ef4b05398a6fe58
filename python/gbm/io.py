"""All NIfTI, JSON, CSV and file-system output of gbm (nothing else in the package touches files).

Reading: images are reoriented to the closest canonical (RAS+) orientation with nibabel, so array axis
0 runs left->right, 1 posterior->anterior, 2 inferior->superior, and the affine is kept so every output
overlays its input in ITK-SNAP / FSLeyes.  Arrays are returned as C-contiguous float64 (nibabel hands
back Fortran order; the Rust core wants C order).

Writing: every file is written to a temporary name in the destination folder and then renamed with
``os.replace`` (atomic on POSIX), and an existing result is never overwritten unless ``force=True``.
Whole output folders are assembled in a temporary sibling folder and renamed into place at the end
(:func:`staged_outdir`), so a failed run leaves no partial output.  Tables are serialised by one CSV
writer, :func:`csv_bytes`.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import importlib.resources
import io as _io
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gbm.errors import InputError

#: The ICBM152 2009a (symmetric, 1 mm) tissue maps shipped inside the nilearn wheel.
ATLAS_FILES = {
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def atlas_path(tissue: str) -> contextlib.AbstractContextManager[Path]:
    """Context manager yielding the path of an embedded ICBM152 map (``"wm"`` or ``"gm"``).

    The files are read through :mod:`importlib.resources` from the installed nilearn package;
    nilearn's heavy submodules are not imported.
    """
    res = importlib.resources.files("nilearn").joinpath("datasets", "data", ATLAS_FILES[tissue])
    if not res.is_file():
        raise InputError(f"embedded atlas file {ATLAS_FILES[tissue]} not found in nilearn; "
                         "reinstall nilearn")
    return importlib.resources.as_file(res)


def load_nifti(path: str | os.PathLike[str], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D NIfTI image, reoriented to RAS+.

    Parameters
    ----------
    path : path-like
        ``.nii`` or ``.nii.gz`` file.
    name : str
        What the file is (``"--wm"``, ``"observations"``, ...), used in error messages.

    Returns
    -------
    data : ndarray, float64, shape (nx, ny, nz), C-contiguous
        Voxel values as stored (scaled by the header's slope/intercept), not yet range-checked.
    affine : ndarray, float64, shape (4, 4)
        Voxel index -> world (scanner/MNI) millimetres of the reoriented array.
    """
    raw, affine, p = _read_3d(path, name, "image")
    dtype = raw.dtype
    data = np.ascontiguousarray(raw, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise InputError(f"{name}: {p} contains NaN or Inf values")
    if np.issubdtype(dtype, np.integer) and data.max(initial=0) > 1:
        data = data / 255.0 if data.max() <= 255 else data
    return data, affine


def _read_3d(path: str | os.PathLike[str], name: str,
             what: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """The voxel array (as stored, RAS+-reoriented, a trailing 4th axis of length 1 dropped), the
    affine (float64) and the path of a 3D NIfTI file; one-line InputError otherwise."""
    import nibabel as nib

    p = Path(path)
    if not p.exists():
        raise InputError(f"{name}: file not found: {p}")
    if not p.is_file():
        raise InputError(f"{name}: not a file: {p}")
    try:
        img = nib.as_closest_canonical(nib.load(str(p)))
        raw = np.asanyarray(img.dataobj)
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{name}: cannot read {p} as NIfTI ({msg})") from None
    if raw.ndim == 4 and raw.shape[3] == 1:
        raw = raw[..., 0]
    if raw.ndim != 3:
        raise InputError(f"{name}: expected a 3D {what}, got shape {raw.shape} in {p}")
    return raw, np.asarray(img.affine, dtype=np.float64), p


def nifti_bytes(array: np.ndarray, affine: np.ndarray, description: str = "") -> bytes:
    """Serialise ``array`` (float32 on disk) with ``affine`` as gzipped NIfTI-1 bytes."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    if description:
        img.header["descrip"] = description[:79].encode()
    # .nii.gz = gzipped single-file NIfTI; mtime 0 so the same image gives the same bytes
    return gzip.compress(img.to_bytes(), compresslevel=4, mtime=0)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, force: bool = False) -> Path:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``.

    Raises
    ------
    InputError
        If ``path`` exists and ``force`` is false.
    """
    p = Path(path)
    if p.exists() and not force:
        raise InputError(f"{p} exists; use --force to overwrite")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return p


def save_nifti_atomic(path: str | os.PathLike[str], array: np.ndarray, affine: np.ndarray,
                      force: bool = False, description: str = "") -> Path:
    """Write a 3D array as ``.nii.gz`` (float32) atomically; see :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, nifti_bytes(array, affine, description), force=force)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, force: bool = False) -> Path:
    """Write ``obj`` as indented JSON atomically; see :func:`write_bytes_atomic`."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_bytes_atomic(path, text.encode(), force=force)


def csv_bytes(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], digits: int = 8) -> bytes:
    """A table as CSV bytes (UTF-8, ``\\n`` line ends): a header line of ``columns``, then one line
    per row with the row's value of each column.

    Cells: a Python float (``np.float64`` included) with ``digits`` significant digits
    (``f"{v:.8g}"`` by default), ``None`` and a missing key as an empty cell, anything else as
    ``str(v)``; quoting is :mod:`csv`'s default (a cell with a comma, quote or line break is
    quoted).
    """
    fmt = f".{int(digits)}g"
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_csv_cell(row.get(c), fmt) for c in columns])
    return buf.getvalue().encode()


def _csv_cell(v: Any, fmt: str) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return format(v, fmt)
    return str(v)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse early (before any work) if ``path`` exists and ``force`` is false."""
    p = Path(path)
    if p.exists() and not force and (p.is_file() or any(p.iterdir())):
        raise InputError(f"{p} exists; use --force to overwrite")
    return p


@contextlib.contextmanager
def staged_outdir(path: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Assemble an output folder in a temporary sibling and move it into place on success.

    Yields the temporary folder; write every output file into it.  On normal exit the folder is
    renamed to ``path`` (an existing ``path`` is replaced only when ``force`` is true); on an
    exception the temporary folder is removed and ``path`` is left untouched.
    """
    dest = check_output(path, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
        os.replace(dest, old / "x")
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


#: Largest label value :func:`load_labels` accepts (labels are returned as int16).
MAX_LABEL = 32767


def load_labels(path: str | os.PathLike[str], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D label image (tumour segmentation), reoriented to RAS+.

    Unlike :func:`load_nifti` the values are never rescaled: they must be non-negative integers
    (stored as integers, or as floats with integral values).

    Parameters
    ----------
    path : path-like
        ``.nii`` or ``.nii.gz`` file.
    name : str
        What the file is (``"--scan"``, ``"--recurrence"``, ...), used in error messages.

    Returns
    -------
    labels : ndarray, int16, shape (nx, ny, nz), C-contiguous
        Label values as stored.
    affine : ndarray, float64, shape (4, 4)
        Voxel index -> world mm of the reoriented array.
    """
    raw, affine, p = _read_3d(path, name, "label image")
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)
            or raw.dtype == np.bool_):
        raise InputError(f"{name}: {p} has non-numeric voxel type {raw.dtype}")
    if np.issubdtype(raw.dtype, np.floating):
        if not np.all(np.isfinite(raw)):
            raise InputError(f"{name}: {p} contains NaN or Inf values")
        bad = raw != np.round(raw)
        if np.any(bad):
            raise InputError(f"{name}: {p} has non-integer label values (e.g. "
                             f"{float(raw[bad].flat[0]):g}); expected integer labels")
    lo = raw.min(initial=0)
    hi = raw.max(initial=0)
    if lo < 0:
        raise InputError(f"{name}: {p} has negative label values (min {lo:g})")
    if hi > MAX_LABEL:
        raise InputError(f"{name}: {p} has label values up to {hi:g}, above {MAX_LABEL}")
    labels = np.ascontiguousarray(raw, dtype=np.int16)
    return labels, affine


def save_labels_atomic(path: str | os.PathLike[str], labels: np.ndarray, affine: np.ndarray,
                       force: bool = False) -> Path:
    """Write a 3D label array as ``.nii.gz`` atomically (uint8 when values fit, else int16).

    Raises
    ------
    InputError
        If the values are not integers in [0, 32767], or ``path`` exists and ``force`` is false.
    """
    import nibabel as nib

    a = np.asarray(labels)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer) and not (
            np.all(np.isfinite(a)) and np.all(a == np.round(a))):
        raise InputError(f"labels for {path} must be integers")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < 0 or hi > MAX_LABEL:
        raise InputError(f"labels for {path} must lie in [0, {MAX_LABEL}], found [{lo:g}, {hi:g}]")
    dtype = np.uint8 if hi <= 255 else np.int16
    img = nib.Nifti1Image(a.astype(dtype), np.asarray(affine, dtype=np.float64))
    img.header.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = b"gbm labels"
    return write_bytes_atomic(path, gzip.compress(img.to_bytes(), compresslevel=4), force=force)


@dataclass(frozen=True, eq=False)
class StoredGrid:
    """How a file stores its grid: its affine and the RAS -> stored axis transform (nibabel's
    orientation array: per RAS axis, the stored axis it becomes and whether it flips)."""

    affine: np.ndarray
    ornt: np.ndarray

    def from_ras(self, a: np.ndarray) -> np.ndarray:
        """A RAS-reoriented array (:func:`gbm.io.load_nifti`'s) in the stored voxel order."""
        from nibabel import orientations

        return np.ascontiguousarray(orientations.apply_orientation(a, self.ornt))


def stored_grid(path: str | os.PathLike[str]) -> StoredGrid:
    """The stored grid of a NIfTI file (reads its header only)."""
    import nibabel as nib
    from nibabel import orientations

    affine = np.asarray(nib.load(str(path)).affine, dtype=np.float64)
    ras = orientations.axcodes2ornt(("R", "A", "S"))
    return StoredGrid(affine, orientations.ornt_transform(ras, orientations.io_orientation(affine)))
