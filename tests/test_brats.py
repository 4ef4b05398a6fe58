"""BraTS case folders: the two namings, any case id, the refusals (two candidate segmentations,
several cases, mixed namings, images without a segmentation), and how ``gbm fit --patient`` sees
one (``folder_layout``, ``folder_files``, ``load_patient``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_maps, write_nifti
from gbm.errors import InputError
from gbm.problem.segmentation.brats import brats_case, find_case, parse_name
from gbm.problem.segmentation.patient import folder_files, folder_layout, load_patient

SHAPE = (40, 44, 30)
NAMES_2021 = ("t1", "t1ce", "t2", "flair", "seg")
NAMES_2023 = ("t1n", "t1c", "t2w", "t2f", "seg")


def _touch(d: Path, *names: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).write_bytes(b"")
    return d


@pytest.mark.parametrize("name, expected", [
    ("BraTS2021_00000_t1ce.nii.gz", ("BraTS2021_00000", "brats2021", "t1c")),
    ("BraTS2021_00000_t1.nii.gz", ("BraTS2021_00000", "brats2021", "t1")),
    ("BraTS2021_00000_flair.nii", ("BraTS2021_00000", "brats2021", "flair")),
    ("BraTS-GLI-00000-000-t1c.nii.gz", ("BraTS-GLI-00000-000", "brats2023", "t1c")),
    ("BraTS-GLI-00000-000-t2f.nii.gz", ("BraTS-GLI-00000-000", "brats2023", "flair")),
    ("BraTS-MET-00001-000-seg.nii.gz", ("BraTS-MET-00001-000", "brats2023", "seg")),
    ("my_case_t1_seg.nii.gz", ("my_case_t1", "brats2021", "seg")),
    ("patient7-t1n.nii.gz", ("patient7", "brats2023", "t1")),
])
def test_parse_name_reads_both_namings_with_any_case_id(name, expected) -> None:
    f = parse_name(name)
    assert f is not None and (f.case_id, f.naming, f.role) == expected


@pytest.mark.parametrize("name", ["x-t1.nii.gz", "x_t1c.nii.gz", "x_t2w.nii.gz", "x-flair.nii.gz",
                                  "seg.nii.gz", "x_seg.mgz", "x-seg.nii.gz.bak", "wm_pbmap.nii.gz"])
def test_parse_name_refuses_other_names(name) -> None:
    assert parse_name(name) is None


def test_a_2021_and_a_2023_case(tmp_path: Path) -> None:
    a = _touch(tmp_path / "a", *(f"BraTS2021_01234_{n}.nii.gz" for n in NAMES_2021), "notes.txt")
    c = brats_case(a)
    assert (c.case_id, c.naming, c.labels) == ("BraTS2021_01234", "brats2021", "brats2021")
    assert c.seg == a / "BraTS2021_01234_seg.nii.gz" and c.t1c == a / "BraTS2021_01234_t1ce.nii.gz"
    assert c.image("t1") == a / "BraTS2021_01234_t1.nii.gz"
    assert c.image("flair") == a / "BraTS2021_01234_flair.nii.gz"
    b = _touch(tmp_path / "b", "Case9-t1c.nii.gz", "Case9-seg.nii")
    _touch(b / "truth", "wm_pbmap.nii.gz", "Other-seg.nii.gz")  # sub-folders do not count
    c = brats_case(b)
    assert (c.case_id, c.naming, c.labels) == ("Case9", "brats2023", None)
    assert c.seg == b / "Case9-seg.nii" and c.t1 is None and c.t2 is None


@pytest.mark.parametrize("names, message", [
    (("A-seg.nii.gz", "A_seg.nii.gz", "A-t1c.nii.gz"),
     r"2 candidate segmentations \(A-seg.nii.gz, A_seg.nii.gz\)"),
    (("A-seg.nii.gz", "A-seg.nii", "A-t1c.nii.gz"), "2 candidate segmentations"),
    (("A-seg.nii.gz", "B-seg.nii.gz"), "2 candidate segmentations"),
    (("A-seg.nii.gz", "A-t1c.nii.gz", "B-t1c.nii.gz"), r"several BraTS cases \(A, B\)"),
    (("A-seg.nii.gz", "A_t1ce.nii.gz"), "mixes BraTS namings"),
    (("A-t1c.nii.gz", "A-t2f.nii.gz"), "no segmentation"),
    (("A-seg.nii.gz", "A-t1c.nii.gz", "A-t1c.nii"), "two t1c images"),
])
def test_a_folder_that_is_not_one_case_is_refused(tmp_path: Path, names, message) -> None:
    d = _touch(tmp_path / "case", *names)
    with pytest.raises(InputError, match=message):
        find_case(d)
    with pytest.raises(InputError, match=message):
        folder_layout(d)


def test_not_a_brats_folder(tmp_path: Path) -> None:
    d = _touch(tmp_path / "x", "t1.nii.gz", "seg.nii.gz")
    assert find_case(d) is None and find_case(tmp_path / "missing") is None
    with pytest.raises(InputError, match="is not a BraTS case folder"):
        brats_case(d)
    with pytest.raises(InputError, match="neither the PredictGBM layout .* nor a BraTS case"):
        folder_layout(d)


def test_folder_layout_sees_a_brats_case_and_asks_for_maps(tmp_path: Path) -> None:
    d = _touch(tmp_path / "case", *(f"BraTS-GLI-00002-001-{n}.nii.gz" for n in NAMES_2023))
    assert folder_layout(d) == "brats:BraTS-GLI-00002-001"
    with pytest.raises(InputError, match=r"is a BraTS case \(BraTS-GLI-00002-001-seg.nii.gz\) "
                       r"without tissue maps; make them with `gbm tissue --case"):
        folder_files(d)
    # a PredictGBM folder keeps its layout even with BraTS-named files beside it
    _touch(d / "tissue_segmentation", "wm_pbmap.nii.gz")
    _touch(d / "tumor_segmentation", "tumor_seg.nii.gz")
    assert folder_layout(d) == "predictgbm"


def test_a_brats_case_with_maps_is_fitted_with_its_release_labels(tmp_path: Path) -> None:
    """A BraTS 2021 case: labels {1, 2, 4} are ambiguous in general (brats2021 or brats2024post)
    but the naming says brats2021; the maps come from tissue_segmentation/."""
    d = tmp_path / "BraTS2021_00005"
    wm, gm = synthetic_maps(SHAPE)
    idx = np.indices(SHAPE).astype(float)
    r = np.sqrt(sum((idx[a] - (n - 1) / 2) ** 2 for a, n in enumerate(SHAPE)))
    lab = np.where(r <= 5, 2, 0) + np.where(r <= 3, 2, 0) - np.where(r <= 1.2, 3, 0)  # 2, 4, 1
    assert set(np.unique(lab)) == {0, 1, 2, 4}
    t = d / "tissue_segmentation"
    t.mkdir(parents=True)
    write_nifti(t / "wm_pbmap.nii.gz", wm)
    write_nifti(t / "gm_pbmap.nii.gz", gm)
    write_nifti(d / "BraTS2021_00005_seg.nii.gz", lab, dtype=np.uint8)
    write_nifti(d / "BraTS2021_00005_t1ce.nii.gz", wm + 0.5 * gm)
    assert folder_layout(d) == "brats:BraTS2021_00005"
    f = folder_files(d)
    assert f.wm == t / "wm_pbmap.nii.gz" and f.csf is None and f.labels == "brats2021"
    assert [s.path.name for s in f.scans] == ["BraTS2021_00005_seg.nii.gz"]
    p = load_patient(patient_dir=d)
    assert p.convention.name == "brats2021"
    (scan,) = p.scans
    assert int(scan.regions.core.sum()) == int((r <= 3).sum())
    assert int(scan.regions.whole.sum()) == int((r <= 5).sum())
