"""Synthetic patients: truth, thresholds, noise, layout, read-back, validation, cohort, CLI."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import AFFINE, CENTRE_WORLD, synthetic_maps, write_nifti
from gbm import io
from gbm.cli.synth import register
from gbm.errors import InputError
from gbm.jobs.synth import (
    SynthConfig,
    boundary_noise,
    derive_csf,
    synth,
    synth_cohort,
    threshold_labels,
)
from gbm.model.coarse import block_average, coarse_affine
from gbm.problem.segmentation.labels import CONVENTIONS
from gbm.problem.segmentation.patient import load_patient


@pytest.fixture
def cfg(tmp_path: Path) -> SynthConfig:
    """Ball brain (1 mm), a fast tumour with edema, enhancing core and necrosis at every scan."""
    wm, gm = synthetic_maps()
    return SynthConfig(wm=str(write_nifti(tmp_path / "wm.nii.gz", wm)),
                       gm=str(write_nifti(tmp_path / "gm.nii.gz", gm)),
                       origin_mm=CENTRE_WORLD, dw=0.02, rho=0.08, age_days=80.0,
                       scan_days=(0.0, 30.0), recurrence_after=30.0)


def _labels(p: Path) -> np.ndarray:
    return io.load_labels(p, "x")[0]


def test_truth_files_and_thresholds(cfg: SynthConfig, tmp_path: Path) -> None:
    out = tmp_path / "p"
    t = synth(cfg, out)
    truth = json.loads((out / "truth.json").read_text())
    assert truth["dw"] == 0.02 and truth["rho"] == 0.08 and truth["ratio"] == 10.0
    assert truth["lambda_mm"] == pytest.approx(math.sqrt(0.02 / 0.08))
    assert truth["rho_T"] == pytest.approx(0.08 * 80)
    assert truth["origin_world_mm"] == list(CENTRE_WORLD)
    assert truth["scan_days"] == [0.0, 30.0] and truth["recurrence_day"] == 60.0
    assert truth["thresholds"] == {"theta_c": 0.675, "theta_e": 0.25, "theta_n": 0.95}
    assert truth["labels"] == "brats2023" and truth["seed"] == 0
    assert truth["grid"]["shape"] == [40, 44, 30] and truth["grid"]["spacing_mm"] == [1, 1, 1]
    assert "Strang-RKL2 at rho dt = 0.125" in truth["note"]
    assert truth["solver"]["scheme"] == "strang-rkl2"
    assert truth["solver"]["dt_days"] == pytest.approx(0.125 / 0.08)
    assert truth["gbm_version"] and truth == json.loads(json.dumps(t))
    listing = json.loads((out / "scans.json").read_text())
    assert listing["scans"] == [{"file": "tumor_segmentation/tumor_seg.nii.gz", "day": 0.0},
                                {"file": "tumor_segmentation/tumor_seg_day30.nii.gz",
                                 "day": 30.0}]
    assert listing["recurrence"]["day"] == 60.0
    for name in ("wm", "gm", "csf"):
        m, aff = io.load_nifti(out / "tissue_segmentation" / f"{name}_pbmap.nii.gz", name)
        assert m.shape == (40, 44, 30)
        np.testing.assert_allclose(aff, AFFINE)
    conv = CONVENTIONS["brats2023"]
    files = ["tumor_segmentation/tumor_seg.nii.gz", "tumor_segmentation/tumor_seg_day30.nii.gz",
             "longitudinal/recurrence_preop.nii.gz"]
    wholes = []
    for f, d, snap in zip(files, (0, 30, 60), truth["snapshots"]):
        lab = _labels(out / f)
        u, _ = io.load_nifti(out / "truth" / f"u_day{d}.nii.gz", "u")
        np.testing.assert_array_equal(lab, threshold_labels(u, conv, 0.25, 0.675, 0.95))
        assert set(np.unique(lab)) == {0, 1, 2, 3}  # every class present at every scan
        assert snap["file"] == f and snap["whole_ml"] == pytest.approx((lab > 0).sum() / 1000)
        wholes.append(lab > 0)
    assert not np.any(wholes[0] & ~wholes[1]) and wholes[1].sum() > wholes[0].sum()
    assert not np.any(wholes[1] & ~wholes[2])
    with pytest.raises(InputError, match="exists; use --force"):
        synth(cfg, out)
    synth(replace(cfg, recurrence_after=None), out, force=True)
    assert not (out / "longitudinal").exists() and not (out / "truth" / "u_day60.nii.gz").exists()


def test_read_back_with_load_patient(cfg: SynthConfig, tmp_path: Path) -> None:
    c21 = replace(cfg, labels="brats2021")  # {1, 2, 4} alone is ambiguous: scans.json says which
    synth(c21, tmp_path / "p")
    p = load_patient(patient_dir=tmp_path / "p")
    assert p.convention.name == "brats2021"
    assert [s.day for s in p.scans] == [0.0, 30.0] and p.days_since_first == (0.0, 30.0)
    assert p.recurrence is not None and p.recurrence.day == 60.0
    u, _ = io.load_nifti(tmp_path / "p" / "truth" / "u_day30.nii.gz", "u")
    np.testing.assert_array_equal(p.scans[1].regions.whole, u >= 0.25)
    np.testing.assert_array_equal(p.scans[1].regions.core, u >= 0.675)
    np.testing.assert_array_equal(p.scans[1].regions.enhancing, (u >= 0.675) & (u < 0.95))
    np.testing.assert_allclose(p.affine, AFFINE)


def test_label_noise_changes_only_boundary_voxels(cfg: SynthConfig, tmp_path: Path) -> None:
    clean = synth(cfg, tmp_path / "clean")
    noisy_cfg = replace(cfg, label_noise=0.3, seed=7)
    synth(noisy_cfg, tmp_path / "n1")
    synth(noisy_cfg, tmp_path / "n2")
    synth(replace(noisy_cfg, seed=8), tmp_path / "n3")
    assert clean["noise"]["label_noise"] == 0.0
    f = "tumor_segmentation/tumor_seg_day30.nii.gz"
    a, b, c = (_labels(tmp_path / n / f) for n in ("clean", "n1", "n2"))
    np.testing.assert_array_equal(b, c)  # reproducible per seed
    assert not np.array_equal(b, _labels(tmp_path / "n3" / f))
    pad = np.pad(a, 1, mode="edge")
    boundary = np.zeros(a.shape, bool)
    for ax in range(3):
        for sh in (2, 0):
            sl = [slice(1, -1)] * 3
            sl[ax] = slice(sh, sh + a.shape[ax])
            boundary |= pad[tuple(sl)] != a
    changed = a != b
    assert changed.any() and not np.any(changed & ~boundary)
    assert 0.15 < changed.sum() / boundary.sum() < 0.45


def test_boundary_noise_takes_a_neighbours_label() -> None:
    lab = np.zeros((6, 6), np.uint8)
    lab[:, 3:] = 2
    out = boundary_noise(lab, 1.0, np.random.default_rng(0))
    expect = lab.copy()
    expect[:, 2], expect[:, 3] = 2, 0  # p = 1: both sides of the edge swap
    np.testing.assert_array_equal(out, expect)


def test_blur_smooths_the_labels(cfg: SynthConfig, tmp_path: Path) -> None:
    t = synth(replace(cfg, blur_mm=1.5, recurrence_after=None), tmp_path / "b")
    assert t["noise"]["blur_mm"] == 1.5
    lab = _labels(tmp_path / "b" / "tumor_segmentation" / "tumor_seg_day30.nii.gz")
    u, _ = io.load_nifti(tmp_path / "b" / "truth" / "u_day30.nii.gz", "u")
    plain = threshold_labels(u, CONVENTIONS["brats2023"], 0.25, 0.675, 0.95)
    assert not np.array_equal(lab, plain)
    assert (lab == 1).sum() < (plain == 1).sum()  # blurring lowers the peak: less necrosis


def test_downsampled_synth(cfg: SynthConfig, tmp_path: Path) -> None:
    """--downsample 3 uses gbm.model.coarse's block average (zero-padded edge blocks) and affine."""
    wm, gm = synthetic_maps()
    wm[39] = 1.0  # a wm slab in the last x plane: 40 = 13 * 3 + 1, so it fills a third of a block
    c = replace(cfg, wm=str(write_nifti(tmp_path / "wm_slab.nii.gz", wm)), downsample=3,
                scan_days=(0.0,), recurrence_after=None, age_days=200.0)
    t = synth(c, tmp_path / "d")
    assert t["grid"]["shape"] == [14, 15, 10] and t["grid"]["spacing_mm"] == [3, 3, 3]
    out = tmp_path / "d" / "tissue_segmentation"
    csf = derive_csf(wm, gm)
    for name, fine in (("wm", wm), ("gm", gm), ("csf", csf)):
        m, aff = io.load_nifti(out / f"{name}_pbmap.nii.gz", name)
        np.testing.assert_array_equal(m, block_average(fine, (3, 3, 3)).astype(np.float32))
        np.testing.assert_array_equal(aff, coarse_affine(AFFINE, (3, 3, 3)))
    m, _ = io.load_nifti(out / "wm_pbmap.nii.gz", "wm")
    # the edge rule: the slab's block holds 1 real plane of 3 (and 2 of 3 along y at j = 14)
    np.testing.assert_array_equal(m[13, :14], np.float32(9 / 27))
    np.testing.assert_array_equal(m[13, 14], np.float32(6 / 27))
    u, _ = io.load_nifti(tmp_path / "d" / "truth" / "u_day0.nii.gz", "u")
    lab = _labels(tmp_path / "d" / "tumor_segmentation" / "tumor_seg.nii.gz")
    np.testing.assert_array_equal(lab, threshold_labels(u, CONVENTIONS["brats2023"], 0.25,
                                                        0.675, 0.95))
    assert set(np.unique(lab)) == {0, 1, 2, 3} and not lab[13].any()
    p = load_patient(patient_dir=tmp_path / "d")
    assert p.spacing == (3.0, 3.0, 3.0)
    np.testing.assert_array_equal(p.scans[0].regions.whole, u >= 0.25)


