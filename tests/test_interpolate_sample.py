"""Interpolation of grid fields (values + gradients) and collocation sampling in gbm._core.

Reference problems: affine and bilinear/trilinear fields are reproduced exactly by the
interpolant (values and gradients, to round-off); samplers are checked against the distributions
they claim with Kolmogorov-Smirnov / chi-square tests at fixed seeds (p > 0.01).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from gbm import _core
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats

SPACING = {2: (0.7, 1.3), 3: (0.9, 1.2, 0.6)}
SHAPE = {2: (13, 9), 3: (9, 11, 8)}


def centres(shape: tuple[int, ...], spacing: tuple[float, ...]) -> list[np.ndarray]:
    """Voxel-centre coordinates (mm) as open-mesh arrays."""
    return list(np.meshgrid(*[np.arange(n) * h for n, h in zip(shape, spacing)], indexing="ij"))


def box(shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    return np.array([(n - 1) * h for n, h in zip(shape, spacing)])


def random_points(rng: np.random.Generator, n: int, hi: np.ndarray) -> np.ndarray:
    return rng.uniform(0.0, 1.0, (n, hi.size)) * hi


# ----------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize(
    ("d", "shape"),
    [(2, SHAPE[2]), (3, SHAPE[3]), (3, (100, 90, 80))],  # the last one is > 8 MiB: prefetch path
)
def test_affine_fields_exact(d: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(10 + d)
    sp = SPACING[d]
    xs = centres(shape, sp)
    a = rng.normal(size=(2, d))
    b = rng.normal(size=2)
    fields = np.stack([b[c] + sum(a[c, k] * xs[k] for k in range(d)) for c in range(2)])
    pts = random_points(rng, 2000, box(shape, sp))
    # include the box corners and faces (inside the box, no clamping)
    pts[:2] = [np.zeros(d), box(shape, sp)]
    values, grads = _core.interpolate(fields, sp, pts)
    assert values.shape == (2000, 2) and grads.shape == (2000, 2, d)
    assert values.dtype == np.float64 and grads.dtype == np.float64
    assert_allclose(values, b + pts @ a.T, rtol=0, atol=1e-12)
    assert_allclose(grads, np.broadcast_to(a, grads.shape), rtol=0, atol=1e-12)


@pytest.mark.parametrize("d", [2, 3])
def test_reproduces_grid_values_at_voxel_centres(d: int) -> None:
    rng = np.random.default_rng(20 + d)
    shape, sp = SHAPE[d], SPACING[d]
    f = rng.normal(size=shape)
    xs = centres(shape, sp)
    pts = np.stack([x.ravel() for x in xs], axis=1)
    values, grads = _core.interpolate(f, sp, pts)
    assert values.shape == (f.size,) and grads.shape == (f.size, d)
    # x = i*h, then x/h inside the kernel: equal to i up to one ulp
    assert_allclose(values, f.ravel(), rtol=0, atol=1e-14 * np.abs(f).max())


def test_bilinear_xy_exact_2d() -> None:
    rng = np.random.default_rng(3)
    sp = (0.8, 1.7)
    x, y = centres((10, 7), sp)
    f = 0.5 + x * y - 2.0 * x
    pts = random_points(rng, 1000, box((10, 7), sp))
    values, grads = _core.interpolate(f, sp, pts)
    px, py = pts.T
    assert_allclose(values, 0.5 + px * py - 2.0 * px, rtol=0, atol=1e-12)
    assert_allclose(grads[:, 0], py - 2.0, rtol=0, atol=1e-12)
    assert_allclose(grads[:, 1], px, rtol=0, atol=1e-12)


def test_trilinear_xyz_exact_3d() -> None:
    rng = np.random.default_rng(4)
    sp = SPACING[3]
    x, y, z = centres(SHAPE[3], sp)
    pts = random_points(rng, 1000, box(SHAPE[3], sp))
    values, grads = _core.interpolate(x * y * z, sp, pts)
    px, py, pz = pts.T
    assert_allclose(values, px * py * pz, rtol=0, atol=1e-11)
    assert_allclose(grads, np.stack([py * pz, px * pz, px * py], axis=1), rtol=0, atol=1e-11)


@pytest.mark.parametrize("d", [2, 3])
def test_clamping_outside_the_box(d: int) -> None:
    """Outside along an axis: value of the edge point, zero derivative along that axis."""
    rng = np.random.default_rng(30 + d)
    shape, sp = SHAPE[d], SPACING[d]
    hi = box(shape, sp)
    xs = centres(shape, sp)
    f = np.sin(xs[0]) + np.cos(0.7 * xs[1]) * (xs[2] if d == 3 else 1.0)
    inner = random_points(rng, 200, hi)
    for axis in range(d):
        for side, shift in ((0.0, -3.0), (hi[axis], 2.5)):
            edge = inner.copy()
            edge[:, axis] = side
            out = edge.copy()
            out[:, axis] = side + shift
            v_out, g_out = _core.interpolate(f, sp, out)
            v_edge, g_edge = _core.interpolate(f, sp, edge)
            # the edge coordinate (n-1)*h is on the face up to one ulp: round-off tolerance
            assert_allclose(v_out, v_edge, rtol=0, atol=1e-14)
            assert_array_equal(g_out[:, axis], 0.0)
            others = [k for k in range(d) if k != axis]
            assert_allclose(g_out[:, others], g_edge[:, others], rtol=0, atol=1e-13)
            assert np.all(g_edge[:, axis] != 0.0)  # the edge cell itself has a slope


def test_stack_matches_single_fields() -> None:
    rng = np.random.default_rng(5)
    sp = SPACING[3]
    fields = rng.normal(size=(3, *SHAPE[3]))
    pts = random_points(rng, 500, box(SHAPE[3], sp) + 2.0) - 1.0  # some outside
    values, grads = _core.interpolate(fields, sp, pts)
    for c in range(3):
        v, g = _core.interpolate(fields[c], sp, pts)
        assert_array_equal(values[:, c], v)
        assert_array_equal(grads[:, c], g)
    # a non-contiguous view gives the same answer as its copy
    v1, _ = _core.interpolate(fields[:, ::2], sp, pts)
    v2, _ = _core.interpolate(np.ascontiguousarray(fields[:, ::2]), sp, pts)
    assert_array_equal(v1, v2)


def test_gradient_matches_finite_difference_inside_cells() -> None:
    """The returned gradient is the derivative of the returned values (a smooth field)."""
    rng = np.random.default_rng(6)
    sp = SPACING[3]
    x, y, z = centres(SHAPE[3], sp)
    f = np.sin(0.5 * x) * np.cos(0.3 * y) + z**2
    hi = box(SHAPE[3], sp)
    pts = 0.1 * hi + 0.8 * random_points(rng, 300, hi)
    _, g = _core.interpolate(f, sp, pts)
    eps = 1e-6
    for a in range(3):
        e = np.zeros(3)
        e[a] = eps
        fp, _ = _core.interpolate(f, sp, pts + e)
        fm, _ = _core.interpolate(f, sp, pts - e)
        fd = (fp - fm) / (2 * eps)
        # agree except where the +-eps stencil straddles a cell face (probability ~ 1e-5)
        assert np.mean(np.abs(fd - g[:, a]) < 1e-6) > 0.99


def test_interpolate_bad_inputs() -> None:
    f = np.zeros((5, 6))
    ok = np.zeros((3, 2))
    with pytest.raises(ValueError, match="points must have shape \\(N, 2\\)"):
        _core.interpolate(f, (1.0, 1.0), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="points contains NaN"):
        _core.interpolate(f, (1.0, 1.0), np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="fields must have shape"):
        _core.interpolate(np.zeros((2, 3, 4, 5)), (1.0, 1.0), ok)
    with pytest.raises(ValueError, match="spacing must have 2 or 3"):
        _core.interpolate(f, (1.0,), ok)
    with pytest.raises(ValueError, match="spacing"):
        _core.interpolate(f, (1.0, -1.0), ok)
    bad = f.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="fields contains NaN or Inf"):
        _core.interpolate(bad, (1.0, 1.0), ok)
    # an empty point set is fine
    v, g = _core.interpolate(np.zeros((2, 5, 6)), (1.0, 1.0), np.zeros((0, 2)))
    assert v.shape == (0, 2) and g.shape == (0, 2, 2)


# ----------------------------------------------------------------------------- sampling


def disc_phi(shape: tuple[int, ...], sp: tuple[float, ...], c: np.ndarray, r: float) -> np.ndarray:
    xs = centres(shape, sp)
    dist = np.sqrt(sum((x - ci) ** 2 for x, ci in zip(xs, c)))
    return 0.5 * (1.0 - np.tanh((dist - r) / 1.5))  # smooth, like a phase field


@pytest.mark.parametrize("d", [2, 3])
def test_samples_inside_box_and_domain(d: int) -> None:
    shape = (40, 36) if d == 2 else (30, 28, 26)
    sp = SPACING[d]
    hi = box(shape, sp)
    c = 0.5 * hi
    phi = disc_phi(shape, sp, c, 0.35 * hi.min())
    n = 4000
    for pts, t in (
        _core.sample_radial(phi, sp, c + 1.0, 0.45 * hi.min(), n, 200.0, 1, phi_min=0.6),
        _core.sample_uniform(phi, sp, n, 200.0, 1, phi_min=0.6),
    ):
        assert pts.shape == (n, d) and t.shape == (n,)
        assert np.all((pts >= 0.0) & (pts <= hi))
        assert np.all(_core.interpolate(phi, sp, pts)[0] >= 0.6)
        assert np.all((t >= 0.0) & (t < 200.0))


def test_sampling_reproducible_and_thread_independent() -> None:
    phi = disc_phi((50, 40), (1.0, 1.2), np.array([25.0, 24.0]), 15.0)
    a1 = _core.sample_radial(phi, (1.0, 1.2), (25.0, 24.0), 20.0, 5000, 300.0, 7)
    a2 = _core.sample_radial(phi, (1.0, 1.2), (25.0, 24.0), 20.0, 5000, 300.0, 7)
    a3 = _core.sample_radial(phi, (1.0, 1.2), (25.0, 24.0), 20.0, 5000, 300.0, 8)
    for x, y in zip(a1, a2):
        assert_array_equal(x, y)
    assert not np.array_equal(a1[0], a3[0]) and not np.array_equal(a1[1], a3[1])
    u1 = _core.sample_uniform(phi, (1.0, 1.2), 5000, 300.0, 7)
    u2 = _core.sample_uniform(phi, (1.0, 1.2), 5000, 300.0, 8)
    assert not np.array_equal(u1[0], u2[0])
    # the whole output does not depend on the number of rayon threads (fresh processes)
    code = (
        "import hashlib, numpy as np; from gbm import _core;"
        "x, y = np.meshgrid(np.arange(50) * 1.0, np.arange(40) * 1.2, indexing='ij');"
        "phi = 0.5 * (1 - np.tanh((np.sqrt((x - 25.0) ** 2 + (y - 24.0) ** 2) - 15.0) / 1.5));"
        "a = _core.sample_radial(phi, (1.0, 1.2), (25.0, 24.0), 20.0, 5000, 300.0, 7);"
        "b = _core.sample_uniform(phi, (1.0, 1.2), 5000, 300.0, 7);"
        "print(_core.num_threads(), hashlib.sha256(b''.join(x.tobytes() for x in (*a, *b)))"
        ".hexdigest())"
    )
    here = hashlib.sha256(b"".join(x.tobytes() for x in (*a1, *u1))).hexdigest()
    for threads in ("1", "3"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True,
            check=True,
        ).stdout.split()
        assert out[0] == threads
        assert out[1] == here


@pytest.mark.parametrize("d", [2, 3])
def test_radial_distance_and_direction_uniform(d: int) -> None:
    """phi = 1 everywhere and the ball inside the box: |x - c| ~ U(0, R), uniform direction."""
    shape = (41, 41) if d == 2 else (25, 25, 25)
    sp = (1.0, 0.8) if d == 2 else (1.0, 0.8, 1.1)
    hi = box(shape, sp)
    c = 0.5 * hi
    radius = 0.45 * hi.min()
    n = 20_000
    pts, t = _core.sample_radial(np.ones(shape), sp, c, radius, n, 50.0, 2024)
    v = pts - c
    r = np.linalg.norm(v, axis=1)
    assert stats.kstest(r / radius, "uniform").pvalue > 0.01
    assert stats.kstest(t / 50.0, "uniform").pvalue > 0.01
    azimuth = np.arctan2(v[:, 1], v[:, 0])
    counts, _ = np.histogram(azimuth, bins=24, range=(-np.pi, np.pi))
    assert stats.chisquare(counts).pvalue > 0.01
    assert stats.kstest((azimuth + np.pi) / (2 * np.pi), "uniform").pvalue > 0.01
    if d == 3:
        # uniform on the sphere <=> cos(polar angle) ~ U(-1, 1)
        assert stats.kstest((v[:, 2] / r + 1.0) / 2.0, "uniform").pvalue > 0.01
    # and the spatial density is NOT uniform: half of the points within R/2
    assert abs(np.mean(r < radius / 2) - 0.5) < 0.02


@pytest.mark.parametrize("d", [2, 3])
def test_uniform_sampler_marginals(d: int) -> None:
    shape = (30, 20) if d == 2 else (20, 15, 12)
    sp = SPACING[d]
    hi = box(shape, sp)
    pts, t = _core.sample_uniform(np.ones(shape), sp, 20_000, 10.0, 99)
    for a in range(d):
        assert stats.kstest(pts[:, a] / hi[a], "uniform").pvalue > 0.01
    assert stats.kstest(t / 10.0, "uniform").pvalue > 0.01


def test_uniform_sampler_restricted_to_phi() -> None:
    """phi = 1 for i <= 9, 0 beyond: bilinear phi >= 0.5 iff x <= 9.5 dx, so x ~ U(0, 9.5 dx)."""
    dx = 0.9
    phi = np.zeros((30, 12))
    phi[:10] = 1.0
    pts, _ = _core.sample_uniform(phi, (dx, 1.0), 10_000, 1.0, 5)
    assert pts[:, 0].max() <= 9.5 * dx
    assert stats.kstest(pts[:, 0] / (9.5 * dx), "uniform").pvalue > 0.01
    assert stats.kstest(pts[:, 1] / 11.0, "uniform").pvalue > 0.01


def test_sampling_bad_inputs() -> None:
    sp = (1.0, 1.0, 1.0)
    phi = disc_phi((20, 20, 20), sp, np.array([10.0, 10.0, 10.0]), 5.0)
    c = (10.0, 10.0, 17.5)
    phi_c = _core.interpolate(phi, sp, np.array([c]))[0][0]
    assert 0.01 < phi_c < 0.1
    msg = rf"center \(10, 10, 17\.5\) mm is outside the domain \(phi={phi_c:.4f} < phi_min=0\.5\)"
    with pytest.raises(ValueError, match=msg):
        _core.sample_radial(phi, sp, c, 3.0, 10, 1.0, 0)
    with pytest.raises(ValueError, match=r"center \(-1, 2, 3\) mm is outside the box"):
        _core.sample_radial(phi, sp, (-1.0, 2.0, 3.0), 3.0, 10, 1.0, 0)
    with pytest.raises(ValueError, match="center must have 3 coordinates"):
        _core.sample_radial(phi, sp, (10.0, 10.0), 3.0, 10, 1.0, 0)
    with pytest.raises(ValueError, match="radius must be finite and > 0"):
        _core.sample_radial(phi, sp, (10.0, 10.0, 10.0), 0.0, 10, 1.0, 0)
    with pytest.raises(ValueError, match="n must be > 0"):
        _core.sample_radial(phi, sp, (10.0, 10.0, 10.0), 3.0, 0, 1.0, 0)
    with pytest.raises(ValueError, match="t_max must be finite and > 0"):
        _core.sample_uniform(phi, sp, 10, -1.0, 0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        _core.sample_uniform(phi, sp, 10, 1.0, -1)
    with pytest.raises(ValueError, match="no voxel with phi >= phi_min"):
        _core.sample_uniform(phi, sp, 10, 1.0, 0, phi_min=1.5)
    with pytest.raises(ValueError, match="spacing has 2 entries but phi is 3D"):
        _core.sample_uniform(phi, (1.0, 1.0), 10, 1.0, 0)
    bad = phi.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="phi contains NaN or Inf"):
        _core.sample_uniform(bad, sp, 10, 1.0, 0)
    # a single brain voxel in a large box: an error about the acceptance rate, not a hang
    tiny = np.zeros((300, 300))
    tiny[150, 150] = 1.0
    with pytest.raises(ValueError, match="acceptance rate"):
        _core.sample_uniform(tiny, (1.0, 1.0), 100, 1.0, 0, phi_min=0.99)
