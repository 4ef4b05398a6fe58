"""The PINN's network: an MLP on nondimensional space-time with a hard initial condition.

Inputs are nondimensionalised before they reach the network::

    x' = (x - x_ic) / L    (x in local mm; L in mm: the radius of the region the tumour lives in)
    t' = t / T                 (t in days, T the final observation time)

so that the whole space-time region of interest is the unit ball times [0, 1]. ``L`` is the
collocation sampling radius (see :mod:`gbm.pinn.sampling`), ``T`` the simulation horizon.

The output obeys the paper's hard initial constraint (Eq. 7)::

    u(x, t) = N(x', t') * t' + IC(x),   IC(x) = 0.1 exp(-|x - x_ic|^2 / 10 mm^2)

(the paper's ``0.1 exp(-10 |x|^2)`` with ``|x|`` in cm), so ``u(x, 0) = IC(x)`` exactly.

Derivatives by a *forward Laplacian*: instead of nested ``torch.autograd.grad`` calls, the value,
the spatial gradient, the time derivative and the spatial Laplacian are carried through the network
layer by layer in one forward pass. For a linear layer ``z = W h + b`` each carried quantity is
mapped by ``W`` (the bias only enters the value); for ``h = tanh(z)``::

    h' = 1 - h^2,  h'' = -2 h h',  d_k h = h' d_k z,  d_t h = h' d_t z,
    lap h = h' lap z + h'' sum_k (d_k z)^2.

Only one backward pass (for the loss) remains. Training passes take the fused path of
:mod:`gbm.pinn.kernels` (all carried rows in one feature-major matrix, one product per layer,
a hand-written backward); :meth:`MLP.forward_derivs` is the same computation as a row-major
autograd graph (the reference, and the path for derivatives with respect to the inputs). Both
are plain for ``torch.compile``, which fuses the elementwise work between the products.

Optional fixed random Fourier features (Tancik et al. 2020) of (x', t') are placed in front of the
MLP: ``[x', t', sin(2 pi (x' Bx + t' bt)), cos(2 pi (x' Bx + t' bt))]`` with ``Bx ~ N(0, sx^2)``,
``bt ~ N(0, st^2)`` drawn once from the run's seed (not trained). They let a small tanh MLP
represent the sharp Fisher front (width ~ sqrt(D/rho) ~ 2.3 mm against L ~ 40 mm) and its Laplacian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gbm.pinn.kernels import fused_mlp, linear

__all__ = ["Derivatives", "FourierFeatures", "MLP", "PinnNet", "ic_value"]

IC_AMPLITUDE = 0.1
IC_WIDTH2_MM2 = 10.0  # IC(x) = 0.1 exp(-|x - x_ic|^2 / 10 mm^2)


@dataclass
class Derivatives:
    """The PINN solution and its derivatives at N points, in *scaled* variables.

    Attributes
    ----------
    u : Tensor (N,)
        Tumour density (dimensionless).
    grad : Tensor (N, d)
        du/dx' = L du/dx.
    u_t : Tensor (N,)
        du/dt' = T du/dt.
    lap : Tensor (N,)
        sum_k d^2u/dx'_k^2 = L^2 lap u.
    """

    u: Tensor
    grad: Tensor
    u_t: Tensor
    lap: Tensor


def ic_value(xs: Tensor, length: float) -> Tensor:
    """IC(x) = 0.1 exp(-|x - x_ic|^2 / 10 mm^2) evaluated at scaled points ``xs`` (N, d)."""
    r2 = (xs * xs).sum(-1) * (length * length)
    return IC_AMPLITUDE * torch.exp(-r2 / IC_WIDTH2_MM2)


class FourierFeatures(nn.Module):
    """Fixed random Fourier features of (x', t'), with the identity features kept in front.

    Parameters
    ----------
    dim : int
        Spatial dimension d (2 or 3).
    n_features : int
        Number of frequencies m; the embedding has d + 1 + 2 m columns.
    sigma_x, sigma_t : float
        Standard deviations of the spatial and temporal frequencies (cycles per unit of x', t').
    generator : torch.Generator
        Source of the (fixed) frequencies.
    """

    def __init__(
        self,
        dim: int,
        n_features: int,
        sigma_x: float,
        sigma_t: float,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        bx = torch.randn(dim, n_features, generator=generator, dtype=torch.float64) * sigma_x
        bt = torch.randn(1, n_features, generator=generator, dtype=torch.float64) * sigma_t
        self.register_buffer("bx", (2.0 * math.pi * bx).to(dtype))
        self.register_buffer("bt", (2.0 * math.pi * bt).to(dtype))
        self.dim = dim
        self.n_features = n_features

    @property
    def out_features(self) -> int:
        return self.dim + 1 + 2 * self.n_features

    def forward(self, xs: Tensor, ts: Tensor) -> Tensor:
        z = xs @ self.bx + ts * self.bt
        return torch.cat([xs, ts, torch.sin(z), torch.cos(z)], dim=-1)

    def forward_derivs(self, xs: Tensor, ts: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Embedding value (N, E), spatial gradients (d, N, E), d/dt' (N, E), Laplacian (N, E):
        the column blocks of :meth:`rows` in row-major layout."""
        n, d = xs.shape
        blocks = self.rows(xs, ts, True).reshape(self.out_features, d + 3, n).permute(1, 2, 0)
        return blocks[0], blocks[1:d + 1], blocks[d + 1], blocks[d + 2]

    def rows(self, xs: Tensor, ts: Tensor, derivs: bool) -> Tensor:
        """:meth:`forward_derivs` (``derivs``) or :meth:`forward` in feature-major layout for
        :func:`gbm.pinn.kernels.fused_mlp`: (E, R n), R = d + 3 column blocks (value, d/dx'_k,
        d/dt', Laplacian) or R = 1."""
        n, d = xs.shape
        z = self.bx.t() @ xs.t() + self.bt.t() @ ts.t()  # (m, n)
        s, c = torch.sin(z), torch.cos(z)
        ident = torch.cat([xs.t(), ts.t()], 0)
        value = torch.cat([ident, s, c], 0)
        if not derivs:
            return value
        eye = torch.eye(d + 1, dtype=xs.dtype, device=xs.device)
        blocks = [value]
        for k in range(d + 1):  # d/dx'_k, then d/dt' (k = d)
            bk = (self.bx[k] if k < d else self.bt[0])[:, None]
            blocks.append(torch.cat([eye[:, k:k + 1].expand(d + 1, n), c * bk, -s * bk], 0))
        b2 = (self.bx * self.bx).sum(0)[:, None]
        blocks.append(torch.cat([torch.zeros_like(ident), -s * b2, -c * b2], 0))
        return torch.cat(blocks, 1)


