"""Collocation points for the PINN: where the PDE residual is evaluated.

Points come from the Rust samplers (:func:`gbm._core.sample_radial`, the paper's radially-symmetric
uniform distribution around x_ic: |x - x_ic| ~ U(0, R), direction uniform, so the density is
highest at the seed and the whole tumour region is covered; t ~ U(0, T)). Each draw is
deterministic in ``(seed, counter)``, so a run that resamples every N epochs can be resumed
bit-identically by storing the counter.

The coefficient fields phi, F = k phi and grad F at the points are interpolated once per draw
(:func:`gbm.pinn.residual.make_point_set`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gbm.pinn.network import PinnNet
from gbm.pinn.residual import PointSet, make_point_set

__all__ = ["Domain", "CollocationSampler", "draw_seed"]

_MIX = 0x9E3779B97F4A7C15  # golden-ratio increment (splitmix64) to decorrelate draw seeds


def draw_seed(seed: int, counter: int, stream: int = 0) -> int:
    """A 64-bit sampler seed for draw ``counter`` of stream ``stream`` of a run seeded ``seed``."""
    x = (int(seed) * _MIX + (int(stream) << 40) + int(counter) * 0xBF58476D1CE4E5B9) % 2**64
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) % 2**64
    return x ^ (x >> 29)


@dataclass(frozen=True, eq=False)
class Domain:
    """The coefficient fields the PINN needs, on the box grid.

    Attributes
    ----------
    phi : ndarray float64 (nx, ny[, nz])
        Phase field.
    kfac : ndarray float64 (nx, ny[, nz])
        Tissue factor k = pw + pg/ratio (D = Dw k).
    spacing : tuple of float
        Voxel size in mm.
    center : ndarray (d,)
        Tumour seed x_ic in local mm.
    """

    phi: np.ndarray
    kfac: np.ndarray
    spacing: tuple[float, ...]
    center: np.ndarray

    @property
    def ndim(self) -> int:
        return self.phi.ndim

    @classmethod
    def from_geometry(cls, geom, seed_local, ratio: float = 10.0) -> Domain:
        """Build from a :class:`gbm.geometry.Geometry` with its phase field set."""
        if geom.phi is None:
            raise ValueError("geometry has no phase field: call with_phase_field() first")
        return cls(
            phi=np.ascontiguousarray(geom.phi, dtype=np.float64),
            kfac=np.ascontiguousarray(geom.tissue_factor(ratio), dtype=np.float64),
            spacing=tuple(float(s) for s in geom.spacing),
            center=np.asarray(seed_local, dtype=np.float64).reshape(-1),
        )

    def point_set(
        self,
        net: PinnNet,
        points_mm: np.ndarray,
        t_days: np.ndarray,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> PointSet:
        """Scaled points with phi, F, grad F interpolated at them."""
        return make_point_set(
            net, points_mm, t_days, self.phi, self.kfac, self.spacing, device, dtype
        )


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
        from gbm import _core

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
        return self.domain.point_set(self.net, pts, t, self.device, self.dtype)
