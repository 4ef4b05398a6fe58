"""gbm synth's start and model variants (issue 18, "the unknown start"): the Gaussian start written
at age 0, arithmetic vs harmonic face means, the closed-below domain rule, flags and errors."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import AFFINE, synthetic_maps, write_nifti
from gbm import _core, io
from gbm.cli.synth import register
from gbm.errors import InputError
from gbm.jobs.synth import GaussianStart, SynthConfig, _geometry, _Maps, synth
from gbm.model.geometry import from_maps

#: A voxel centre near the ball brain's centre (world mm): the start's peak sits on a voxel.
ON_VOXEL = (19.0 - 20.0, 21.0 - 22.0, 14.0 - 15.0)


@pytest.fixture
def cfg(tmp_path: Path) -> SynthConfig:
    wm, gm = synthetic_maps()
    return SynthConfig(wm=str(write_nifti(tmp_path / "wm.nii.gz", wm)),
                       gm=str(write_nifti(tmp_path / "gm.nii.gz", gm)),
                       origin_mm=ON_VOXEL, dw=0.02, rho=0.08, age_days=40.0,
                       scan_days=(0.0,), recurrence_after=None)


def test_the_start_in_the_written_truth(cfg: SynthConfig, tmp_path: Path) -> None:
    """u_start = 0.5 exp(-r^2 / 2^2) where >= 0.2 (r from the voxel's world position), else 0."""
    c = replace(cfg, start_peak=0.5, start_radius_mm=2.0, start_cutoff=0.2)
    truth = synth(c, tmp_path / "p")
    s = truth["start"]
    assert (s["peak"], s["radius_mm"], s["width_mm2"], s["cutoff"]) == (0.5, 2.0, 4.0, 0.2)
    assert s["support_radius_mm"] == pytest.approx(2.0 * math.sqrt(math.log(2.5)), rel=1e-15)
    assert s["half_max_radius_mm"] == pytest.approx(2.0 * math.sqrt(math.log(2.0)), rel=1e-15)
    assert s["day"] == -40.0 and s["max_u"] == 0.5
    u0, aff = io.load_nifti(tmp_path / "p" / s["file"], "u0")
    np.testing.assert_array_equal(aff, AFFINE)
    world = np.einsum("ij,j...->i...", AFFINE[:3, :3], np.indices(u0.shape)) \
        + AFFINE[:3, 3][:, None, None, None]
    r2 = sum((world[k] - ON_VOXEL[k]) ** 2 for k in range(3))
    g = 0.5 * np.exp(-r2 / 4.0)
    expect = np.where(g >= 0.2, g, 0.0).astype(np.float32)
    np.testing.assert_allclose(u0, expect, rtol=1e-6, atol=0)
    assert float(u0.max()) == np.float32(0.5)
    assert np.sqrt(r2[u0 > 0]).max() <= s["support_radius_mm"]
    assert (u0 > 0).sum() == 27  # the 3x3x3 block: r <= sqrt(3) = 1.73 < 1.91 < 2
    assert truth["model"] == {"domain": "phase field (Cahn-Hilliard) of the brain mask",
                              "closed_below": None, "face_mean": "harmonic", "ratio": 10.0}


def test_default_start_is_the_papers(cfg: SynthConfig) -> None:
    wm, gm = synthetic_maps()
    geom = from_maps(wm, gm, AFFINE)
    local = geom.world_to_local(np.asarray(ON_VOXEL)) + 0.3
    assert cfg.start == GaussianStart(0.1, 10.0, 0.0)
    np.testing.assert_array_equal(cfg.start.density(geom, local), geom.initial_condition(local))
    assert cfg.start.support_radius_mm is None


@pytest.mark.parametrize("ndim", [2, 3])
def test_two_cells_exchange_by_the_face_mean(ndim: int) -> None:
    """a = D phi = 1 | 4, h = 1, rho = 0: one step of tau moves tau a_f from cell 2 to cell 1,
    a_f = 1.6 (harmonic) or 2.5 (arithmetic); dt_stable = 1 / a_f."""
    shape = (1, 2) if ndim == 2 else (1, 1, 2)
    u0 = np.array([0.0, 1.0]).reshape(shape)
    d = np.array([1.0, 4.0]).reshape(shape)
    phi = np.ones(shape)
    for mean, af in (("harmonic", 1.6), ("arithmetic", 2.5)):
        af32 = float(np.float32(af))
        s = _core.FisherKpp(u0, d, phi, [1.0] * ndim, 0.0, dt=0.1, face_mean=mean)
        assert s.dt_stable == 1.0 / af32
        assert _core.stable_dt(d, phi, [1.0] * ndim, 0.0, face_mean=mean) == 1.0 / af32
        s.advance(1)
        np.testing.assert_allclose(s.state().ravel(), [0.1 * af32, 1 - 0.1 * af32], rtol=0,
                                   atol=1e-15)
    with pytest.raises(ValueError, match="face_mean must be 'harmonic' or 'arithmetic'; got"):
        _core.FisherKpp(u0, d, phi, [1.0] * ndim, 0.0, face_mean="geometric")


def _slab_maps() -> _Maps:
    """Two white-matter blocks x < 10 and x > 10 separated by the plane x = 10 where
    wm + gm = 0.05 (e.g. a sulcus of CSF)."""
    shape = (21, 12, 12)
    wm = np.zeros(shape)
    wm[2:19, 2:10, 2:10] = 1.0
    wm[10] = np.where(wm[10] > 0, 0.05, 0.0)
    gm = np.zeros(shape)
    return _Maps(wm=wm, gm=gm, csf=np.zeros(shape), affine=AFFINE, source="slab",
                 csf_derived=False)


@pytest.mark.parametrize(("closed_below", "crosses"), [(0.1, False), (0.01, True)])
def test_closed_faces_carry_no_flux(closed_below: float, crosses: bool) -> None:
    """rho = 0: the mass sum(phi u) on the side of the start is kept to round-off and nothing
    crosses a plane below the rule; with the plane inside the domain, mass crosses it."""
    geom = _geometry(_slab_maps(), closed_below)
    assert geom.phi is not None and set(np.unique(geom.phi)) <= {0.0, 1.0}
    x10 = 10 - geom.offset[0]
    u0 = np.zeros(geom.shape)
    u0[x10 - 3: x10, 4:8, 4:8] = 0.8
    s = _core.FisherKpp(u0, geom.diffusivity(0.5), geom.phi, list(geom.spacing), 0.0,
                        face_mean="arithmetic")
    s.advance(400)
    u = s.state()
    mass0 = float((geom.phi * u0).sum())
    assert float((geom.phi * u).sum()) == pytest.approx(mass0, rel=1e-13)
    right = float(u[x10 + 1:].sum())
    assert (right > 1e-3) if crosses else (right == 0.0)


def test_variants_change_the_truth_and_are_recorded(cfg: SynthConfig, tmp_path: Path) -> None:
    base = synth(cfg, tmp_path / "h")
    v = synth(replace(cfg, face_mean="arithmetic", closed_below=0.1), tmp_path / "a")
    assert v["model"]["face_mean"] == "arithmetic" and v["model"]["closed_below"] == 0.1
    assert "wm + gm >= 0.1" in v["model"]["domain"]
    ub, _ = io.load_nifti(tmp_path / "h" / "truth" / "u_day0.nii.gz", "u")
    uv, _ = io.load_nifti(tmp_path / "a" / "truth" / "u_day0.nii.gz", "u")
    assert np.abs(ub - uv).max() > 1e-3
    assert base["config"]["face_mean"] == "harmonic" and v["config"]["closed_below"] == 0.1


def test_cli_flags(cfg: SynthConfig, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    x, y, z = ON_VOXEL
    a = parser.parse_args(["synth", "--wm", str(cfg.wm), "--gm", str(cfg.gm),
                           f"--origin-mm={x},{y},{z}", "--age-days", "30", "--no-recurrence",
                           "--start-peak", "0.5", "--start-radius-mm", "4.472",
                           "--start-cutoff", "0.1", "--closed-below", "0.1",
                           "--face-mean", "arithmetic", "--out", str(tmp_path / "cli")])
    assert a.func(a) == 0
    t = json.loads((tmp_path / "cli" / "truth.json").read_text())
    assert (t["start"]["peak"], t["start"]["radius_mm"], t["start"]["cutoff"]) == (0.5, 4.472,
                                                                                   0.1)
    assert t["start"]["support_radius_mm"] == pytest.approx(5.673, abs=1e-3)
    assert t["model"]["face_mean"] == "arithmetic" and t["model"]["closed_below"] == 0.1


@pytest.mark.parametrize(("change", "message"), [
    ({"start_peak": 1.5}, r"--start-peak must be in \(0, 1\]"),
    ({"start_radius_mm": 0.0}, "--start-radius-mm must be"),
    ({"start_cutoff": 0.1}, r"--start-cutoff must be in \[0, peak = 0.1\)"),
    ({"closed_below": 0.0}, r"--closed-below must be in \(0, 1\]"),
    ({"face_mean": "geometric"}, "--face-mean must be harmonic or arithmetic"),
])
def test_bad_variants(cfg: SynthConfig, tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        synth(replace(cfg, **change), tmp_path / "x")
    assert not (tmp_path / "x").exists()
