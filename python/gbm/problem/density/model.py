"""The density observation model: the tumour density observed at points, least squares (L2).

For model densities u_i = u(x_i, t_i) and observed densities u_obs_i, i = 1..N (dimensionless,
in units of the carrying capacity), the residuals and misfits are::

    r_i    = u_i - u_obs_i
    misfit = 0.5 sum_i r_i^2              (the FD fit's least-squares cost, numpy)
    rmse   = sqrt(2 misfit / N) = sqrt(mean r^2)
    loss   = mean_i r_i^2                 (the PINN's data loss, torch)

One model, two sides: :meth:`DensityL2.residuals`, :meth:`~DensityL2.misfit` and
:meth:`~DensityL2.rmse` on numpy arrays for the FD-based fit (:mod:`gbm.inference.density_fit`), and
:meth:`DensityL2.loss` on torch tensors for the PINN (:mod:`gbm.pinn.train`,
:mod:`gbm.pinn.inverse`). The torch side never imports torch itself: it only calls tensor methods,
so this module stays importable without torch, and it is traceable by ``torch.compile``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

__all__ = ["DENSITY_L2", "DensityL2"]


class DensityL2:
    """Tumour density at points, L2 misfit (see the module docstring). Stateless."""

    # ------------------------------------------------------------------ numpy side
    @staticmethod
    def residuals(u_model: np.ndarray, u_obs: np.ndarray) -> np.ndarray:
        """r = u_model - u_obs, float64 (N,)."""
        return np.asarray(u_model) - np.asarray(u_obs)

    @staticmethod
    def cost(r: np.ndarray) -> float:
        """0.5 sum r^2 of residuals ``r`` (N,) float64."""
        return 0.5 * float(r @ r)

    @classmethod
    def misfit(cls, u_model: np.ndarray, u_obs: np.ndarray) -> float:
        """0.5 sum (u_model - u_obs)^2 (dimensionless)."""
        return cls.cost(cls.residuals(u_model, u_obs))

    @staticmethod
    def rmse_from_cost(cost: float, n: int) -> float:
        """sqrt(2 cost / n): the root-mean-square residual of ``n`` observations."""
        return math.sqrt(2 * cost / n)

    @classmethod
    def rmse(cls, u_model: np.ndarray, u_obs: np.ndarray) -> float:
        """Root-mean-square residual sqrt(mean (u_model - u_obs)^2)."""
        return cls.rmse_from_cost(cls.misfit(u_model, u_obs), len(np.asarray(u_obs)))

    # ------------------------------------------------------------------ torch side
    @staticmethod
    def loss(u_model: Tensor, u_obs: Tensor) -> Tensor:
        """mean (u_model - u_obs)^2 on tensors of one shape (the PINN's data loss, a 0-d tensor,
        differentiable in ``u_model``)."""
        return (u_model - u_obs).square().mean()

    @classmethod
    def misfit_torch(cls, u_model: Tensor, u_obs: Tensor) -> Tensor:
        """0.5 sum (u_model - u_obs)^2 on tensors (the numpy :meth:`misfit`, on the torch side)."""
        r = u_model - u_obs
        return 0.5 * (r * r).sum()


#: The instance the inference methods use.
DENSITY_L2 = DensityL2()
