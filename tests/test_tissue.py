"""``gbm tissue`` without the registration engine: the map rules (CSF = clip(1 - wm - gm) inside the
brain), the metric mask, the skull-strip check, outputs in the segmentation's stored header, every
bad input of the issue (one line, exit 2, nothing written), the missing extra, and the known-warp
phantom (``gbm synth --brats``).  tests/test_tissue_engine.py runs the engine (skipped without it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_maps, write_nifti
from gbm import io
from gbm.cli import main
from gbm.errors import InputError
from gbm.io import stored_grid
from gbm.jobs.tissue import TissueConfig, tissue_maps
from gbm.jobs.tissue.accuracy import dice, map_accuracy, regions_of
from gbm.jobs.tissue.atlas import csf_inside, load_atlas
from gbm.jobs.tissue.inputs import MAX_BRAIN_ML, brain_of, metric_mask, read_inputs
from gbm.jobs.tissue.outputs import write_maps
from gbm.jobs.tissue.phantom import KnownMap, brats_grid, random_field, rotation
from gbm.problem.segmentation.brats import brats_case

SHAPE = (40, 44, 30)
#: An LPS-stored 1 mm grid (BraTS-like: x and y axes flipped).
LPS = np.array([[-1.0, 0, 0, 20.0], [0, -1.0, 0, 22.0], [0, 0, 1.0, -15.0], [0, 0, 0, 1]])
CENTRE = tuple((n - 1) / 2 for n in SHAPE)


def _r(centre: tuple[float, ...] = CENTRE) -> np.ndarray:
    idx = np.indices(SHAPE).astype(float)
    return np.sqrt(sum((idx[a] - centre[a]) ** 2 for a in range(3)))


def _case(d: Path, affine: np.ndarray = LPS, naming: str = "2023") -> dict[str, Path]:
    """A small skull-stripped case: ball brain, T1c-like image, brats2023 (or 2021) labels."""
    wm, gm = synthetic_maps(SHAPE)
    brain = _r() <= 13
    img = np.where(brain, 870 * wm + 640 * gm + 300 * (1 - wm - gm), 0.0)
    r = _r((CENTRE[0] + 3, CENTRE[1], CENTRE[2]))
    enh = 4 if naming == "2021" else 3
    lab = np.where(r <= 5, 2, 0)
    lab = np.where(r <= 3, enh, lab)
    lab = np.where(r <= 1.5, 1, lab)
    d.mkdir(parents=True, exist_ok=True)
    names = (("t1c", "t1n", "seg"), "-") if naming == "2023" else (("t1ce", "t1", "seg"), "_")
    (t1c, t1, seg), sep = names
    return {"t1c": write_nifti(d / f"P1{sep}{t1c}.nii.gz", img, affine),
            "t1": write_nifti(d / f"P1{sep}{t1}.nii.gz", 0.9 * img, affine),
            "seg": write_nifti(d / f"P1{sep}{seg}.nii.gz", lab, affine, dtype=np.uint8),
            "dir": d}


# ---------------------------------------------------------------- the rules

def test_maps_clip_mask_and_derive_csf_inside_the_brain() -> None:
    rng = np.random.default_rng(0)
    wm = rng.uniform(-0.1, 1.1, SHAPE)
    gm = rng.uniform(-0.1, 1.1, SHAPE)
    brain = _r() <= 12
    m = tissue_maps(wm, gm, brain)
    assert set(m) == {"wm", "gm", "csf"}
    np.testing.assert_array_equal(m["wm"][brain], np.clip(wm, 0, 1)[brain])
    np.testing.assert_array_equal(m["gm"][brain], np.clip(gm, 0, 1)[brain])
    for a in m.values():
        assert not a[~brain].any()
    expected = np.clip(1 - np.clip(wm, 0, 1) - np.clip(gm, 0, 1), 0, 1)
    np.testing.assert_array_equal(m["csf"][brain], expected[brain])
    np.testing.assert_array_equal(m["csf"], csf_inside(m["wm"], m["gm"], brain))
    both = m["wm"] + m["gm"]
    np.testing.assert_allclose((both + m["csf"])[brain & (both <= 1)], 1.0, atol=1e-12)


def test_the_atlas_brain_and_csf() -> None:
    a = load_atlas(4)
    assert a.t1.shape == a.wm.shape == a.gm.shape == a.brain.shape == (50, 59, 48)
    np.testing.assert_allclose(a.spacing, (4.0, 4.0, 4.0))
    ml = a.brain.sum() * 64 / 1000
    assert 1700 < ml < 2000  # the ICBM152 brain with its CSF, ~1.89 l at 1 mm
    assert float(a.t1.max()) <= 1.0 and float(a.wm.max()) <= 1.0
    csf = a.csf
    assert not csf[~a.brain].any()
    np.testing.assert_allclose(csf[a.brain], np.clip(1 - a.wm - a.gm, 0, 1)[a.brain])


def test_metric_mask_is_brain_minus_core_and_edema_on_request(tmp_path: Path) -> None:
    f = _case(tmp_path / "c")
    inp = read_inputs(TissueConfig(t1c=str(f["t1c"]), seg=str(f["seg"])))
    core, whole = inp.regions.core, inp.regions.whole
    assert inp.convention.name == "brats2023" and core.any() and (whole & ~core).any()
    m = metric_mask(inp, mask_edema=False)
    np.testing.assert_array_equal(m, inp.brain & ~core)
    m = metric_mask(inp, mask_edema=True)
    np.testing.assert_array_equal(m, inp.brain & ~whole)
    assert inp.files.fixed_role == "t1c" and not inp.fixed.array[~inp.brain].any()


def test_brain_is_the_filled_non_zero_region_and_a_head_is_refused() -> None:
    img = np.zeros((20, 20, 20))
    img[5:15, 5:15, 5:15] = 1.0
    img[10, 10, 10] = 0.0  # a hole (e.g. a zero inside the necrosis) is filled
    brain, rule = brain_of(img, 1.0, "--t1c", Path("x"), None)
    assert brain.sum() == 1000 and brain[10, 10, 10] and "non-zero" in rule
    head = np.ones((150, 150, 120))  # 2.7 l of non-zero voxels: not skull-stripped
    assert head.size / 1000 > MAX_BRAIN_ML
    with pytest.raises(InputError, match="does not look skull-stripped .* give --brain-mask"):
        brain_of(head, 1.0, "--t1c", Path("head.nii.gz"), None)
    mask = np.zeros(head.shape)
    mask[20:130, 20:130, 20:100] = 1
    brain, rule = brain_of(head, 1.0, "--t1c", Path("x"), mask)
    assert brain.sum() == 110 * 110 * 80 and rule == "--brain-mask > 0.5"


def test_maps_are_written_in_the_segmentations_stored_header(tmp_path: Path) -> None:
    import nibabel as nib

    f = _case(tmp_path / "c")
    seg_img = nib.load(str(f["seg"]))
    ras, ras_aff = io.load_nifti(f["t1c"], "x")
    grid = stored_grid(f["seg"])
    np.testing.assert_array_equal(grid.affine, seg_img.affine)
    write_maps(tmp_path / "o", {"wm": ras / ras.max()}, grid)
    out = nib.load(str(tmp_path / "o" / "tissue_segmentation" / "wm_pbmap.nii.gz"))
    np.testing.assert_array_equal(out.affine, seg_img.affine)  # the header, LPS as stored
    raw_t1c = np.asanyarray(nib.load(str(f["t1c"])).dataobj)
    np.testing.assert_allclose(out.get_fdata(), raw_t1c / raw_t1c.max(), atol=1e-6)
    back, back_aff = io.load_nifti(out.file_map["image"].filename, "x")
    np.testing.assert_allclose(back, ras / ras.max(), atol=1e-6)
    np.testing.assert_allclose(back_aff, ras_aff)


# ---------------------------------------------------------------- bad input: one line, exit 2

def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    f = _case(tmp_path / "ok")
    other = write_nifti(tmp_path / "other.nii.gz", np.ones((40, 44, 31)), LPS)
    shifted = LPS.copy()
    shifted[0, 3] += 2.0
    moved = write_nifti(tmp_path / "moved.nii.gz", np.ones(SHAPE), shifted)
    four = write_nifti(tmp_path / "four.nii.gz", np.ones((*SHAPE, 2)), LPS)
    zeros = write_nifti(tmp_path / "zeros.nii.gz", np.zeros(SHAPE), LPS)
    empty = write_nifti(tmp_path / "empty.nii.gz", np.zeros(SHAPE), LPS, dtype=np.uint8)
    big = write_nifti(tmp_path / "head.nii.gz", np.ones((150, 150, 120)))
    big_seg = np.zeros((150, 150, 120), dtype=np.uint8)
    big_seg[70:80, 70:80, 55:65] = 2
    head_seg = write_nifti(tmp_path / "head_seg.nii.gz", big_seg, dtype=np.uint8)
    two = tmp_path / "two"
    _case(two)
    write_nifti(two / "P1_seg.nii.gz", np.ones(SHAPE), LPS, dtype=np.uint8)
    no_t1 = _case(tmp_path / "no_t1")
    no_t1["t1"].unlink()
    t1c, seg = str(f["t1c"]), str(f["seg"])
    return {
        "grid": (["--t1c", str(other), "--seg", seg], r"--t1c: .*other.nii.gz is on another grid"),
        "affine": (["--t1c", str(moved), "--seg", seg], "--t1c: .*moved.nii.gz has another affine"),
        "4d": (["--t1c", str(four), "--seg", seg], r"--t1c: expected a 3D image, got shape"),
        "no t1 flag": (["--t1c", t1c, "--seg", seg, "--fixed", "t1"],
                       "--fixed t1 needs --t1 \\(the image is missing\\)"),
        "no t1 in case": (["--case", str(no_t1["dir"]), "--fixed", "t1"],
                          "--case: .*no_t1 has no native T1 .* --fixed t1 needs it"),
        "no seg": (["--t1c", t1c], "give --seg SEG"),
        "empty seg": (["--t1c", t1c, "--seg", str(empty)],
                      "--seg: no tumour labels in .*empty.nii.gz \\(all voxels are 0\\)"),
        "zeros": (["--t1c", str(zeros), "--seg", seg], "--t1c: .*zeros.nii.gz is all zeros"),
        "missing file": (["--t1c", str(tmp_path / "nope.nii.gz"), "--seg", seg],
                         "--t1c: file not found"),
        "two segs": (["--case", str(two)],
                     r"2 candidate segmentations \(P1-seg.nii.gz, P1_seg.nii.gz\)"),
        "head": (["--t1c", str(big), "--seg", str(head_seg)],
                 "does not look skull-stripped \\(2700 ml"),
        "case and flags": (["--case", str(f["dir"]), "--t1c", t1c],
                           "--case: do not combine with --t1c"),
        "seed": (["--t1c", t1c, "--seg", seg, "--seed", "0"], "--seed must be an integer in"),
    }


BAD = ["grid", "affine", "4d", "no t1 flag", "no t1 in case", "no seg", "empty seg", "zeros",
       "missing file", "two segs", "head", "case and flags", "seed"]


@pytest.mark.parametrize("which", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, capsys, which) -> None:
    argv, message = _bad_inputs(tmp_path)[which]
    out = tmp_path / "out"
    assert main(["tissue", *argv, "--out", str(out)]) == 2
    cap = capsys.readouterr()
    (line,) = cap.err.splitlines()
    assert line.startswith("gbm: error: ")
    import re

    assert re.search(message, line), line
    assert cap.out == "" and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_an_existing_output_needs_force(tmp_path: Path, capsys) -> None:
    f = _case(tmp_path / "c")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    assert main(["tissue", "--case", str(f["dir"]), "--out", str(tmp_path / "out")]) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep").read_text() == "x"


BLOCKER = '''
import sys


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "ants":
            raise ImportError("No module named 'ants' (blocked by tests/test_tissue.py)")
        return None


sys.meta_path.insert(0, _NotInstalled())
'''


def test_without_the_extra_one_line_names_it(tmp_path: Path) -> None:
    f = _case(tmp_path / "c")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + [p for p in [env.get("PYTHONPATH")] if p])
    r = subprocess.run([sys.executable, "-m", "gbm", "tissue", "--case", str(f["dir"]), "--out",
                        str(tmp_path / "out")], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line == ("gbm: error: gbm tissue needs the optional extra 'tissue' (ants not "
                    "installed): pip install \"gbm[tissue]\"")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the known-warp phantom

def test_known_map_inverts_and_the_random_field_has_its_amplitude() -> None:
    rng = np.random.default_rng(3)
    shape, aff = brats_grid(4)
    assert shape == (60, 60, 39)
    np.testing.assert_allclose(aff[:3, :3], np.diag([-4.0, -4.0, 4.0]))
    f = random_field(shape, 4.0, 12.0, 8.0, rng)
    assert f.shape == (3, *shape) and f.dtype == np.float32
    np.testing.assert_allclose(np.sqrt((f ** 2).sum(axis=0)).max(), 8.0, rtol=1e-5)
    m = rotation((6, -4, 3)) @ np.diag((1.04, 0.97, 1.06))
    np.testing.assert_allclose(rotation((6, -4, 3)) @ rotation((6, -4, 3)).T, np.eye(3),
                               atol=1e-12)
    centre = aff[:3, :3] @ ((np.asarray(shape) - 1) / 2) + aff[:3, 3]
    k = KnownMap(m, centre, np.array([0.0, -20, 10]), f, aff, centre + 5.0, 0.3, 15.0)
    y = np.array([20.0, 10.0, 30.0])
    x = k.patient_point(y)
    np.testing.assert_allclose(k.atlas_points(x[None])[0], y, atol=1e-6)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("phantom") / "case"
    assert main(["synth", "--brats", "--downsample", "4", "--out", str(d)]) == 0
    return d


def test_synth_brats_writes_a_brats_case_with_its_truth(phantom: Path) -> None:
    import nibabel as nib

    c = brats_case(phantom)
    assert (c.case_id, c.naming) == ("BraTS-GLI-90000-000", "brats2023")
    assert all(c.image(r) is not None for r in ("t1", "t1c", "t2", "flair"))
    seg = nib.load(str(c.seg))
    assert seg.shape == (60, 60, 39) and nib.aff2axcodes(seg.affine) == ("L", "P", "S")
    lab = np.asanyarray(seg.dataobj)
    assert set(np.unique(lab)) == {0, 1, 2, 3}  # necrosis, edema, enhancing (brats2023)
    truth = json.loads((phantom / "truth" / "truth.json").read_text())
    assert truth["labels"] == "brats2023" and truth["thresholds"]["theta_n"] == 0.9
    wm = nib.load(str(phantom / "truth" / "wm_pbmap.nii.gz")).get_fdata()
    gm = nib.load(str(phantom / "truth" / "gm_pbmap.nii.gz")).get_fdata()
    csf = nib.load(str(phantom / "truth" / "csf_pbmap.nii.gz")).get_fdata()
    t1c = nib.load(str(c.t1c)).get_fdata()
    brain = t1c != 0
    assert not (wm[~brain].any() or gm[~brain].any() or csf[~brain].any())
    np.testing.assert_allclose(csf[brain], np.clip(1 - wm - gm, 0, 1)[brain], atol=1e-6)
    # MR-like contrasts on the T1c: bright enhancing rim, dark necrosis, white matter between
    enh, nec = t1c[lab == 3].mean(), t1c[lab == 1].mean()
    white = t1c[(wm > 0.9) & (lab == 0)].mean()
    assert enh > 1.2 * white > 1.2 * nec
    flair = nib.load(str(c.flair)).get_fdata()
    assert flair[lab == 2].mean() > 1.5 * flair[(wm > 0.9) & (lab == 0)].mean()


def test_the_phantoms_truth_origin_lies_in_its_tumour(phantom: Path) -> None:
    import nibabel as nib

    truth = json.loads((phantom / "truth" / "truth.json").read_text())
    seg = nib.load(str(next(phantom.glob("*-seg.nii.gz"))))
    vox = np.linalg.inv(seg.affine) @ np.r_[truth["origin_world_mm"], 1.0]
    i, j, k = np.rint(vox[:3]).astype(int)
    assert np.asanyarray(seg.dataobj)[i, j, k] in (1, 3)  # inside the core


def test_synth_brats_2021_naming(tmp_path: Path) -> None:
    d = tmp_path / "c21"
    assert main(["synth", "--brats", "2021", "--downsample", "4", "--warp-mm", "4", "--out",
                 str(d)]) == 0
    c = brats_case(d)
    assert (c.case_id, c.naming, c.labels) == ("BraTS2021_90000", "brats2021", "brats2021")
    lab, _ = io.load_labels(c.seg, "x")
    assert set(np.unique(lab)) == {0, 1, 2, 4}
    truth = json.loads((d / "truth" / "truth.json").read_text())
    assert truth["phantom"]["warp_mm"] == 4.0


def test_accuracy_regions_and_dice() -> None:
    from gbm.problem.segmentation.labels import CONVENTIONS, regions

    lab = np.zeros(SHAPE, dtype=np.int16)
    lab[_r() <= 6] = 2
    lab[_r() <= 3] = 3
    reg = regions(lab, CONVENTIONS["brats2023"])
    brain = _r() <= 13
    r = regions_of(reg, brain, (1.0, 1.0, 1.0), near_mm=2.0)
    np.testing.assert_array_equal(r["outside_core"], brain & ~reg.core)
    np.testing.assert_array_equal(r["edema"], reg.edema)
    near = r["near_lesion"]
    assert not (near & ~r["outside_core"]).any()
    assert near[(_r() <= 7.0) & ~reg.core].all() and not near[_r() > 8.5].any()
    wm = (_r() <= 8).astype(float)
    (a,) = map_accuracy(wm, 1 - wm, wm, 1 - wm, {"all": brain})
    assert (a.wm, a.gm, a.voxels) == (1.0, 1.0, int(brain.sum()))
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert dice(np.array([1, 1, 0], bool), np.array([1, 0, 0], bool)) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- gbm fit / gbm cohort on BraTS cases

def test_which_folders_need_maps(tmp_path: Path, phantom: Path) -> None:
    from gbm.jobs.tissue.cache import case_maps, needs_maps

    assert needs_maps(None) is None and needs_maps(tmp_path / "missing") is None
    case = needs_maps(phantom)
    assert case is not None and case.case_id == "BraTS-GLI-90000-000"
    pg = tmp_path / "pg"
    for sub, name in (("tissue_segmentation", "wm_pbmap.nii.gz"),
                      ("tumor_segmentation", "tumor_seg.nii.gz")):
        (pg / sub).mkdir(parents=True)
        (pg / sub / name).write_bytes(b"")
    assert needs_maps(pg) is None
    assert case_maps(pg, tmp_path / "fit") is None and not (tmp_path / ".fit.tissue").exists()
    with_maps = _case(tmp_path / "with_maps")["dir"]
    (with_maps / "tissue_segmentation").mkdir()
    (with_maps / "tissue_segmentation" / "wm_pbmap.nii.gz").write_bytes(b"")
    assert needs_maps(with_maps) is None


def test_the_fits_tissue_preset_reaches_gbm_tissue(tmp_path: Path, phantom: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`gbm fit/cohort --tissue-preset P` makes the maps of a BraTS case with preset P."""
    import gbm.jobs.tissue.cache as cache
    from gbm.cli import build_parser
    from gbm.cli.common import config_from
    from gbm.cli.fit import FIELDS
    from gbm.errors import InputError
    from gbm.jobs.fit import FitConfig

    seen = []
    monkeypatch.setattr(cache, "make_tissue", lambda cfg, out, **kw: seen.append(cfg.preset))
    made = cache.case_maps(phantom, tmp_path / "fit", preset="quick")
    assert made is not None and made.made and seen == ["quick"]
    a = build_parser().parse_args(["fit", "--patient", str(phantom), "--tissue-preset", "affine"])
    cfg = config_from(FitConfig, a, FIELDS)
    assert cfg.tissue_preset == "affine" and FitConfig().tissue_preset == "default"
    with pytest.raises(InputError, match="--tissue-preset must be one of affine, quick, default"):
        FitConfig(patient="x", tissue_preset="fast").validate()


def test_fit_of_a_brats_case_without_the_extra_is_one_line(tmp_path: Path, phantom: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + [p for p in [env.get("PYTHONPATH")] if p])
    r = subprocess.run([sys.executable, "-m", "gbm", "fit", "--patient", str(phantom),
                        "--assume-days", "400", "--out", str(tmp_path / "fit")], env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 2
    line = r.stderr.splitlines()[-1]
    assert line.endswith("needs the optional extra 'tissue' (ants not installed): pip install "
                         "\"gbm[tissue]\""), r.stderr
    assert not (tmp_path / "fit").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fit")]


def test_cohort_discovers_brats_case_folders(tmp_path: Path) -> None:
    from gbm.jobs.cohort.inputs import discover

    root = tmp_path / "cohort"
    _case(root / "BraTS-GLI-00001-000")
    _case(root / "BraTS2021_00002", naming="2021")
    (root / "notes").mkdir()
    kind, patients, ignored = discover(root)
    assert kind == "folders" and ignored == ["notes"]
    assert [pid for pid, _ in patients] == ["BraTS-GLI-00001-000", "BraTS2021_00002"]
