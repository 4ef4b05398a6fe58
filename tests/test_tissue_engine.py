"""``gbm tissue`` with the registration engine (ANTsPy; skipped when the extra ``gbm[tissue]`` is
not installed): images enter ANTs in the right physical space, a 2 mm known-warp phantom registered
with the quick preset recovers the maps (Dice targets of the issue outside the core), the folder is
one ``gbm fit --patient`` reads, and a run is reproducible for a seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gbm import io
from gbm.cli import main
from gbm.jobs.tissue.accuracy import map_accuracy, regions_of
from gbm.problem.segmentation.brats import brats_case
from gbm.problem.segmentation.labels import CONVENTIONS, regions
from gbm.problem.segmentation.patient import load_patient

ants = pytest.importorskip("ants")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 mm BraTS phantom (120 x 120 x 78, LPS) through the default known map."""
    d = tmp_path_factory.mktemp("tissue") / "case"
    assert main(["synth", "--brats", "--downsample", "2", "--out", str(d)]) == 0
    return d


def test_volumes_enter_ants_in_lps_physical_space(case: Path) -> None:
    from gbm.jobs.tissue.engine import Volume, to_ants

    path = brats_case(case).t1c
    arr, aff = io.load_nifti(path, "x")  # RAS-reoriented
    mine = to_ants(ants, Volume(arr, aff))
    ref = ants.image_read(str(path))  # as stored (LPS)
    for ijk in ((0, 0, 0), (10, 50, 30), (119, 7, 77)):
        world_ras = aff[:3, :3] @ np.asarray(ijk, float) + aff[:3, 3]
        lps = ants.transform_index_to_physical_point(mine, ijk)
        np.testing.assert_allclose(lps, world_ras * np.array([-1, -1, 1]), atol=1e-4)
        stored = ants.transform_physical_point_to_index(ref, lps)
        assert ref.numpy()[tuple(round(v) for v in stored)] == pytest.approx(arr[ijk])


@pytest.fixture(scope="module")
def quick(case: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quick") / "maps"
    assert main(["tissue", "--case", str(case), "--preset", "quick", "--threads", "2",
                 "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_quick_preset_recovers_the_known_maps(case: Path, quick: Path) -> None:
    wm, aff = io.load_nifti(quick / "tissue_segmentation" / "wm_pbmap.nii.gz", "wm")
    gm, _ = io.load_nifti(quick / "tissue_segmentation" / "gm_pbmap.nii.gz", "gm")
    twm, taff = io.load_nifti(case / "truth" / "wm_pbmap.nii.gz", "true wm")
    tgm, _ = io.load_nifti(case / "truth" / "gm_pbmap.nii.gz", "true gm")
    np.testing.assert_allclose(aff, taff)
    lab, _ = io.load_labels(brats_case(case).seg, "seg")
    reg = regions(lab, CONVENTIONS["brats2023"])
    brain = io.load_nifti(brats_case(case).t1c, "t1c")[0] != 0
    acc = {a.region: a for a in map_accuracy(wm, gm, twm, tgm, regions_of(reg, brain, (2, 2, 2)))}
    # the targets for the default preset (WM >= 0.85, GM >= 0.75) hold for quick at 2 mm
    assert acc["outside_core"].wm >= 0.85 and acc["outside_core"].gm >= 0.75
    assert acc["near_lesion"].wm >= 0.8 and acc["near_lesion"].gm >= 0.75


@pytest.mark.slow
def test_the_output_is_a_patient_folder_in_the_segmentations_header(case: Path,
                                                                    quick: Path) -> None:
    import nibabel as nib

    seg = brats_case(case).seg
    t = json.loads((quick / "tissue.json").read_text())
    assert t["engine"].startswith("antspyx ") and t["preset"] == "quick"
    assert t["mask"]["rule"] == "brain minus tumour core" and t["labels"] == "brats2023"
    assert t["quality"]["warning"] is None and t["quality"]["ncc_outside_tumour"] > 0.8
    assert t["quality"]["brain_dice"] > 0.95
    assert set(t["seconds"]) >= {"read", "linear", "syn", "warp", "total"}
    assert t["transforms"]["forward"] == ["transforms/atlas_to_patient_1Warp.nii.gz",
                                          "transforms/atlas_to_patient_0GenericAffine.mat"]
    for rel in t["transforms"]["forward"] + t["transforms"]["inverse"]:
        assert (quick / rel).is_file()
    assert (quick / "tumor_segmentation" / "tumor_seg.nii.gz").read_bytes() == seg.read_bytes()
    for name in ("wm", "gm", "csf"):
        img = nib.load(str(quick / "tissue_segmentation" / f"{name}_pbmap.nii.gz"))
        np.testing.assert_array_equal(img.affine, nib.load(str(seg)).affine)
    assert (quick / "tissue.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p = load_patient(patient_dir=quick)
    assert p.convention.name == "brats2023" and p.csf is not None
    assert p.mask[p.scans[0].regions.whole].mean() > 0.9  # healthy atlas tissue under the tumour


@pytest.mark.slow
def test_one_thread_and_a_seed_reproduce_a_run_bit_for_bit(case: Path, tmp_path: Path) -> None:
    """Each run in its own process: ITK fixes its thread count at a process's first image."""
    maps = []
    for i in range(2):
        out = tmp_path / f"a{i}"
        r = subprocess.run([sys.executable, "-m", "gbm", "tissue", "--case", str(case), "--preset",
                            "affine", "--seed", "7", "--threads", "1", "--out", str(out)],
                           capture_output=True, text=True, timeout=600, check=False)
        assert r.returncode == 0, r.stderr
        maps.append(io.load_nifti(out / "tissue_segmentation" / "gm_pbmap.nii.gz", "gm")[0])
        assert json.loads((out / "tissue.json").read_text())["threads"] == 1
    np.testing.assert_array_equal(maps[0], maps[1])


@pytest.fixture(scope="module")
def case4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tissue4") / "case"
    assert main(["synth", "--brats", "--downsample", "4", "--out", str(d)]) == 0
    return d


@pytest.mark.slow
def test_fit_makes_the_maps_of_a_brats_case_on_the_way(case4: Path, tmp_path: Path) -> None:
    from gbm.jobs.tissue.cache import case_maps

    out = tmp_path / "fit"
    assert main(["fit", "--patient", str(case4), "--assume-days", "400", "--global-solves", "100",
                 "--local-solves", "20", "--out", str(out)]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["config"]["patient"] == str(case4) and "BraTS case" in r["source"]
    (scan,) = r["scans"]
    assert scan["dice_whole"] > 0.8
    t = json.loads((out / "tissue" / "tissue.json").read_text())
    assert t["preset"] == "default" and t["quality"]["warning"] is None
    assert (out / "tissue" / "tissue_segmentation" / "wm_pbmap.nii.gz").is_file()
    assert not (tmp_path / ".fit.tissue").exists()  # the cache went into the output
    again = case_maps(case4, out, resume=True)  # --resume reuses the finished run's maps
    assert again is not None and not again.made and again.folder == out / "tissue"
    assert case_maps(case4, out, resume=True, labels="brats2024post").made  # other settings