@pytest.mark.parametrize(("change", "message"), [
    ({"origin_mm": (60.0, 0.0, 0.0)}, "--origin-mm .* is outside the brain"),
    ({"origin_mm": (-0.5, -0.5, 14.0)}, "--origin-mm .* is outside the brain"),
    ({"theta_e": 0.7}, "0 < theta_e < theta_c < theta_n <= 1"),
    ({"theta_n": 1.2}, "0 < theta_e < theta_c < theta_n <= 1"),
    ({"scan_days": (10.0, 40.0)}, "first scan day must be 0"),
    ({"scan_days": (0.0, 40.0, 40.0)}, "strictly increasing"),
    ({"age_days": 0.0}, "--age-days must be a finite positive"),
    ({"dw": -1.0}, "--dw must be"), ({"rho": 0.0}, "--rho must be"),
    ({"downsample": 0}, "--downsample must be an integer >= 1"),
    ({"downsample": 31}, r"--downsample 31 is larger than the image \(40, 44, 30\)"),
    ({"labels": "auto"}, "synth needs a convention"),
    ({"label_noise": 1.5}, "--label-noise"),
])
def test_bad_settings(cfg: SynthConfig, tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        synth(replace(cfg, **change), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cohort(cfg: SynthConfig, tmp_path: Path) -> None:
    c = replace(cfg, scan_days=(0.0,), recurrence_after=None, seed=3)
    truths = synth_cohort(c, 2, tmp_path / "c")
    again = synth_cohort(c, 2, tmp_path / "c2")
    assert [t["origin_world_mm"] for t in truths] == [t["origin_world_mm"] for t in again]
    assert truths[0]["origin_world_mm"] != truths[1]["origin_world_mm"]
    wm, _ = synthetic_maps()
    for i, t in enumerate(truths):
        assert 0.02 / 1.5 <= t["dw"] <= 0.02 * 1.5 and 0.08 / 1.5 <= t["rho"] <= 0.08 * 1.5
        vox = np.round(t["origin_voxel"]).astype(int)
        assert wm[tuple(vox)] >= 0.9
        assert np.linalg.norm(np.subtract(t["origin_world_mm"], CENTRE_WORLD)) <= 30.0
        p = load_patient(patient_dir=tmp_path / "c" / f"patient-{i:03d}")
        assert p.scans[0].regions.whole.any()
    cohort = json.loads((tmp_path / "c" / "cohort.json").read_text())
    assert [p["patient"] for p in cohort["patients"]] == ["patient-000", "patient-001"]


def test_cli_flags(cfg: SynthConfig, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    toml = tmp_path / "s.toml"
    toml.write_text('dw = 0.02\nrho = 0.08\nscan_days = [0, 30]\n')
    x, y, z = CENTRE_WORLD
    a = parser.parse_args(["synth", "--wm", str(cfg.wm), "--gm", str(cfg.gm),
                           f"--origin-mm={x},{y},{z}", "--age-days", "80", "--no-recurrence",
                           "--config", str(toml), "--labels", "tum", "--out",
                           str(tmp_path / "cli")])
    assert a.func(a) == 0
    truth = json.loads((tmp_path / "cli" / "truth.json").read_text())
    assert truth["dw"] == 0.02 and truth["scan_days"] == [0, 30] and truth["labels"] == "tum"
    assert truth["recurrence_day"] is None and truth["origin_world_mm"] == list(CENTRE_WORLD)
    assert set(np.unique(_labels(tmp_path / "cli" / "tumor_segmentation" /
                                 "tumor_seg_day30.nii.gz"))) == {0, 1, 3, 4}