class MLP(nn.Module):
    """tanh MLP with Glorot-normal weights and zero biases.

    Parameters
    ----------
    in_features : int
    width, depth : int
        Hidden width and number of hidden layers (paper: 100 and 3).
    fast : bool
        oneDNN products on CPU float32 (:mod:`gbm.pinn.kernels`).
    fused : bool
        Training passes (parameters requiring grad, inputs not) go through
        :func:`gbm.pinn.kernels.fused_mlp` (feature-major rows, hand-written backward); False:
        the row-major autograd graph of :meth:`forward_derivs` (the reference; also used for
        derivatives with respect to the inputs and without grad).
    """

    def __init__(self, in_features: int, width: int = 100, depth: int = 3,
                 fast: bool = True, fused: bool = True) -> None:
        super().__init__()
        self.fast = fast
        self.fused = fused
        sizes = [in_features] + [width] * depth + [1]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def use_fused(self, x: Tensor) -> bool:
        """Whether a pass on input ``x`` takes the fused path (see the class docstring)."""
        return (self.fused and torch.is_grad_enabled() and not x.requires_grad
                and self.layers[0].weight.requires_grad)

    def forward(self, h: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            h = torch.tanh(linear(h, layer.weight, layer.bias, self.fast))
        last = self.layers[-1]
        return (h @ last.weight.t())[:, 0] + last.bias[0]

    def rows(self, x0: Tensor, n: int, d: int, derivs: bool) -> Tensor:
        """The fused pass on feature-major rows x0 (E, R n) -> (R n,) (see
        :func:`gbm.pinn.kernels.fused_mlp`)."""
        return fused_mlp(x0, n, d, derivs, self.layers, self.fast)

    def forward_derivs(
        self, h: Tensor, dh: Tensor, ht: Tensor, lh: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Carry (value, d/dx'_k, d/dt', Laplacian) through the network (row-major autograd
        graph; the fused path computes the same in :meth:`rows`).

        Parameters
        ----------
        h : (N, E) input value; dh : (d, N, E) its spatial derivatives; ht : (N, E) its time
        derivative; lh : (N, E) its Laplacian.

        Returns
        -------
        (N,), (N, d), (N,), (N,): output value, gradient, time derivative, Laplacian.
        """
        # Rows are kept as separate (N, H) tensors (not one stacked tensor): slicing a stacked
        # tensor costs a zero-fill + copy per slice in the backward pass, and large single
        # allocations (> 32 MB) defeat glibc's allocator cache on CPU.
        grads = list(dh.unbind(0))
        fast = self.fast
        for layer in self.layers[:-1]:
            w = layer.weight
            z = linear(h, w, layer.bias, fast)
            gz = [linear(g, w, None, fast) for g in grads]
            zt = linear(ht, w, None, fast)
            lz = linear(lh, w, None, fast)
            h = torch.tanh(z)
            s = 1.0 - h * h
            sq = gz[0] * gz[0]
            for g in gz[1:]:
                sq = sq + g * g
            lh = s * lz - 2.0 * h * s * sq
            grads = [s * g for g in gz]
            ht = s * zt
        last = self.layers[-1]
        wt = last.weight.t()
        out = torch.addmm(last.bias, h, wt)[:, 0]
        grad = torch.cat([g @ wt for g in grads], dim=1)
        return out, grad, (ht @ wt)[:, 0], (lh @ wt)[:, 0]


class PinnNet(nn.Module):
    """u(x, t) = N(x', t') t' + IC(x) on nondimensional inputs (see module docstring).

    Parameters
    ----------
    dim : int
        Spatial dimension (2 or 3).
    center : sequence of float
        x_ic in local mm (the tumour seed, centre of the IC and of the scaled coordinates).
    length : float
        L in mm.
    horizon : float
        T in days.
    width, depth : int
        MLP size.
    fourier : int
        Number of Fourier frequencies (0: plain MLP on (x', t')).
    sigma_x, sigma_t : float
        Fourier frequency scales.
    seed : int
        Seeds the Fourier frequencies and the Glorot initialisation.
    dtype : torch.dtype
    fast : bool
        Use the oneDNN matmul on CPU float32 (see :func:`linear`); False: plain torch.matmul.
    fused : bool
        Training passes through :func:`gbm.pinn.kernels.fused_mlp` (see :class:`MLP`).
    """

    def __init__(
        self,
        dim: int,
        center,
        length: float,
        horizon: float,
        width: int = 100,
        depth: int = 3,
        fourier: int = 0,
        sigma_x: float = 2.0,
        sigma_t: float = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        fast: bool = True,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        gen = torch.Generator().manual_seed(int(seed))
        self.dim = dim
        self.length = float(length)
        self.horizon = float(horizon)
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float64).to(dtype))
        self.embedding = (
            FourierFeatures(dim, fourier, sigma_x, sigma_t, gen, dtype) if fourier > 0 else None
        )
        n_in = self.embedding.out_features if self.embedding is not None else dim + 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.mlp = MLP(n_in, width, depth, fast, fused)
        #: optional shift of the initial condition's centre in scaled coordinates (None: at
        #: x' = 0). The patient fit makes it a trainable parameter: the origin x0 = x_ic + L shift
        #: is then learnt while the network's coordinates stay fixed.
        self.ic_shift: nn.Parameter | None = None
        self.to(dtype)

    def enable_ic_shift(self, lo_mm: Any, hi_mm: Any) -> nn.Parameter:
        """Make the initial condition's centre trainable within the box [lo_mm, hi_mm] (local
        mm; it must contain the centre, where it starts); returns the trained parameter z.

        The shift is s = lo' + (hi' - lo') sigmoid(z) in scaled coordinates (lo', hi' the box
        in x'), so the origin x0 = x_ic + L s never leaves the box."""
        c = self.center.detach().double()
        lo = (torch.as_tensor(lo_mm, dtype=torch.float64) - c) / self.length
        hi = (torch.as_tensor(hi_mm, dtype=torch.float64) - c) / self.length
        if not bool(((lo < 0) & (hi > 0)).all()):
            raise ValueError("the origin box must contain the network's centre strictly")
        frac = -lo / (hi - lo)
        self.register_buffer("ic_lo", lo.to(self.center.dtype))
        self.register_buffer("ic_span", (hi - lo).to(self.center.dtype))
        self.ic_shift = nn.Parameter(torch.log(frac / (1 - frac)).to(self.center.dtype))
        return self.ic_shift

    def shift(self) -> Tensor | None:
        """The initial condition's shift s in scaled coordinates (None: none)."""
        if self.ic_shift is None:
            return None
        return self.ic_lo + self.ic_span * torch.sigmoid(self.ic_shift)

    def origin(self) -> Tensor:
        """The initial condition's centre x0 in local mm (detached)."""
        c = self.center.detach()
        s = self.shift()
        return c if s is None else c + self.length * s.detach()

    def _ic_coords(self, xs: Tensor) -> Tensor:
        """Scaled coordinates relative to the initial condition's centre (x' - s)."""
        s = self.shift()
        return xs if s is None else xs - s

    # -- scaling ------------------------------------------------------------------------------
    def scale(self, x_mm: Tensor, t_days: Tensor) -> tuple[Tensor, Tensor]:
        """Physical (N, d) mm and (N,) days -> scaled (N, d) and (N, 1)."""
        xs = (x_mm - self.center) / self.length
        ts = (t_days / self.horizon).reshape(-1, 1)
        return xs, ts

    # -- evaluation ---------------------------------------------------------------------------
    def forward(self, xs: Tensor, ts: Tensor) -> Tensor:
        """u at scaled points: xs (N, d), ts (N, 1) -> (N,)."""
        if self._fused(xs, ts):
            out = self.mlp.rows(self._rows(xs, ts, False), xs.shape[0], self.dim, False)
        else:
            h = self.embedding(xs, ts) if self.embedding is not None else torch.cat([xs, ts], -1)
            out = self.mlp(h)
        return out * ts[:, 0] + ic_value(self._ic_coords(xs), self.length)

    def _fused(self, xs: Tensor, ts: Tensor) -> bool:
        """Whether a pass takes the fused path (:meth:`MLP.use_fused`; a time that requires grad,
        e.g. a trainable scan time, also needs the row-major graph)."""
        return self.mlp.use_fused(xs) and not ts.requires_grad

    def _rows(self, xs: Tensor, ts: Tensor, derivs: bool) -> Tensor:
        """The MLP's input rows in feature-major layout (:meth:`FourierFeatures.rows`, or
        (x', t') as (d + 1, n))."""
        if self.embedding is not None:
            return self.embedding.rows(xs, ts, derivs)
        # plain inputs: the value rows alone, their derivative rows are implied (fused_mlp)
        return torch.cat([xs.t(), ts.t()], 0)

    def u(self, x_mm: Tensor, t_days: Tensor) -> Tensor:
        """u at physical points: x (N, d) in local mm, t (N,) in days -> (N,)."""
        return self.forward(*self.scale(x_mm, t_days))

    def derivatives(self, xs: Tensor, ts: Tensor) -> Derivatives:
        """u, du/dx', du/dt', lap' u at scaled points in one forward pass (forward Laplacian)."""
        n, d = xs.shape
        if self._fused(xs, ts):
            y = self.mlp.rows(self._rows(xs, ts, True), n, d, True)
            nv, nt, nl = y[:n], y[(d + 1) * n:(d + 2) * n], y[(d + 2) * n:]
            ng = y[n:(d + 1) * n].reshape(d, n).t()
        else:
            if self.embedding is not None:
                h, dh, ht, lh = self.embedding.forward_derivs(xs, ts)
            else:
                h = torch.cat([xs, ts], -1)
                eye = torch.eye(d + 1, dtype=xs.dtype, device=xs.device)
                dh = eye[:d, None, :].expand(d, n, d + 1)
                ht = eye[d].expand(n, d + 1)
                lh = torch.zeros_like(h)
            nv, ng, nt, nl = self.mlp.forward_derivs(h, dh, ht, lh)
        t = ts[:, 0]
        # IC and its derivatives in scaled coordinates: IC = A exp(-c |x'|^2), c = L^2 / 10
        c = self.length * self.length / IC_WIDTH2_MM2
        xi = self._ic_coords(xs)
        r2 = (xi * xi).sum(-1)
        ic = IC_AMPLITUDE * torch.exp(-c * r2)
        ic_grad = (-2.0 * c) * ic[:, None] * xi
        ic_lap = ic * (4.0 * c * c * r2 - 2.0 * c * d)
        return Derivatives(
            u=nv * t + ic,
            grad=ng * ts + ic_grad,
            u_t=nt * t + nv,
            lap=nl * t + ic_lap,
        )
