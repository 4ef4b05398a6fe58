"""The numpy baseline of the benchmark (benches/numpy_fd.py) reproduces the Rust FD solver.

The baseline implements the scheme of rust/fisher_kpp/mod.rs independently in numpy; both must give the
same time step and the same states (to 1e-12; the summation order is the same, so in practice they
are bit-identical) on small heterogeneous 2D and 3D problems with holes, tissue touching the box
edge, anisotropic voxels and a snapshot between two steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))

from numpy_fd import NumpyFisherKpp, solve  # noqa: E402

core = pytest.importorskip("gbm._core")


def problem(shape: tuple[int, ...], spacing: tuple[float, ...], seed: int = 0):
    """Ball-shaped diffuse domain (tanh profile) reaching the x = 0 edge of the box, a hole in it,
    random white/gray diffusivity, and a Gaussian initial density off centre."""
    rng = np.random.default_rng(seed)
    h = np.asarray(spacing)
    x = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"))
    c = (np.asarray(shape) - 1) * h / 2
    c[0] = 0.35 * (shape[0] - 1) * h[0]  # off centre: the ball is cut by the x = 0 face
    r = np.sqrt(sum((x[a] - c[a]) ** 2 for a in range(len(shape))))
    radius = 0.45 * min((n - 1) * s for n, s in zip(shape, spacing))
    phi = 0.5 + 0.5 * np.tanh((radius - r) / 1.5)
    phi[tuple(n // 2 for n in shape)] = 0.0  # a hole (inactive cell) inside
    phi[phi < 2e-4] = 0.0
    wm = rng.uniform(0, 1, shape)
    d = 0.13 * (wm + (1 - wm) / 10)
    seed_pt = c + 0.2 * radius
    u0 = 0.6 * np.exp(-sum((x[a] - seed_pt[a]) ** 2 for a in range(len(shape))) / 6.0)
    return u0, d, phi


@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize("shape,spacing,t_end", [
    ((41, 37), (1.0, 0.8), 60.0),
    ((17, 19, 23), (1.0, 1.2, 0.9), 30.0),
])
def test_numpy_baseline_matches_rust(shape, spacing, t_end, inplace):
    u0, d, phi = problem(shape, spacing)
    rho = 0.05
    rust = core.FisherKpp(u0, d, phi, list(spacing), rho)
    n = rust.steps_until(t_end)
    rust.advance(n)
    t_mid = rust.t + 0.37 * rust.dt  # a snapshot between two steps (partial step)
    ur = rust.state(t_end)
    ur_mid = rust.state(t_mid)

    un, base = solve(u0, d, phi, spacing, rho, t_end, inplace=inplace)
    assert base.dt == pytest.approx(rust.dt, rel=1e-15)
    assert base.steps == rust.steps == n and n > 20
    assert base.active_cells == rust.active_cells
    np.testing.assert_allclose(un, ur, rtol=0, atol=1e-12)
    np.testing.assert_allclose(base.state(t_mid), ur_mid, rtol=0, atol=1e-12)
    # The problem is not trivial: the density moved and grew, the hole stayed empty.
    assert np.abs(ur - u0).max() > 0.05
    assert ur[tuple(k // 2 for k in shape)] == 0.0


def test_numpy_baseline_conserves_mass_without_growth():
    """With rho = 0 the scheme conserves sum(phi u) to round-off (same face value on both sides)."""
    u0, d, phi = problem((17, 19, 23), (1.0, 1.2, 0.9), seed=1)
    base = NumpyFisherKpp(u0, d, phi, (1.0, 1.2, 0.9), 0.0)
    m0 = float((phi * base.u).sum())
    base.advance(50)
    assert abs(float((phi * base.u).sum()) / m0 - 1) < 1e-13
    assert base.u.min() >= 0.0 and base.u.max() <= 1.0
