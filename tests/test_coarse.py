"""Coarse grids and sub-boxes (gbm.model.coarse): exact block means, overlaying affines,
sub-boxes that keep world coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AFFINE, synthetic_maps
from gbm.model.coarse import (
    block_average,
    block_fraction,
    coarse_affine,
    coarse_factors,
    roi_bounds,
    sub_geometry,
)
from gbm.model.geometry import from_maps


def test_block_average_exact_with_zero_padding():
    a = np.arange(5 * 4 * 3, dtype=float).reshape(5, 4, 3)
    b = block_average(a, (2, 2, 3))
    assert b.shape == (3, 2, 1)
    assert b[0, 0, 0] == pytest.approx(a[0:2, 0:2, 0:3].mean())
    # the last block along x holds one real plane and one zero plane
    assert b[2, 1, 0] == pytest.approx(a[4:5, 2:4, 0:3].sum() / 12)
    assert block_average(a, (1, 1, 1)).tolist() == a.tolist()


def test_block_fraction_counts_region_voxels():
    r = np.zeros((4, 4, 2), bool)
    r[0, 0, 0] = r[0, 1, 0] = r[1, 0, 1] = True
    f = block_fraction(r, (2, 2, 2))
    assert f[0, 0, 0] == 3 / 8 and f.sum() == 3 / 8


@pytest.mark.parametrize("factors", [(2, 2, 2), (3, 2, 1)])
def test_coarse_voxel_sits_at_its_blocks_centre(factors):
    aff = np.array([[0.0, -1.2, 0, 10], [0.9, 0, 0, -3], [0, 0, 2.0, 5], [0, 0, 0, 1]])
    c = coarse_affine(aff, factors)
    f = np.asarray(factors)
    for ijk in ([0, 0, 0], [2, 1, 3]):
        block = [np.arange(f[a] * ijk[a], f[a] * ijk[a] + f[a]) for a in range(3)]
        centre_fine = [b.mean() for b in block]
        np.testing.assert_allclose(c @ np.r_[ijk, 1.0], aff @ np.r_[centre_fine, 1.0],
                                   atol=1e-12)


def test_coarse_factors():
    assert coarse_factors((1.0, 1.0, 1.0), 2.0) == (2, 2, 2)
    assert coarse_factors((1.0, 0.5, 3.0), 2.0) == (2, 4, 1)
    assert coarse_factors((1.0, 1.0, 1.0), 2.0, ndim=2) == (2, 2, 1)


def test_sub_geometry_keeps_world_coordinates_and_fields():
    wm, gm = synthetic_maps()
    g = from_maps(wm, gm, AFFINE).with_phase_field()
    region = np.zeros(g.shape, bool)
    region[10, 12, 8] = True
    lo, hi = roi_bounds(g, region, 3.0)
    assert lo == (7, 9, 5) and hi == (14, 16, 12)
    s = sub_geometry(g, lo, hi)
    assert s.shape == (7, 7, 7)
    np.testing.assert_array_equal(s.phi, g.phi[7:14, 9:16, 5:12])
    p = np.array([1.5, 2.0, 0.5])                      # local mm of the sub-box
    np.testing.assert_allclose(s.local_to_world(p),
                               g.local_to_world(p + np.array(lo, float) * g.spacing))
    np.testing.assert_array_equal(g.crop(s.to_full(s.wm))[7:14, 9:16, 5:12], s.wm)
