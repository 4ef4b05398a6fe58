"""The BiLO network: a local solution operator u = N(x', t'; theta) of the scaled
Fisher-Kolmogorov problem (:mod:`gbm.pinn.bilo`).

    u(x', t'; theta) = M([E(x', t'), (theta - theta_ref) / theta_scale]) t' + IC(x' - s)

theta = (log a, log b, s_1..s_d): a = Dw H / L^2 and b = rho H enter the scaled residual
(:mod:`gbm.pinn.residual`), s is the origin's shift in scaled coordinates (x0 = c + L s) and
enters the initial condition IC (the paper's Gaussian, :func:`gbm.pinn.network.ic_value`) as well
as the MLP. E: the PINN's fixed Fourier features of (x', t') (:class:`FourierFeatures`); M: the
PINN's tanh MLP on the row-major path (:meth:`MLP.forward_derivs`, plain products, no fused
kernel), so that derivatives with respect to theta (a per-point input) are ordinary autograd
through the forward Laplacian. theta_ref is the start; theta_scale (0.5 for the logs, 5 mm / L
for the shift) makes the parameter inputs O(1) over a fit.

The network carries the origin's box like :class:`gbm.pinn.network.PinnNet`
(:meth:`enable_ic_shift`, :meth:`shift`, :meth:`origin`: s = lo' + (hi' - lo') sigmoid(z)), so
the patient fit's :class:`gbm.pinn.patient_loss.PatientModel` holds its unknowns. ``forward(xs,
ts)`` evaluates u at the parameters last set by :meth:`set_theta` (the fitted ones, for the
outputs). Units: scaled (x' = (x - c) / L, t' = t / H).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gbm.pinn.network import IC_AMPLITUDE, IC_WIDTH2_MM2, MLP, Derivatives, FourierFeatures

__all__ = ["BiloNet"]

#: Scale of the log-parameter inputs (a change of 0.5 in log a or log b is one input unit).
LOG_SCALE = 0.5
#: Scale of the shift inputs, mm (5 mm of origin shift is one input unit).
SHIFT_SCALE_MM = 5.0


class BiloNet(nn.Module):
    """u = N(x', t'; theta) (module docstring).

    Parameters
    ----------
    dim : int (2 or 3)
    center : (d,) local mm, c
    length, horizon : L (mm), H (days)
    theta_ref : sequence of float (2 + d,)
        The start (log a, log b, s): the parameter inputs are centred on it.
    width, depth, fourier, sigma_x, sigma_t, seed, dtype : as :class:`PinnNet`.
    """

    def __init__(self, dim: int, center: Any, length: float, horizon: float, theta_ref: Any,
                 width: int = 64, depth: int = 3, fourier: int = 32, sigma_x: float = 1.0,
                 sigma_t: float = 1.0, seed: int = 0, dtype: torch.dtype = torch.float32
                 ) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        gen = torch.Generator().manual_seed(int(seed))
        self.dim = dim
        self.length = float(length)
        self.horizon = float(horizon)
        self.n_theta = 2 + dim
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float64).to(dtype))
        ref = torch.as_tensor(theta_ref, dtype=torch.float64)
        scale = torch.tensor([LOG_SCALE, LOG_SCALE] + [SHIFT_SCALE_MM / self.length] * dim,
                             dtype=torch.float64)
        self.register_buffer("theta_ref", ref.to(dtype))
        self.register_buffer("theta_scale", scale.to(dtype))
        self.register_buffer("theta_now", ref.clone().to(dtype))
        self.embedding = FourierFeatures(dim, fourier, sigma_x, sigma_t, gen, dtype)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.mlp = MLP(self.embedding.out_features + self.n_theta, width, depth,
                           fast=False, fused=False)
        self.ic_shift: nn.Parameter | None = None
        self.to(dtype)

    # -- the origin (PinnNet's interface, for PatientModel) -----------------------------------
    def enable_ic_shift(self, lo_mm: Any, hi_mm: Any) -> nn.Parameter:
        """The trainable origin inside [lo_mm, hi_mm] (local mm; must contain c strictly):
        s = lo' + (hi' - lo') sigmoid(z), z returned (starts at s = 0)."""
        c = self.center.detach().double().cpu()
        lo = (torch.as_tensor(lo_mm, dtype=torch.float64) - c) / self.length
        hi = (torch.as_tensor(hi_mm, dtype=torch.float64) - c) / self.length
        if not bool(((lo < 0) & (hi > 0)).all()):
            raise ValueError("the origin box must contain the network's centre strictly")
        frac = -lo / (hi - lo)
        dt, dev = self.center.dtype, self.center.device
        self.register_buffer("ic_lo", lo.to(dt).to(dev))
        self.register_buffer("ic_span", (hi - lo).to(dt).to(dev))
        self.ic_shift = nn.Parameter(torch.log(frac / (1 - frac)).to(dt).to(dev))
        return self.ic_shift

    def shift(self) -> Tensor:
        """s (d,) in scaled coordinates (differentiable in z)."""
        assert self.ic_shift is not None, "enable_ic_shift first"
        return self.ic_lo + self.ic_span * torch.sigmoid(self.ic_shift)

    def origin(self) -> Tensor:
        """x0 = c + L s in local mm (detached)."""
        return self.center.detach() + self.length * self.shift().detach()

    def set_theta(self, theta: Tensor) -> None:
        """The parameters :meth:`forward` evaluates at (detached copy)."""
        self.theta_now.copy_(theta.detach())

    # -- evaluation ---------------------------------------------------------------------------
    def _theta_rows(self, theta: Tensor, n: int) -> Tensor:
        """theta (p,) or (n, p) -> (n, p) rows."""
        return theta.expand(n, self.n_theta) if theta.dim() == 1 else theta

    def _inputs(self, theta: Tensor) -> Tensor:
        return (theta - self.theta_ref) / self.theta_scale

    def _ic(self, xs: Tensor, th: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """IC = A exp(-c |x' - s|^2), c = L^2 / 10 mm^2, with x' - s and |x' - s|^2."""
        xi = xs - th[:, 2:]
        r2 = (xi * xi).sum(-1)
        c = self.length * self.length / IC_WIDTH2_MM2
        return IC_AMPLITUDE * torch.exp(-c * r2), xi, r2

    def field(self, xs: Tensor, ts: Tensor, theta: Tensor) -> Tensor:
        """u at scaled points xs (N, d), ts (N, 1) for parameters theta ((p,) or (N, p))."""
        th = self._theta_rows(theta, xs.shape[0])
        h = torch.cat([self.embedding(xs, ts), self._inputs(th)], -1)
        ic, _, _ = self._ic(xs, th)
        return self.mlp(h) * ts[:, 0] + ic

    def forward(self, xs: Tensor, ts: Tensor) -> Tensor:
        """u at the parameters of :meth:`set_theta` (the outputs' path)."""
        return self.field(xs, ts, self.theta_now)

    def derivatives(self, xs: Tensor, ts: Tensor, theta: Tensor) -> Derivatives:
        """u, du/dx', du/dt', lap' u at scaled points for parameters theta ((p,) or (N, p)) by
        the forward Laplacian; differentiable in theta and the weights (to any order)."""
        n, d = xs.shape
        th = self._theta_rows(theta, n)
        h, dh, ht, lh = self.embedding.forward_derivs(xs, ts)
        p = self.n_theta
        zeros = h.new_zeros(n, p)
        h = torch.cat([h, self._inputs(th)], -1)
        dh = torch.cat([dh, h.new_zeros(d, n, p)], -1)
        ht = torch.cat([ht, zeros], -1)
        lh = torch.cat([lh, zeros], -1)
        nv, ng, nt, nl = self.mlp.forward_derivs(h, dh, ht, lh)
        t = ts[:, 0]
        c = self.length * self.length / IC_WIDTH2_MM2
        ic, xi, r2 = self._ic(xs, th)
        return Derivatives(u=nv * t + ic, grad=ng * ts + (-2.0 * c) * ic[:, None] * xi,
                           u_t=nt * t + nv, lap=nl * t + ic * (4.0 * c * c * r2 - 2.0 * c * d))
