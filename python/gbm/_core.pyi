"""Typed stub of the compiled Rust core ``gbm._core`` (see rust/py.rs).

Arrays are float64, C-contiguous, shape (nx, ny) for 2D or (nx, ny, nz) for 3D; ``spacing`` gives the
voxel size in mm per axis; points are (N, d) in local mm (voxel (i, j, k) centre at (i*dx, j*dy, k*dz)).
Bad input raises ValueError naming the argument.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

def num_threads() -> int: ...
def phase_field(
    mask: NDArray[np.float64], spacing: Sequence[float], epsilon: float = 0.5, tol: float = 5e-3,
    max_steps: int = 500, dt: float | None = None,
) -> tuple[NDArray[np.float64], dict[str, Any]]: ...
def interpolate(
    fields: NDArray[np.float64], spacing: Sequence[float], points: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
def sample_radial(
    phi: NDArray[np.float64], spacing: Sequence[float], center: Sequence[float], radius: float,
    n: int, t_max: float, seed: int, phi_min: float = 0.5,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
def sample_uniform(
    phi: NDArray[np.float64], spacing: Sequence[float], n: int, t_max: float, seed: int,
    phi_min: float = 0.5,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...

class FisherKpp:
    """Explicit finite-volume solver of phi du/dt = div(D phi grad u) + phi rho u(1-u)."""

    def __init__(
        self, u0: NDArray[np.float64], diffusivity: NDArray[np.float64], phi: NDArray[np.float64],
        spacing: Sequence[float], rho: float, phi_min: float = 1e-3, safety: float = 0.9,
        dt: float | None = None,
    ) -> None: ...
    @property
    def dt(self) -> float: ...
    @property
    def dt_stable(self) -> float: ...
    @property
    def t(self) -> float: ...
    @property
    def steps(self) -> int: ...
    @property
    def active_cells(self) -> int: ...
    def advance(self, n_steps: int) -> None: ...
    def state(self, t: float | None = None) -> NDArray[np.float64]: ...
    def steps_until(self, t: float) -> int: ...
    def observe(
        self, points: NDArray[np.float64], times: NDArray[np.float64]
    ) -> NDArray[np.float64]: ...

def radial_solve(
    phi: NDArray[np.float64], diffusivity: NDArray[np.float64], u0: NDArray[np.float64], dr: float,
    dim: int, rho: float, times: Sequence[float], phi_min: float = 1e-3, safety: float = 0.9,
    dt: float | None = None,
) -> tuple[NDArray[np.float64], dict[str, Any]]: ...
