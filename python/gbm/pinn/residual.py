"""PDE residual of the diffuse-domain Fisher-Kolmogorov equation (paper Eq. 6/8), scaled.

Equation (u dimensionless, x in mm, t in days)::

    d(phi u)/dt = div(D phi grad u) + phi rho u (1 - u),   D = Dw k(x),  k = pw + pg / ratio

phi does not depend on time, so with F = k phi (hence D phi = Dw F) the residual is::

    r = phi u_t - [Dw (F lap u + grad F . grad u) + phi rho u (1 - u)]        [1/day]

In the network's scaled variables x' = (x - x_ic)/L, t' = t/T (see :mod:`gbm.pinn.network`) we
use the dimensionless residual T * r::

    R = phi u_t' - [a (F lap' u + grad' F . grad' u) + b phi u (1 - u)],
    a = Dw T / L^2,   b = rho T,   grad' F = L grad F.

With L the tumour's region radius and T the horizon, every term is O(1)-O(10) where the tumour is,
so the residual loss needs no hand-tuned weight to be comparable with a data loss on u in [0, 1].
Note ``R`` is linear in (a, b): given the network, the least-squares optimal (Dw, rho) is the
solution of a 2x2 system (:func:`least_squares_parameters`).

phi, F and grad F at the collocation points come from the Rust ``interpolate`` (bilinear /
trilinear on the voxel grid) and are computed once per point set (:class:`PointSet`): they do not
depend on the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gbm import _core
from gbm.pinn.network import Derivatives, PinnNet
from gbm.problem.domain import Domain

__all__ = [
    "PointSet",
    "domain_point_set",
    "interpolate_fields",
    "least_squares_parameters",
    "make_point_set",
    "physical_residual",
    "residual_terms",
    "scaled_residual",
]


@dataclass
class PointSet:
    """Collocation points with their cached coefficient fields, on one device and dtype.

    Attributes
    ----------
    xs : (N, d) scaled coordinates x'
    ts : (N, 1) scaled times t'
    phi : (N,) phase field
    F : (N,) k * phi
    gradF : (N, d) grad' F = L grad F (dimensionless)
    """

    xs: Tensor
    ts: Tensor
    phi: Tensor
    F: Tensor
    gradF: Tensor

    def __len__(self) -> int:
        return int(self.xs.shape[0])


def interpolate_fields(
    phi: np.ndarray, kfac: np.ndarray, spacing, points_mm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi, F = k phi and grad F (1/mm) at points (N, d) in local mm, by the Rust interpolator.

    Returns
    -------
    phi (N,), F (N,), gradF (N, d) float64.
    """

    fields = np.ascontiguousarray(np.stack([phi, kfac * phi], axis=0), dtype=np.float64)
    vals, grads = _core.interpolate(
        fields, [float(s) for s in spacing], np.ascontiguousarray(points_mm, dtype=np.float64)
    )
    return vals[:, 0], vals[:, 1], grads[:, 1, :]


def make_point_set(
    net: PinnNet,
    points_mm: np.ndarray,
    t_days: np.ndarray,
    phi: np.ndarray,
    kfac: np.ndarray,
    spacing,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> PointSet:
    """Scale points and interpolate the coefficient fields at them once (see :class:`PointSet`)."""
    p, f, gf = interpolate_fields(phi, kfac, spacing, points_mm)
    center = net.center.detach().cpu().double().numpy()
    xs = (np.asarray(points_mm, dtype=np.float64) - center) / net.length
    ts = np.asarray(t_days, dtype=np.float64).reshape(-1, 1) / net.horizon

    def tt(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

    return PointSet(tt(xs), tt(ts), tt(p), tt(f), tt(gf * net.length))


def domain_point_set(
    domain: Domain,
    net: PinnNet,
    points_mm: np.ndarray,
    t_days: np.ndarray,
    device: Any = "cpu",
    dtype: Any = None,
) -> PointSet:
    """Scaled points with phi, F, grad F of ``domain`` interpolated at them (torch tensors).

    Parameters
    ----------
    domain : Domain
    net : PinnNet
        Provides the scaling (x_ic, L, T).
    points_mm : ndarray float64 (N, d), local mm
    t_days : ndarray float64 (N,), days
    device, dtype : torch device and dtype (default cpu, float32).
    """
    dtype = torch.float32 if dtype is None else dtype
    return make_point_set(
        net, points_mm, t_days, domain.phi, domain.kfac, domain.spacing, device, dtype
    )


def residual_terms(dv: Derivatives, ps: PointSet) -> tuple[Tensor, Tensor, Tensor]:
    """The three pieces of the scaled residual, R = A - a B - b C.

    A = phi u_t', B = F lap' u + grad'F . grad' u, C = phi u (1 - u).
    """
    a_term = ps.phi * dv.u_t
    b_term = ps.F * dv.lap + (ps.gradF * dv.grad).sum(-1)
    c_term = ps.phi * dv.u * (1.0 - dv.u)
    return a_term, b_term, c_term


def scaled_residual(dv: Derivatives, ps: PointSet, a: Tensor | float, b: Tensor | float) -> Tensor:
    """R = T r (dimensionless), with a = Dw T / L^2 and b = rho T. Shape (N,)."""
    a_term, b_term, c_term = residual_terms(dv, ps)
    return a_term - a * b_term - b * c_term


def least_squares_parameters(
    dv: Derivatives, ps: PointSet, ridge: float = 1e-12
) -> tuple[Tensor, Tensor]:
    """(a, b) minimising mean R^2 for the current network (2x2 normal equations, detached).

    Useful as a diagnostic and to (re)start the parameters from a fitted network: the residual is
    linear in a = Dw T / L^2 and b = rho T.
    """
    with torch.no_grad():
        a_t, b_t, c_t = (v.double() for v in residual_terms(dv, ps))
        m = torch.stack(
            [
                torch.stack([(b_t * b_t).mean(), (b_t * c_t).mean()]),
                torch.stack([(b_t * c_t).mean(), (c_t * c_t).mean()]),
            ]
        )
        rhs = torch.stack([(a_t * b_t).mean(), (a_t * c_t).mean()])
        m = m + ridge * torch.eye(2, dtype=m.dtype, device=m.device) * m.diagonal().sum()
        sol = torch.linalg.solve(m, rhs)
    return sol[0], sol[1]


def physical_residual(
    u: Tensor,
    u_t: Tensor,
    grad_u: Tensor,
    lap_u: Tensor,
    phi: Tensor,
    F: Tensor,
    gradF: Tensor,
    dw: float,
    rho: float,
) -> Tensor:
    """r = phi u_t - [Dw (F lap u + grad F . grad u) + phi rho u (1 - u)] in physical units [1/day].

    Reference form for tests (all arrays in mm / day units).
    """
    return phi * u_t - (dw * (F * lap_u + (gradF * grad_u).sum(-1)) + phi * rho * u * (1.0 - u))
