"""Geometry and NIfTI I/O: orientation, scaling, cropping, mapping back, validation."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AFFINE, synthetic_maps, write_nifti
from gbm import InputError, io, load_geometry
from gbm.model.geometry import DEFAULT_SEED_WORLD_MM, DEFAULT_SLICE, IC_WIDTH_MM2


def test_reorientation_to_ras_keeps_world_positions(tmp_path):
    wm, gm = synthetic_maps()
    wm[5, 6, 7] = 0.5  # asymmetric marker
    # the same image stored flipped in x and y (LPS-like): identical world content
    flip = AFFINE.copy()
    flip[0, 0], flip[1, 1] = -1.0, -1.0
    flip[0, 3] = AFFINE[0, 3] + (wm.shape[0] - 1)
    flip[1, 3] = AFFINE[1, 3] + (wm.shape[1] - 1)
    a = write_nifti(tmp_path / "a.nii.gz", wm)
    b = write_nifti(tmp_path / "b.nii.gz", wm[::-1, ::-1, :], flip)
    da, aa = io.load_nifti(a, "a")
    db, ab = io.load_nifti(b, "b")
    np.testing.assert_array_equal(da, db)
    np.testing.assert_allclose(aa, ab)
    assert da.flags.c_contiguous


def test_uint8_maps_are_scaled(tmp_path):
    wm, gm = synthetic_maps()
    p = write_nifti(tmp_path / "w.nii.gz", np.round(wm * 255), dtype=np.uint8)
    d, _ = io.load_nifti(p, "w")
    assert d.max() == 1.0 and d.min() == 0.0


def test_crop_and_to_full_roundtrip(brain_files):
    g = load_geometry(str(brain_files["wm"]), str(brain_files["gm"]), margin=3)
    wm, gm = synthetic_maps()
    mask = (wm + gm) >= 0.5
    idx = np.argwhere(mask)
    assert g.offset == tuple(int(v) for v in np.maximum(idx.min(0) - 3, 0))
    hi = np.minimum(idx.max(0) + 4, wm.shape)
    assert g.shape == tuple(int(v) for v in hi - np.maximum(idx.min(0) - 3, 0))
    np.testing.assert_array_equal(g.to_full(g.wm), wm.astype(np.float32))
    # local <-> world is exact and consistent with the crop affine
    p = np.array([[1.0, 2.0, 3.0], [10.5, 0.0, 7.25]])
    np.testing.assert_allclose(g.world_to_local(g.local_to_world(p)), p, atol=1e-12)
    np.testing.assert_allclose(g.local_to_world(np.zeros(3)), AFFINE[:3, :3] @ g.offset
                               + AFFINE[:3, 3])


def test_slice_geometry(brain_files):
    k = 15
    g = load_geometry(str(brain_files["wm"]), str(brain_files["gm"]), slice_index=k, margin=2)
    assert g.ndim == 2 and g.offset[2] == k and len(g.spacing) == 2
    full = g.to_full(g.wm)
    wm, _ = synthetic_maps()
    np.testing.assert_array_equal(full[:, :, k], wm[:, :, k])
    assert full[:, :, k + 1].sum() == 0
    with pytest.raises(InputError, match="not on axial slice"):
        g.world_to_local([0.0, 0.0, AFFINE[2, 3] + k + 2])


def test_diffusivity_and_ic(brain_files):
    g = load_geometry(str(brain_files["wm"]), str(brain_files["gm"]))
    d = g.diffusivity(0.13)
    assert np.isclose(d.max(), 0.13) and np.isclose(d[g.gm == 1].min(), 0.013)
    seed = np.array([10.0, 12.0, 9.0])  # a voxel centre (1 mm voxels)
    u0 = g.initial_condition(seed)
    assert u0[10, 12, 9] == pytest.approx(0.1, abs=1e-15)
    # paper Eq. 2 read in cm: 0.1 exp(-r^2/10 mm^2) -> 8.2 % of the peak at r = 5 mm
    assert u0[15, 12, 9] == pytest.approx(0.1 * 0.0821, rel=1e-3)
    assert u0[13, 16, 9] == pytest.approx(0.1 * np.exp(-25.0 / IC_WIDTH_MM2), rel=1e-12)


def test_embedded_atlas_default_seed_is_in_white_matter():
    g = load_geometry(slice_index=DEFAULT_SLICE)
    assert g.full_shape == (197, 233, 189)
    s = g.world_to_local(DEFAULT_SEED_WORLD_MM)
    i, j = np.round(s).astype(int)
    assert g.wm[i, j] > 0.9


@pytest.mark.parametrize("case, message", [
    ("missing", "file not found"),
    ("truncated", "cannot read"),
    ("shape", "shape"),
    ("affine", "affine differs"),
    ("nan", "NaN"),
    ("range", "tissue fractions"),
    ("empty", "brain mask is empty"),
    ("only_wm", "give both --wm and --gm"),
])
def test_bad_maps(tmp_path, brain_files, case, message):
    wm, gm = str(brain_files["wm"]), str(brain_files["gm"])
    w, g = synthetic_maps()
    if case == "missing":
        gm = str(tmp_path / "nope.nii.gz")
    elif case == "truncated":
        data = brain_files["gm"].read_bytes()
        (tmp_path / "t.nii.gz").write_bytes(data[: len(data) // 2])
        gm = str(tmp_path / "t.nii.gz")
    elif case == "shape":
        gm = str(write_nifti(tmp_path / "s.nii.gz", g[:-1]))
    elif case == "affine":
        a = AFFINE.copy()
        a[0, 3] += 5
        gm = str(write_nifti(tmp_path / "a.nii.gz", g, a))
    elif case == "nan":
        g[3, 3, 3] = np.nan
        gm = str(write_nifti(tmp_path / "n.nii.gz", g))
    elif case == "range":
        g[3, 3, 3] = 1.7
        gm = str(write_nifti(tmp_path / "r.nii.gz", g))
    elif case == "empty":
        wm = str(write_nifti(tmp_path / "e1.nii.gz", 0 * w))
        gm = str(write_nifti(tmp_path / "e2.nii.gz", 0 * g))
    elif case == "only_wm":
        gm = None
    with pytest.raises(InputError, match=message):
        load_geometry(wm, gm)


def test_slice_out_of_range(brain_files):
    with pytest.raises(InputError, match="slice index 99 is out of range"):
        load_geometry(str(brain_files["wm"]), str(brain_files["gm"]), slice_index=99)


def test_atomic_writes_refuse_overwrite(tmp_path):
    p = io.write_json_atomic(tmp_path / "x.json", {"a": 1})
    with pytest.raises(InputError, match="use --force"):
        io.write_json_atomic(p, {"a": 2})
    io.write_json_atomic(p, {"a": 2}, force=True)
    assert p.read_text().strip().endswith("}") and '"a": 2' in p.read_text()
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]  # no temp files left


def test_staged_outdir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), io.staged_outdir(out) as tmp:
        (tmp / "partial.txt").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with io.staged_outdir(out) as tmp:
        (tmp / "ok.txt").write_text("x")
    assert (out / "ok.txt").exists()
    with pytest.raises(InputError, match="use --force"), io.staged_outdir(out):
        pass
    with io.staged_outdir(out, force=True) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize("slice_index", [None, 14])
def test_from_maps_reuses_a_given_brain_mask(slice_index):
    """A caller's mask (PatientData.mask) crops exactly like the one from_maps builds; the box
    follows the mask it is given."""
    from gbm.model.geometry import brain_mask, from_maps

    wm, gm = synthetic_maps()
    own = from_maps(wm, gm, AFFINE, slice_index=slice_index)
    given = from_maps(wm, gm, AFFINE, slice_index=slice_index, mask=brain_mask(wm, gm))
    assert given.offset == own.offset and given.shape == own.shape
    np.testing.assert_array_equal(given.wm, own.wm)
    small = np.zeros(wm.shape, bool)
    small[18:22, 20:24, 13:16] = True  # a smaller mask: a smaller box (margin 5 around it)
    g = from_maps(wm, gm, AFFINE, slice_index=slice_index, mask=small)
    assert g.offset[:2] == (13, 15) and g.shape[:2] == (14, 14)
    with pytest.raises(InputError, match=r"mask has shape \(40, 44\)"):
        from_maps(wm, gm, AFFINE, mask=small[:, :, 0])
