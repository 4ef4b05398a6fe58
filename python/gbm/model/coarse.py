"""Coarser grids and sub-boxes of a problem, for multilevel fitting.

* :func:`block_average` / :func:`coarse_affine`: tissue maps averaged over blocks of
  f0 x f1 x f2 voxels on the grid whose voxel (I, J, K) is the block's centre:
  world(I) = A (f I + (f - 1)/2), so a coarse map overlays the fine one.  Edge rule: blocks start at
  voxel 0 and the image is zero-padded to whole blocks, so the coarse grid has ceil(n / f) voxels
  along an axis of n and the last one, where f does not divide n, is the sum of its real voxels
  divided by the full block size.  This is gbm's one block average: the patient fit's coarse level
  (:mod:`gbm.problem.segmentation.levels`) and ``gbm synth --downsample``
  (:mod:`gbm.jobs.synth`) both use it.
* :func:`block_fraction`: the fraction of a block's voxels inside a boolean region; a coarse
  voxel belongs to a segmentation region when at least half of its block does.
* :func:`sub_geometry`: a box-aligned sub-box of a :class:`~gbm.model.geometry.Geometry` (phase field
  included), with its offset so that world coordinates and :meth:`Geometry.to_full` still hold.
  The FD solver puts a no-flux wall at the sub-box edge: use a sub-box only where the tumour
  density is negligible at its edge (a margin of several infiltration lengths).

Units: voxel counts and mm.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from gbm.errors import require
from gbm.model.geometry import Geometry

__all__ = ["block_average", "block_fraction", "coarse_affine", "coarse_factors", "roi_bounds",
           "sub_geometry"]


def coarse_factors(spacing: Sequence[float], target_mm: float, ndim: int = 3) -> tuple[int, ...]:
    """Integer block factors per axis so that spacing * f is about ``target_mm`` (>= 1).

    For ``ndim == 2`` (an axial slice) the third factor is 1."""
    f = [max(1, round(target_mm / float(h))) for h in spacing]
    if ndim == 2:
        f[2] = 1
    return tuple(f)


def block_average(a: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean over blocks of ``factors`` voxels (the array is zero-padded to whole blocks).

    Parameters
    ----------
    a : ndarray, any real dtype, shape (n0, n1[, n2])
    factors : sequence of int >= 1, one per axis

    Returns
    -------
    ndarray, float64, shape (ceil(n0 / f0), ceil(n1 / f1)[, ...]), C-contiguous
    """
    a = np.asarray(a, dtype=np.float64)
    f = tuple(int(v) for v in factors)
    require(len(f) == a.ndim and all(v >= 1 for v in f), f"bad block factors {f}")
    n = [math.ceil(s / v) for s, v in zip(a.shape, f)]
    pad = [(0, m * v - s) for m, v, s in zip(n, f, a.shape)]
    p = np.pad(a, pad)
    shape = []
    for m, v in zip(n, f):
        shape += [m, v]
    return np.ascontiguousarray(p.reshape(shape).mean(axis=tuple(range(1, 2 * a.ndim, 2))))


def block_fraction(region: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Fraction of each block inside a boolean ``region`` (see :func:`block_average`)."""
    return block_average(np.asarray(region, dtype=np.float64), factors)


def coarse_affine(affine: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Affine of the block grid: coarse voxel I sits at the centre of fine voxels f I .. f I+f-1."""
    f = np.asarray(factors, dtype=np.float64)
    t = np.eye(4)
    t[:3, :3] = np.diag(f)
    t[:3, 3] = (f - 1) / 2
    return np.asarray(affine, dtype=np.float64) @ t


def roi_bounds(geom: Geometry, region_box: np.ndarray, margin_mm: float) -> tuple[tuple[int, ...],
                                                                                 tuple[int, ...]]:
    """Box index range [lo, hi) around the voxels of ``region_box`` (box-shaped bool) grown by
    ``margin_mm`` along each axis, clipped to the box."""
    idx = np.argwhere(np.asarray(region_box, dtype=bool))
    require(idx.size > 0, "region is empty")
    grow = np.array([math.ceil(margin_mm / h) for h in geom.spacing])
    lo = np.maximum(idx.min(axis=0) - grow, 0)
    hi = np.minimum(idx.max(axis=0) + grow + 1, np.asarray(geom.shape))
    return tuple(int(v) for v in lo), tuple(int(v) for v in hi)


def sub_geometry(geom: Geometry, lo: Sequence[int], hi: Sequence[int]) -> Geometry:
    """The sub-box ``[lo, hi)`` (box indices) of ``geom``, phase field included."""
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    def cut(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.ascontiguousarray(x[sl])

    off = list(geom.offset)
    for a in range(geom.ndim):
        off[a] += int(lo[a])
    return dataclasses.replace(geom, wm=cut(geom.wm), gm=cut(geom.gm), csf=cut(geom.csf),
                               phi=cut(geom.phi), offset=tuple(off))
