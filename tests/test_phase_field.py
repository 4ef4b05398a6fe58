"""Cahn-Hilliard phase field (paper Eq. 4-5) through gbm._core.phase_field.

Reference problems: a flat interface relaxes to the analytic equilibrium profile
0.5 + 0.5 tanh(x / (2 sqrt(2) eps)); the integral of phi is conserved to round-off; a disk keeps
its area; phi stays in [0, 1]. Tolerances are stated where they are used, with the measured values
they are set against.
"""

from __future__ import annotations

import numpy as np
import pytest
from gbm import _core

SQRT2 = np.sqrt(2.0)


def tanh_profile(x: np.ndarray, eps: float) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(x / (2 * SQRT2 * eps))


def strip(ndim: int, n: int, h: float, axis: int = 0) -> tuple[np.ndarray, float]:
    """1 for the lower half along ``axis``; returns the mask and the edge position (mm)."""
    shape = [3] * ndim
    shape[axis] = n
    idx = np.indices(shape)[axis]
    cut = n // 2
    return (idx < cut).astype(np.float64), (cut - 0.5) * h


@pytest.mark.parametrize("ndim", [2, 3])
def test_flat_interface_relaxes_to_tanh(ndim: int) -> None:
    # eps = 1 mm on h = 0.25 mm: the discrete equilibrium differs from the analytic profile by
    # O((h/eps)^2) = 2.2e-4 (measured, second order in h; see the Rust tests); with tol = 1e-7 the
    # slowly relaxing degenerate tails add a few 1e-4. Tolerance 1e-3.
    eps, h, n = 1.0, 0.25, 128
    mask, x_edge = strip(ndim, n, h)
    phi, info = _core.phase_field(mask, [h] * ndim, epsilon=eps, tol=1e-7, max_steps=20000,
                                  dt=100.0)
    assert info["converged"] and info["stopped"] == "tol"
    assert info["change"] < 1e-7
    x = np.arange(n) * h
    expected = tanh_profile(x_edge - x, eps)
    line = phi[(slice(None),) + (1,) * (ndim - 1)]
    assert np.max(np.abs(line - expected)) < 1e-3
    # Uniform across the strip (1D-like).
    assert np.ptp(phi, axis=tuple(range(1, ndim))).max() < 1e-12


@pytest.mark.parametrize("ndim", [2, 3])
def test_mass_conserved_and_range(ndim: int) -> None:
    # A binary blob with a rough surface, 40 steps: the unclipped integral of phi changes by
    # round-off only (< 1e-13 relative; measured ~1e-15). The returned phi is in [0, 1]; the
    # scheme overshoots by ~1e-2 before clipping (bound 0.05) and clipping removes < 1e-3 of
    # the mass, which info reports.
    rng = np.random.default_rng(7)
    shape = (26, 24) if ndim == 2 else (20, 18, 16)
    c = (np.asarray(shape) - 1) / 2
    r = np.sqrt(sum((np.indices(shape)[a] - c[a]) ** 2 for a in range(ndim)))
    mask = (r < 5 + 2 * rng.random(shape)).astype(np.float64)
    spacing = [1.0, 0.8, 1.2][:ndim]
    phi, info = _core.phase_field(mask, spacing, tol=0.0, max_steps=40)
    assert phi.shape == mask.shape and phi.dtype == np.float64
    assert info["steps"] == 40 and not info["converged"] and info["stopped"] == "max_steps"
    assert abs(info["mass_rel_change_unclipped"]) < 1e-13
    assert phi.min() >= 0.0 and phi.max() <= 1.0
    assert -0.05 < info["phi_min"] and info["phi_max"] < 1.05
    assert abs(info["mass_rel_clipped"]) < 1e-3
    # mass_rel_change of the returned field is exactly what clipping removed.
    np.testing.assert_allclose(info["mass_rel_change"], -info["mass_rel_clipped"], atol=1e-13)
    cell = float(np.prod(spacing))
    np.testing.assert_allclose(phi.sum() * cell, info["mass_final"], rtol=1e-12)
    np.testing.assert_allclose(mask.sum() * cell, info["mass_initial"], rtol=1e-12)


