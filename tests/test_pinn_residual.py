"""PINN residual (DDM Fisher-Kolmogorov, paper Eq. 8) against a manufactured solution.

phi and F = k phi are chosen as products of affine functions of single coordinates, which
bilinear/trilinear interpolation reproduces exactly (values and gradients), so the only error left
is round-off: the residual assembled from the Rust-interpolated fields and the scaled derivatives
must equal the analytic residual in physical units.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gbm.pinn.network import Derivatives, PinnNet
from gbm.pinn.residual import (
    least_squares_parameters,
    make_point_set,
    physical_residual,
    residual_terms,
    scaled_residual,
)

DW, RHO, T, L = 0.13, 0.025, 150.0, 12.0


def _fields(dim: int):
    shape = (21, 23, 19)[:dim]
    spacing = (1.0, 1.5, 0.8)[:dim]
    axes = [np.arange(n) * h for n, h in zip(shape, spacing)]
    g = np.meshgrid(*axes, indexing="ij")
    phi = (0.6 + 0.01 * g[0]) * ((1.0 + 0.005 * g[2]) if dim == 3 else 1.0)
    kfac = 0.5 + 0.02 * g[1]
    return phi, kfac, spacing, shape


def _analytic(x: np.ndarray, t: np.ndarray, c: np.ndarray, dim: int):
    s2 = 30.0
    d = x - c
    r2 = (d * d).sum(1)
    amp = 0.2 + 0.3 * t / T
    e = np.exp(-r2 / s2)
    u = amp * e
    u_t = 0.3 / T * e
    grad = u[:, None] * (-2.0 * d / s2)
    lap = u * (4.0 * r2 / s2**2 - 2.0 * dim / s2)
    phi = 0.6 + 0.01 * x[:, 0]
    dphi = np.zeros_like(x)
    dphi[:, 0] = 0.01
    if dim == 3:
        fz = 1.0 + 0.005 * x[:, 2]
        dphi[:, 0] *= fz
        dphi[:, 2] = 0.005 * (0.6 + 0.01 * x[:, 0])
        phi = phi * fz
    k = 0.5 + 0.02 * x[:, 1]
    dk = np.zeros_like(x)
    dk[:, 1] = 0.02
    F = k * phi
    gradF = dk * phi[:, None] + k[:, None] * dphi
    return u, u_t, grad, lap, phi, F, gradF


@pytest.mark.parametrize("dim", [2, 3])
def test_residual_matches_manufactured_solution(dim: int) -> None:
    phi, kfac, spacing, shape = _fields(dim)
    hi = (np.asarray(shape) - 1) * np.asarray(spacing)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, size=(400, dim)) * hi * 0.98
    t = rng.uniform(0, T, size=400)
    c = hi / 2
    net = PinnNet(dim, c, L, T, width=4, depth=1, dtype=torch.float64)
    ps = make_point_set(net, x, t, phi, kfac, spacing, dtype=torch.float64)
    u, u_t, grad, lap, phi_a, F_a, gF_a = _analytic(x, t, c, dim)
    # interpolated coefficient fields are exact for these fields
    np.testing.assert_allclose(ps.phi.numpy(), phi_a, rtol=0, atol=1e-13)
    np.testing.assert_allclose(ps.F.numpy(), F_a, rtol=0, atol=1e-13)
    np.testing.assert_allclose(ps.gradF.numpy(), gF_a * L, rtol=0, atol=1e-12)
    # scaled derivatives, as the network provides them
    tt = torch.from_numpy
    dv = Derivatives(u=tt(u), grad=tt(grad * L), u_t=tt(u_t * T), lap=tt(lap * L * L))
    a, b = DW * T / L**2, RHO * T
    r_scaled = scaled_residual(dv, ps, a, b).numpy()
    r_phys = physical_residual(tt(u), tt(u_t), tt(grad), tt(lap), tt(phi_a), tt(F_a), tt(gF_a),
                               DW, RHO).numpy()
    assert np.abs(r_phys).max() > 1e-4  # the manufactured u does not solve the PDE
    np.testing.assert_allclose(r_scaled / T, r_phys, rtol=0, atol=1e-12)
    # and directly from the definition: d(phi u)/dt - div(D phi grad u) - phi rho u (1 - u)
    div = DW * (F_a * lap + (gF_a * grad).sum(1))
    np.testing.assert_allclose(r_phys, phi_a * u_t - div - phi_a * RHO * u * (1 - u), atol=1e-15)


@pytest.mark.parametrize("dim", [2, 3])
def test_network_residual_equals_autograd_residual(dim: int) -> None:
    """Residual of a random network by the forward Laplacian vs. nested autograd in mm/days."""
    phi, kfac, spacing, shape = _fields(dim)
    hi = (np.asarray(shape) - 1) * np.asarray(spacing)
    c = hi / 2
    net = PinnNet(dim, c, L, T, width=16, depth=3, fourier=8, seed=4, dtype=torch.float64)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 0.9, size=(300, dim)) * hi
    t = rng.uniform(0, T, size=300)
    ps = make_point_set(net, x, t, phi, kfac, spacing, dtype=torch.float64)
    r1 = scaled_residual(net.derivatives(ps.xs, ps.ts), ps, DW * T / L**2, RHO * T) / T
    xt = torch.tensor(x, requires_grad=True)
    tt = torch.tensor(t, requires_grad=True)
    u = net.u(xt, tt)
    gx, gt = torch.autograd.grad(u.sum(), [xt, tt], create_graph=True)
    lap = sum(torch.autograd.grad(gx[:, k].sum(), xt, create_graph=True)[0][:, k]
              for k in range(dim))
    _, _, _, _, phi_a, F_a, gF_a = _analytic(x, t, c, dim)
    r2 = physical_residual(u, gt, gx, lap, torch.tensor(phi_a), torch.tensor(F_a),
                           torch.tensor(gF_a), DW, RHO)
    torch.testing.assert_close(r1, r2.detach(), rtol=1e-9, atol=1e-12)


def test_least_squares_parameters_recover_exact_coefficients() -> None:
    rng = np.random.default_rng(2)
    n = 1000
    B = torch.tensor(rng.normal(size=n))
    a, b = 0.0173, 3.75
    # choose u, derivatives so that A = a B + b C with phi = 1, F = 1, gradF = 0
    u = torch.tensor(rng.uniform(0, 1, size=n))
    lap = B
    u_t = a * B + b * u * (1 - u)
    dv = Derivatives(u=u, grad=torch.zeros(n, 2, dtype=torch.float64), u_t=u_t, lap=lap)

    class PS:
        phi = torch.ones(n, dtype=torch.float64)
        F = torch.ones(n, dtype=torch.float64)
        gradF = torch.zeros(n, 2, dtype=torch.float64)

    a_hat, b_hat = least_squares_parameters(dv, PS())  # type: ignore[arg-type]
    assert a_hat.item() == pytest.approx(a, rel=1e-9)
    assert b_hat.item() == pytest.approx(b, rel=1e-9)
    ta, tb, tc = residual_terms(dv, PS())  # type: ignore[arg-type]
    assert torch.allclose(ta - a * tb - b * tc, torch.zeros(n, dtype=torch.float64), atol=1e-14)
