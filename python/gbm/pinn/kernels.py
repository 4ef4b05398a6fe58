"""The PINN's matrix kernels: oneDNN products and the fused forward-Laplacian MLP.

**Products.** On this project's CPUs (AMD Zen) MKL's sgemm takes its AVX2 path while oneDNN
(``mkldnn._linear_pointwise``) uses AVX-512: for the PINN's products with a 100 x 100 weight
oneDNN is ~2x faster. Two custom ops wrap it (opaque single kernels to autograd and
``torch.compile``): ``gbm::linear(x, w) = x @ w.T`` (with its own backward) and
``gbm::matmul(a, b) = a @ b`` (no backward; used inside :class:`FusedMLP`). On other devices,
dtypes or builds, plain ``torch`` products are used.

**Fused MLP** (:func:`fused_mlp`). The tanh MLP ``N`` of :mod:`gbm.pinn.network` with the forward
Laplacian carried through it, in *feature-major* layout and with a hand-written backward. The
R = d + 3 rows carried per point (value h, spatial derivatives g_1..g_d, time derivative t,
Laplacian l; R = 1 for the value alone) are the column blocks of one (H, R n) matrix X, so each
layer is one product Z = W X for all rows (the bias enters the value block). Per hidden layer,
elementwise on (H, n) blocks::

    h' = tanh(z_h),  s = 1 - h'^2,  q = sum_k gz_k^2
    g'_k = s gz_k,   t' = s z_t,    l' = s l_z - 2 h' s q

and the output layer is y = w_out X (+ b_out on the value block). Backward, from the adjoints
(h̄', ḡ'_k, t̄', l̄') of a layer's output rows::

    l̄_z = s l̄',   t̄_z = s t̄',   ḡz_k = s ḡ'_k - 4 l̄' h' s gz_k
    s̄ = l̄' (l_z - 2 h' q) + sum_k ḡ'_k gz_k + t̄' z_t
    z̄_h = s (h̄' - 2 l̄' s q - 2 h' s̄)
    W̄ = Z̄ X^T,   b̄ = sum_points z̄_h,   X̄ = W^T Z̄

(the last only below the first layer: the inputs are data). With plain (x', t') inputs the
first layer's derivative blocks are the columns of W (d z / d x'_k = W[:, k], d z / d t' =
W[:, d], lap z = 0): they are not multiplied out, and their weight gradient is a sum over
points. Every product is then (H x H) times
(H x R n) or (H x R n) times (R n x H), the shapes oneDNN runs fastest, instead of the row-major
weight gradient g^T x that MKL runs at half speed; the weight gradient of all rows is one product.
Under ``torch.compile`` (the Trainer's ``compile``) dynamo traces this Function, forward and
backward, and inductor fuses the elementwise lines between the products. Gradients reach the
parameters only: the input rows must not require grad (use the row-major path for
derivatives with respect to the inputs, e.g. nested autograd).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["FusedMLP", "fused_mlp", "keep_heap", "linear", "matmul", "use_dnn"]

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4


def keep_heap() -> bool:
    """Keep freed memory in glibc's heap for reuse (no mmap per large block, no trimming).

    A training epoch allocates and frees the same large blocks (the (H, R n) row matrices:
    40 MB at 20,000 points in 2D) every epoch. glibc serves blocks above 32 MB with a fresh mmap
    and returns them to the system on free, so every epoch page-faults them in again; measured,
    that more than doubles a CPU epoch (213 ms against 91 ms). Setting M_MMAP_MAX = 0 and a
    high M_TRIM_THRESHOLD makes freed blocks reusable; the process then keeps its peak heap
    until it exits. Process-wide; called by both network methods on CPU. Returns
    whether it took effect (False where the C library is not glibc).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt   # the process's own C library (no ldconfig run)
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def _register_dnn_ops() -> tuple[Any, Any] | None:
    """(gbm::linear, gbm::matmul) through oneDNN, or None where this build lacks it."""
    lp = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if lp is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        @torch.library.custom_op("gbm::linear", mutates_args=())
        def dnn_linear(x: Tensor, w: Tensor) -> Tensor:
            return lp(x.contiguous(), w.contiguous(), None, "none", [], "")

        @dnn_linear.register_fake
        def _(x: Tensor, w: Tensor) -> Tensor:
            return x.new_empty((x.shape[0], w.shape[0]))

        def setup(ctx, inputs, output) -> None:
            ctx.save_for_backward(*inputs)

        def backward(ctx, g: Tensor):
            x, w = ctx.saved_tensors
            gx = dnn_linear(g.contiguous(), w.t().contiguous()) if ctx.needs_input_grad[0] else None
            gw = g.t() @ x if ctx.needs_input_grad[1] else None
            return gx, gw

        dnn_linear.register_autograd(backward, setup_context=setup)

        @torch.library.custom_op("gbm::matmul", mutates_args=())
        def dnn_matmul(a: Tensor, b: Tensor) -> Tensor:
            return lp(a.contiguous(), b.contiguous().t(), None, "none", [], "")

        @dnn_matmul.register_fake
        def _(a: Tensor, b: Tensor) -> Tensor:
            return a.new_empty((a.shape[0], b.shape[1]))

        x = torch.randn(8, 5)
        w = torch.randn(3, 5)
        if not torch.allclose(dnn_linear(x, w), x @ w.t(), rtol=1e-5, atol=1e-5):
            return None
        if not torch.allclose(dnn_matmul(w, x.t()), w @ x.t(), rtol=1e-5, atol=1e-5):
            return None
        return dnn_linear, dnn_matmul
    except Exception:  # an op missing from this build: fall back to torch products
        return None