def test_disk_keeps_its_area() -> None:
    # Disk R = 10 mm, h = 0.5 mm, default eps (0.5 mm) and stopping rule. Area of {phi > 0.5}
    # within 1% of the mask's and 2% of pi R^2 (curvature moves the 0.5 level by O(eps^2/R^2);
    # measured: equal pixel counts). Inside ~1, outside ~0, interface a few voxels wide.
    h, n, radius = 0.5, 56, 10.0
    c = (n - 1) / 2
    i, j = np.indices((n, n))
    mask = (np.hypot(i - c, j - c) * h < radius).astype(np.float64)
    phi, info = _core.phase_field(mask, [h, h])
    assert info["converged"]
    area = (phi > 0.5).sum() * h * h
    assert abs(area / (mask.sum() * h * h) - 1) < 0.01
    assert abs(area / (np.pi * radius**2) - 1) < 0.02
    np.testing.assert_allclose(info["volume_phi"], area)
    assert phi[n // 2, n // 2] > 0.99 and phi[0, 0] < 0.01
    band = ((phi > 0.1) & (phi < 0.9)).sum() * h / (2 * np.pi * radius)  # mean width, mm
    assert 1.0 < band < 6.0  # analytic 10-90% width 6.2 eps = 3.1 mm


def test_convergence_flag_and_info_keys() -> None:
    mask, _ = strip(2, 40, 1.0)
    phi, info = _core.phase_field(mask, [1.0, 1.0])
    for key in ("steps", "converged", "stopped", "change", "mass_rel_change", "seconds", "time",
                "dt", "epsilon", "rejected", "volume_mask", "volume_phi", "volume_rel_diff"):
        assert key in info
    assert info["converged"] is True and info["change"] < 5e-3
    assert 0 < info["steps"] < 500 and info["seconds"] >= 0
    assert info["epsilon"] == 0.5 and info["dt"] == pytest.approx(4 * 0.5**2)
    # Capped run: not converged.
    _, info2 = _core.phase_field(mask, [1.0, 1.0], tol=1e-12, max_steps=3)
    assert info2["converged"] is False and info2["steps"] == 3


def test_anisotropic_spacing_measures_in_mm() -> None:
    # The same physical strip sampled along y with h = 0.5 mm and along x with h = 0.25 mm gives
    # the same profile in mm (within the discretisation error, 1e-3).
    eps = 1.0
    a, xa = strip(2, 64, 0.5, axis=1)
    b, xb = strip(2, 128, 0.25, axis=0)
    pa, _ = _core.phase_field(a, [1.0, 0.5], epsilon=eps, tol=1e-7, max_steps=20000, dt=100.0)
    pb, _ = _core.phase_field(b, [0.25, 1.0], epsilon=eps, tol=1e-7, max_steps=20000, dt=100.0)
    assert np.max(np.abs(pa[1, :] - tanh_profile(xa - np.arange(64) * 0.5, eps))) < 2e-3
    assert np.max(np.abs(pb[:, 1] - tanh_profile(xb - np.arange(128) * 0.25, eps))) < 1e-3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mask=np.full((6, 6), np.nan)), "mask"),
        (dict(mask=np.zeros((6, 6))), "empty"),
        (dict(mask=np.ones((6, 6))), "outside"),
        (dict(mask=np.full((6, 6), 2.0)), r"\[0, 1\]"),
        (dict(epsilon=0.0), "epsilon"),
        (dict(epsilon=-0.5), "epsilon"),
        (dict(dt=0.0), "dt"),
        (dict(tol=-1.0), "tol"),
        (dict(spacing=[1.0, 1.0, 1.0]), "spacing"),
        (dict(spacing=[1.0, -1.0]), "spacing"),
        (dict(mask=np.zeros(6)), "mask"),
    ],
)
def test_bad_input_raises_value_error(kwargs: dict, match: str) -> None:
    args = dict(mask=np.pad(np.ones((3, 3)), 2), spacing=[1.0, 1.0])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        _core.phase_field(**args)


def test_non_contiguous_and_smooth_start() -> None:
    # A Fortran-ordered, non-binary (smooth) start is accepted and gives the same result as its
    # C-ordered copy.
    x = np.arange(40)
    smooth = np.repeat(tanh_profile(20.0 - x, 2.0)[:, None], 4, axis=1)
    f = np.asfortranarray(smooth)
    pa, ia = _core.phase_field(f, [1.0, 1.0], max_steps=50)
    pb, ib = _core.phase_field(np.ascontiguousarray(smooth), [1.0, 1.0], max_steps=50)
    np.testing.assert_array_equal(pa, pb)
    assert ia["steps"] == ib["steps"]
