"""Collocation points for the PINN: where the PDE residual is evaluated.

Points come from the Rust samplers (:func:`gbm._core.sample_radial`, the paper's radially-symmetric
uniform distribution around x_ic: |x - x_ic| ~ U(0, R), direction uniform, so the density is
highest at the seed and the whole tumour region is covered; t ~ U(0, T)). Each draw is
deterministic in ``(seed, counter)``, so a run that resamples every N epochs can be resumed
bit-identically by storing the counter.

The coefficient fields phi, F = k phi and grad F at the points are interpolated once per draw
(:func:`gbm.pinn.residual.domain_point_set`).
"""

from __future__ import annotations

import numpy as np
import torch

from gbm import _core
from gbm.pinn.network import PinnNet
from gbm.pinn.residual import PointSet, domain_point_set
from gbm.problem.domain import Domain, draw_seed

__all__ = ["CollocationSampler"]


class CollocationSampler:
    """Draws radially-sampled collocation point sets around the seed.

    Parameters
    ----------
    domain : Domain
    net : PinnNet
        Provides the scaling (x_ic, L, T).
    radius : float
        Sampling radius in mm (usually L).
    n : int
        Points per draw.
    t_max : float
        Days (usually T).
    seed : int
        Base seed; draw ``c`` uses :func:`draw_seed` (seed, c).
    phi_min : float
        Points are kept where phi >= phi_min (inside the brain).
    """

    def __init__(
        self,
        domain: Domain,
        net: PinnNet,
        radius: float,
        n: int,
        t_max: float,
        seed: int,
        phi_min: float = 0.5,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.domain = domain
        self.net = net
        self.radius = float(radius)
        self.n = int(n)
        self.t_max = float(t_max)
        self.seed = int(seed)
        self.phi_min = float(phi_min)
        self.device = device
        self.dtype = dtype

    def sample(self, counter: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw points (n, d) mm and times (n,) days of draw ``counter``."""

        return _core.sample_radial(
            self.domain.phi,
            list(self.domain.spacing),
            [float(c) for c in self.domain.center],
            self.radius,
            self.n,
            self.t_max,
            draw_seed(self.seed, counter),
            self.phi_min,
        )

    def draw(self, counter: int) -> PointSet:
        """Point set of draw ``counter`` (deterministic), on the sampler's device and dtype."""
        pts, t = self.sample(counter)
        return domain_point_set(self.domain, self.net, pts, t, self.device, self.dtype)