_DNN = _register_dnn_ops()


def use_dnn(x: Tensor, fast: bool = True) -> bool:
    """Whether products on ``x`` go through oneDNN (CPU float32, available and ``fast``)."""
    return fast and _DNN is not None and x.device.type == "cpu" and x.dtype == torch.float32


def linear(x: Tensor, w: Tensor, b: Tensor | None = None, fast: bool = True) -> Tensor:
    """x @ w.T (+ b): oneDNN on CPU float32 when available and ``fast``, else torch.matmul."""
    if use_dnn(x, fast):
        assert _DNN is not None
        y = _DNN[0](x.contiguous(), w)
        return y if b is None else y + b
    y = x @ w.t()
    return y if b is None else y + b


def matmul(a: Tensor, b: Tensor, fast: bool = True) -> Tensor:
    """a @ b for (M, K) and (K, N): oneDNN on CPU float32 when available and ``fast``."""
    if use_dnn(a, fast):
        assert _DNN is not None
        return _DNN[1](a, b)
    return a @ b


def _blocks(z: Tensor, n: int, d: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The (value, spatial (H, d, n), time, Laplacian) column blocks of an (H, (d + 3) n) matrix."""
    h = z.shape[0]
    return (z[:, :n], z[:, n:(d + 1) * n].reshape(h, d, n), z[:, (d + 1) * n:(d + 2) * n],
            z[:, (d + 2) * n:])


def _forward(x0: Tensor, n: int, d: int, derivs: bool, weights: list[Tensor],
             biases: list[Tensor], w_out: Tensor, b_out: Tensor, fast: bool
             ) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor]]:
    """y (R n,) and what the backward needs: each layer's input rows (the value block of a hidden
    layer's output is its h') and pre-activations Z (derivative blocks used)."""
    plain = derivs and x0.shape[1] == n
    x = x0
    inputs, pre = [x0], []
    for i, (w, b) in enumerate(zip(weights, biases)):
        z = matmul(w, x, fast)
        hp = torch.tanh(z[:, :n] + b[:, None])
        if not derivs:
            x = hp
        elif plain and i == 0:
            # plain inputs: d z / d x'_k = W[:, k], d z / d t' = W[:, d], lap z = 0
            s = 1.0 - hp * hp
            wk = w[:, :d]
            q = (wk * wk).sum(1)[:, None]
            x = torch.cat([hp, (s[:, None] * wk[:, :, None]).reshape(-1, d * n),
                           s * w[:, d:d + 1], -2.0 * hp * s * q], 1)
        else:
            s = 1.0 - hp * hp
            _, gz, zt, lz = _blocks(z, n, d)
            q = (gz * gz).sum(1)
            x = torch.cat([hp, (s[:, None] * gz).reshape(-1, d * n), s * zt,
                           s * lz - 2.0 * hp * s * q], 1)
            pre.append(z)
        inputs.append(x)
    y = matmul(w_out, x, fast)[0]
    y = torch.cat([y[:n] + b_out, y[n:]]) if derivs else y + b_out
    return y, inputs, pre


def _backward(yb: Tensor, n: int, d: int, derivs: bool, weights: list[Tensor], w_out: Tensor,
              inputs: list[Tensor], pre: list[Tensor], fast: bool
              ) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
    """Parameter adjoints (weights, biases, w_out, b_out) from the output adjoint yb (R n,)."""
    plain = derivs and inputs[0].shape[1] == n
    wb_out = linear(yb[None], inputs[-1], fast=fast)
    bb_out = yb[:n].sum().reshape(1)
    xb = w_out.t() * yb[None]  # (H, R n): adjoint of the last hidden layer's output rows
    wbs: list[Tensor] = []
    bbs: list[Tensor] = []
    for i in range(len(weights) - 1, -1, -1):
        hp = inputs[i + 1][:, :n]
        s = 1.0 - hp * hp
        if not derivs:
            zhb = zb = xb * s
            wbs.append(linear(zb, inputs[i], fast=fast))
        else:
            if plain and i == 0:
                w = weights[0]
                gz, zt = w[:, :d, None], w[:, d:d + 1]
                lz = torch.zeros_like(zt)
            else:
                _, gz, zt, lz = _blocks(pre[i - 1 if plain else i], n, d)
            hb, gb, tb, lb = _blocks(xb, n, d)
            q = (gz * gz).sum(1)
            qb = -2.0 * lb * hp * s
            sb = lb * (lz - 2.0 * hp * q) + (gb * gz).sum(1) + tb * zt
            zhb = (hb - 2.0 * lb * s * q - 2.0 * hp * sb) * s
            gzb = gb * s[:, None] + 2.0 * gz * qb[:, None]
            if plain and i == 0:
                # W[:, k] multiplies x'_k in the value block and 1 in block k (constant inputs)
                const = torch.cat([gzb.sum(2), (tb * s).sum(1, keepdim=True)], 1)
                wbs.append(linear(zhb, inputs[0], fast=fast) + const)
            else:
                zb = torch.cat([zhb, gzb.reshape(-1, d * n), tb * s, lb * s], 1)
                wbs.append(linear(zb, inputs[i], fast=fast))
        bbs.append(zhb.sum(1))
        if i > 0:
            xb = matmul(weights[i].t().contiguous(), zb, fast)
    return wbs[::-1], bbs[::-1], wb_out, bb_out


class FusedMLP(torch.autograd.Function):
    """y = MLP rows of x0 with the hand-written backward of the module docstring.

    ``apply(x0, n, d, derivs, fast, w_1, b_1, ..., w_L, b_L, w_out, b_out)``; gradients for
    the parameters only."""

    @staticmethod
    def forward(ctx, x0: Tensor, n: int, d: int, derivs: bool, fast: bool,
                *params: Tensor) -> Tensor:
        weights, biases = list(params[0:-2:2]), list(params[1:-2:2])
        w_out, b_out = params[-2], params[-1]
        y, inputs, pre = _forward(x0, n, d, derivs, weights, biases, w_out, b_out[0], fast)
        ctx.sizes = (n, d, derivs, fast, len(weights), len(pre))
        ctx.save_for_backward(*weights, w_out, *inputs, *pre)
        return y

    @staticmethod
    def backward(ctx, yb: Tensor):
        n, d, derivs, fast, layers, n_pre = ctx.sizes
        saved = list(ctx.saved_tensors)
        weights, w_out = saved[:layers], saved[layers]
        rest = saved[layers + 1:]
        inputs, pre = rest[:layers + 1], rest[layers + 1:layers + 1 + n_pre]
        wbs, bbs, wb_out, bb_out = _backward(yb.contiguous(), n, d, derivs, weights, w_out,
                                             inputs, pre, fast)
        grads: list[Tensor | None] = [None] * 5
        for wb, bb in zip(wbs, bbs):
            grads += [wb, bb]
        return (*grads, wb_out, bb_out)


def fused_mlp(x0: Tensor, n: int, d: int, derivs: bool, layers: Any,
              fast: bool = True) -> Tensor:
    """The MLP's output rows for feature-major input rows.

    Parameters
    ----------
    x0 : Tensor (E, R n) or (d + 1, n)
        Input rows as column blocks, R = 1 (value) or R = d + 3 (value, d/dx'_1..d, d/dt',
        Laplacian); with ``derivs`` and only n columns, the plain input (x', t') whose derivative
        rows are the unit vectors (not stored: the first layer then needs no product for them).
        Must not require grad.
    n : int
        Number of points.
    d : int
        Spatial dimension.
    derivs : bool
        Carry the derivative rows (output R = d + 3) or the value alone (R = 1).
    layers : sequence of nn.Linear
        Hidden layers then the (H -> 1) output layer.
    fast : bool
        oneDNN products where available.

    Returns
    -------
    Tensor (R n,): the output's value, then (for R = d + 3) its rows in the same block order.
    """
    params: list[Tensor] = []
    for layer in layers:
        params += [layer.weight, layer.bias]
    return FusedMLP.apply(x0.contiguous(), n, d, derivs, fast, *params)
