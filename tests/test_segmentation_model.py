"""The segmentation observation model: interval hinges, Dice, numpy and torch sides agree."""

from __future__ import annotations

import numpy as np
import pytest
from gbm.errors import InputError
from gbm.problem.segmentation.model import (
    CORE,
    EDEMA,
    IGNORED,
    OUTSIDE,
    SegmentationModel,
    check_thresholds,
    classes_from_regions,
    dice,
)

TC, TE = 0.675, 0.25


def test_residual_is_the_distance_to_each_voxels_interval():
    cls = np.array([CORE, CORE, EDEMA, EDEMA, EDEMA, OUTSIDE, OUTSIDE, IGNORED], dtype=np.int8)
    u = np.array([0.9, 0.5, 0.1, 0.4, 0.8, 0.2, 0.3, 0.99])
    m = SegmentationModel(cls)
    # core [0.675, inf), edema [0.25, 0.675], outside (-inf, 0.25], ignored: nothing
    expect = np.array([0.0, 0.175, 0.15, 0.0, 0.125, 0.0, 0.05, 0.0])
    np.testing.assert_allclose(m.residuals(u, TC, TE), expect, atol=1e-15)
    assert m.misfit(u, TC, TE) == pytest.approx(0.5 * float(expect @ expect), rel=1e-14)
    assert m.n_whole == 5


def test_misfit_is_zero_exactly_when_the_model_reproduces_the_segmentation():
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 1, size=(20, 30))
    cls = classes_from_regions(u >= TC, u >= TE)
    m = SegmentationModel(cls)
    assert m.misfit(u, TC, TE) == 0.0
    assert m.dice(u, TC, TE) == (1.0, 1.0)
    assert m.misfit(u, TC + 0.01, TE) > 0          # a core voxel with u in [0.675, 0.685)
    assert m.misfit(u, TC, TE - 0.01) > 0          # an outside voxel with u in [0.24, 0.25)


def test_far_field_adds_nothing():
    """Brain voxels far from the tumour (u = 0, outside) contribute exactly 0: the brain's size
    cannot pull the thresholds (unlike a logistic likelihood)."""
    u = np.array([0.8, 0.3, 0.1])
    cls = np.array([CORE, EDEMA, OUTSIDE], dtype=np.int8)
    small = SegmentationModel(cls).misfit(u, 0.7, 0.35)
    big_u = np.r_[u, np.zeros(100_000)]
    big_c = np.r_[cls, np.full(100_000, OUTSIDE, dtype=np.int8)]
    assert SegmentationModel(big_c).misfit(big_u, 0.7, 0.35) == small
    for tc, te in ((0.6, 0.2), (0.8, 0.45)):
        assert (SegmentationModel(big_c).misfit(big_u, tc, te)
                == SegmentationModel(cls).misfit(u, tc, te))


def test_classes_are_nested_and_ignored_wins():
    core = np.array([1, 0, 0, 1], bool)
    whole = np.array([1, 1, 0, 0], bool)      # a core voxel outside 'whole' still counts as core
    valid = np.array([1, 1, 1, 0], bool)
    np.testing.assert_array_equal(classes_from_regions(core, whole, valid),
                                  [CORE, EDEMA, OUTSIDE, IGNORED])


def test_dice_exact():
    a = np.zeros(10, bool)
    b = np.zeros(10, bool)
    a[:4] = True
    b[2:8] = True
    assert dice(a, b) == pytest.approx(2 * 2 / (4 + 6))
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    m = SegmentationModel(classes_from_regions(a & b, a | b))
    u = np.where(a & b, 0.9, np.where(a | b, 0.4, 0.0))
    assert m.dice(u, TC, TE) == (1.0, 1.0)


@pytest.mark.parametrize("shape", [(7, 9), (5, 6, 4)])
def test_torch_side_equals_numpy_side(shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    u = rng.uniform(0, 1, size=shape)
    cls = rng.integers(-1, 3, size=shape).astype(np.int8)
    m = SegmentationModel(cls)
    for tc, te in ((TC, TE), (0.55, 0.1), (0.8, 0.45)):
        ref = m.misfit(u, tc, te)
        ut = torch.tensor(u, dtype=torch.float64)
        got = m.misfit_torch(ut, torch.tensor(tc, dtype=torch.float64), te)
        np.testing.assert_allclose(float(got), ref, rtol=1e-13, atol=1e-16)
        idx = np.flatnonzero(rng.uniform(size=u.size) < 0.5)
        sub = SegmentationModel(cls.reshape(-1)[idx])
        got_i = m.misfit_torch(ut.reshape(-1)[torch.as_tensor(idx)], tc, te,
                               index=torch.as_tensor(idx))
        np.testing.assert_allclose(float(got_i), sub.misfit(u.reshape(-1)[idx], tc, te),
                                   rtol=1e-13, atol=1e-16)


def test_torch_gradient_in_the_thresholds_matches_finite_differences():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    u = rng.uniform(0, 1, size=200)
    cls = rng.integers(0, 3, size=200).astype(np.int8)
    m = SegmentationModel(cls)
    tc = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    te = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    m.misfit_torch(torch.tensor(u), tc, te).backward()
    h = 1e-6
    fd_c = (m.misfit(u, 0.6 + h, 0.3) - m.misfit(u, 0.6 - h, 0.3)) / (2 * h)
    fd_e = (m.misfit(u, 0.6, 0.3 + h) - m.misfit(u, 0.6, 0.3 - h)) / (2 * h)
    assert float(tc.grad) == pytest.approx(fd_c, rel=1e-5)
    assert float(te.grad) == pytest.approx(fd_e, rel=1e-5)


def test_thresholds_must_be_ordered():
    check_thresholds(0.675, 0.25)
    with pytest.raises(InputError, match="theta_e < theta_c"):
        check_thresholds(0.2, 0.3)
    with pytest.raises(InputError):
        SegmentationModel(np.zeros(3, dtype=float)).misfit(np.zeros(3), TC, TE)
