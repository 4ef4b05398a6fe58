"""Radiotherapy plans: margins in real mm, top-k model plan, coverage (gbm.clinical.plans)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from gbm.clinical import plans
from gbm.errors import InputError
from scipy import ndimage


def _single_voxel(shape: tuple[int, int, int], at: tuple[int, int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[at] = True
    return m


@pytest.mark.parametrize("r", [1, 2, 3, 5, 7.5])
def test_single_voxel_isotropic_is_the_lattice_ball(r: float) -> None:
    n = 21
    c = (10, 10, 10)
    out = plans.dilate_mm(_single_voxel((n, n, n), c), (1.0, 1.0, 1.0), r)
    expected = {(c[0] + i, c[1] + j, c[2] + k)
                for i, j, k in itertools.product(range(-8, 9), repeat=3) if i * i + j * j + k * k <= r * r}
    got = set(zip(*np.nonzero(out)))
    assert got == expected
    # known lattice counts: r=1 -> 7, r=2 -> 33, r=3 -> 123, r=5 -> 515
    counts = {1: 7, 2: 33, 3: 123, 5: 515}
    if r in counts:
        assert out.sum() == counts[r]


def test_anisotropic_margin_is_in_mm_not_voxels() -> None:
    shape = (41, 41, 21)
    c = (20, 20, 10)
    spacing = (1.0, 1.0, 3.0)
    out = plans.dilate_mm(_single_voxel(shape, c), spacing, 15.0)
    # along x: 15 voxels reached, 16 not; along z: 5 voxels (15 mm) reached, 6 (18 mm) not
    assert out[c[0] + 15, c[1], c[2]] and out[c[0] - 15, c[1], c[2]]
    assert not out[c[0] + 16, c[1], c[2]]
    assert out[c[0], c[1], c[2] + 5] and out[c[0], c[1], c[2] - 5]
    assert not out[c[0], c[1], c[2] + 6] and not out[c[0], c[1], c[2] - 6]
    zs = np.nonzero(out[c[0], c[1], :])[0]
    assert (zs.min(), zs.max()) == (c[2] - 5, c[2] + 5)
    # an ellipsoid in voxels: (i^2 + j^2 + (3k)^2) <= 225
    idx = np.indices(shape)
    d2 = (idx[0] - c[0]) ** 2 + (idx[1] - c[1]) ** 2 + (3 * (idx[2] - c[2])) ** 2
    np.testing.assert_array_equal(out, d2 <= 225)
    # dilating by 15 *voxels* (a ball of radius 15 in index space, what a voxel-count dilation of one
    # voxel gives) is wrong on this grid: it reaches 15 slices = 45 mm in z (here up to the edge)
    by_voxels = ((idx - np.asarray(c).reshape(3, 1, 1, 1)) ** 2).sum(axis=0) <= 225
    assert by_voxels[c[0], c[1], shape[2] - 1]
    assert by_voxels[c[0], c[1], c[2] + 6] and not out[c[0], c[1], c[2] + 6]
    assert by_voxels.sum() > 2 * out.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing,margin", [((1.0, 1.0, 1.0), 4.0), ((0.9, 1.3, 2.5), 5.0),
                                            ((1.0, 1.0, 3.0), 15.0)])
def test_restricted_box_equals_full_transform(seed: int, spacing: tuple[float, ...],
                                              margin: float) -> None:
    rng = np.random.default_rng(seed)
    shape = (30, 26, 18)
    mask = np.zeros(shape, dtype=bool)
    # a few random blobs in a sub-region, so the box is really smaller than the image
    lo = rng.integers(0, 8, size=3)
    sub = tuple(slice(int(a), int(a) + 8) for a in lo)
    mask[sub] = rng.random((8, 8, 8)) < 0.05
    mask[tuple(int(a) + 3 for a in lo)] = True
    full = ndimage.distance_transform_edt(~mask, sampling=spacing) <= margin * (1 + 1e-9)
    np.testing.assert_array_equal(plans.dilate_mm(mask, spacing, margin), full)
    assert full.sum() < full.size  # the margin does not fill the image (a real test of the box)


def test_dilate_edge_cases() -> None:
    empty = np.zeros((5, 5, 5), dtype=bool)
    assert not plans.dilate_mm(empty, (1, 1, 1), 3.0).any()
    one = _single_voxel((5, 5, 5), (0, 0, 4))
    np.testing.assert_array_equal(plans.dilate_mm(one, (1, 1, 1), 0.0), one)
    # a voxel at the corner: the box is clipped to the image
    assert plans.dilate_mm(one, (1, 1, 1), 1.0).sum() == 4
    with pytest.raises(InputError, match="margin"):
        plans.dilate_mm(one, (1, 1, 1), -1.0)
    with pytest.raises(InputError, match="spacing"):
        plans.dilate_mm(one, (1, 1), 1.0)
    with pytest.raises(InputError, match="spacing"):
        plans.dilate_mm(one, (1, 0, 1), 1.0)


def test_standard_plan_is_cut_to_the_brain() -> None:
    shape = (31, 31, 31)
    core = _single_voxel(shape, (15, 15, 15))
    brain = np.zeros(shape, dtype=bool)
    brain[:, :18, :] = True  # the brain ends 3 mm from the core in +y
    p = plans.standard_plan(core, brain, (1.0, 1.0, 1.0), margin_mm=10.0)
    assert not (p & ~brain).any()
    assert p[15, 17, 15] and not p[15, 18, 15]
    assert p[15, 5, 15] and not p[15, 4, 15]
    np.testing.assert_array_equal(p, plans.dilate_mm(core, (1, 1, 1), 10.0) & brain)


@pytest.mark.parametrize("margin", [0.0, -15.0, float("nan")])
def test_standard_plan_rejects_non_positive_margin(margin: float) -> None:
    m = np.ones((3, 3, 3), dtype=bool)
    with pytest.raises(InputError, match="--margin-mm must be > 0"):
        plans.standard_plan(m, m, (1, 1, 1), margin_mm=margin)


def test_model_plan_top_k_inside_brain() -> None:
    rng = np.random.default_rng(3)
    shape = (12, 10, 8)
    u = rng.random(shape)
    brain = rng.random(shape) < 0.6
    u[~brain] = 2.0  # higher than anything in the brain: must be ignored
    k = 57
    p = plans.model_plan(u, brain, k)
    assert p.sum() == k
    assert not (p & ~brain).any()
    # the top-k set: every chosen voxel is >= every brain voxel left out
    assert u[p].min() > u[brain & ~p].max()
    # k is clipped to the brain, k <= 0 gives an empty plan
    np.testing.assert_array_equal(plans.model_plan(u, brain, 10**9), brain)
    assert not plans.model_plan(u, brain, 0).any()
    assert not plans.model_plan(u, brain, -3).any()


def test_model_plan_ties_broken_by_flat_index() -> None:
    shape = (4, 4, 4)
    u = np.zeros(shape)
    brain = np.ones(shape, dtype=bool)
    u.ravel()[[5, 40, 20, 63]] = 0.7  # a 4-way tie for the top
    u.ravel()[9] = 0.9
    p = plans.model_plan(u, brain, 3)
    assert sorted(np.flatnonzero(p).tolist()) == [5, 9, 20]
    # zeros tie too: filling beyond the nonzero voxels takes the lowest indices first
    p = plans.model_plan(u, brain, 7)
    assert sorted(np.flatnonzero(p).tolist()) == [0, 1, 5, 9, 20, 40, 63]
    with pytest.raises(InputError, match="non-finite"):
        plans.model_plan(np.full(shape, np.nan), brain, 2)
    with pytest.raises(InputError, match="shape"):
        plans.model_plan(u, brain[:3], 2)


def test_iso_plans() -> None:
    u = np.linspace(0, 1, 11).reshape(11, 1, 1) * np.ones((1, 2, 2))
    brain = np.ones(u.shape, dtype=bool)
    brain[10] = False
    out = plans.iso_plans(u, brain, [0.25, 0.5])
    assert set(out) == {0.25, 0.5}
    assert out[0.25].sum() == 7 * 4  # u = 0.3 .. 0.9 (u = 1.0 is outside the brain)
    assert out[0.5].sum() == 5 * 4  # 0.5 .. 0.9
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(InputError, match="level"):
            plans.iso_plans(u, brain, [bad])


def test_coverage_exact_fractions() -> None:
    r = np.zeros((4, 4, 4), dtype=bool)
    r[0, 0, :] = True  # 4 voxels
    p = np.zeros_like(r)
    p[0, 0, :3] = True
    p[3, 3, 3] = True
    assert plans.coverage(r, p) == 0.75
    assert plans.coverage(r, np.zeros_like(r)) == 0.0
    assert plans.coverage(r, np.ones_like(r)) == 1.0
    assert plans.coverage(np.zeros_like(r), p) is None
    r[1, 1, 1] = True  # 5 voxels, 3 covered
    assert plans.coverage(r, p) == pytest.approx(3 / 5, abs=0)


def test_plan_report_hand_made() -> None:
    shape = (4, 4, 4)
    spacing = (2.0, 2.0, 2.5)  # 10 mm^3 = 0.01 ml per voxel
    s = np.zeros(shape, dtype=bool)
    s[:2] = True  # 32 voxels
    m = np.zeros(shape, dtype=bool)
    m[1:2] = True  # 16 voxels, all in s
    m[3, 0, 0] = True  # 17
    re = np.zeros(shape, dtype=bool)
    re[0, 0, 0] = re[1, 0, 0] = re[3, 0, 0] = re[3, 1, 1] = True  # 4 voxels
    ra = re.copy()
    ra[2, :, :] = True  # + 16 = 20 voxels
    rep = plans.plan_report(s, m, spacing, re, ra)
    assert rep.voxels_standard == 32 and rep.voxels_model == 17
    assert rep.volume_standard_ml == pytest.approx(0.32)
    assert rep.volume_model_ml == pytest.approx(0.17)
    assert rep.overlap_ml == pytest.approx(0.16)
    assert rep.recurrence_volume_ml == pytest.approx(0.04)
    assert rep.recurrence_all_volume_ml == pytest.approx(0.20)
    assert rep.recurrence_coverage_standard == 0.5  # (0,0,0), (1,0,0)
    assert rep.recurrence_coverage_model == 0.5  # (1,0,0), (3,0,0)
    assert rep.missed_voxels_standard == 2 and rep.missed_voxels_model == 2
    assert rep.recurrence_coverage_standard_all == 2 / 20
    assert rep.recurrence_coverage_model_all == 2 / 20
    assert rep.missed_voxels_standard_all == 18 and rep.missed_voxels_model_all == 18
    assert rep.missed_ml_standard_all == pytest.approx(0.18)
    # plain types only (JSON-ready), PredictGBM's key names in a fixed order
    d = rep.to_json()
    for v in d.values():
        assert v is None or type(v) in (int, float)
    assert list(d)[:6] == ["voxel_volume_ml", "voxels_standard", "voxels_model",
                           "volume_standard_ml", "volume_model_ml", "overlap_ml"]
    assert list(d)[6:8] == ["recurrence_volume_ml", "recurrence_voxels"]
    assert plans.PlanReport.from_json(dict(d, plan_day=0.0)) == rep
    # nothing given: every recurrence entry is None; an empty recurrence: coverage None, volume 0
    rep = plans.plan_report(s, m, spacing)
    for key in ("recurrence_coverage_standard", "recurrence_coverage_model_all",
                "recurrence_volume_ml", "missed_voxels_model", "missed_ml_standard_all"):
        assert getattr(rep, key) is None
    rep = plans.plan_report(s, m, spacing, recurrence_enhancing=np.zeros(shape, dtype=bool))
    assert rep.recurrence_coverage_standard is None and rep.recurrence_volume_ml == 0.0
    assert rep.missed_voxels_standard == 0
    with pytest.raises(InputError, match="recurrence_all"):
        plans.plan_report(s, m, spacing, recurrence_all=np.zeros((4, 4, 3), dtype=bool))
