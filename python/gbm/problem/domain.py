"""The coefficient fields of an inference problem and the seeded point draws (no torch needed).

Shared by the PINN (:mod:`gbm.pinn.sampling`, :mod:`gbm.pinn.train`) and by the FD-based
inference (:mod:`gbm.inference.density_fit`), which use the same problem set-up (:mod:`gbm.problem.density.build`).
The PINN's torch point sets at given points are made by :func:`gbm.pinn.residual.domain_point_set`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Domain", "draw_seed"]

_MIX = 0x9E3779B97F4A7C15  # golden-ratio increment (splitmix64) to decorrelate draw seeds


def draw_seed(seed: int, counter: int, stream: int = 0) -> int:
    """A 64-bit sampler seed for draw ``counter`` of stream ``stream`` of a run seeded ``seed``."""
    x = (int(seed) * _MIX + (int(stream) << 40) + int(counter) * 0xBF58476D1CE4E5B9) % 2**64
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) % 2**64
    return x ^ (x >> 29)


@dataclass(frozen=True, eq=False)
class Domain:
    """The coefficient fields of a problem (what the PINN residual and the FD fit need) on the box.

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
        """Build from a :class:`gbm.model.geometry.Geometry` with its phase field set."""
        if geom.phi is None:
            raise ValueError("geometry has no phase field: call with_phase_field() first")
        return cls(
            phi=np.ascontiguousarray(geom.phi, dtype=np.float64),
            kfac=np.ascontiguousarray(geom.tissue_factor(ratio), dtype=np.float64),
            spacing=tuple(float(s) for s in geom.spacing),
            center=np.asarray(seed_local, dtype=np.float64).reshape(-1),
        )
