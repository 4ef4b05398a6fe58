"""Typed stub of the compiled Rust core ``gbm._core`` (see rust/py/).

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

def stable_dt(
    diffusivity: NDArray[np.float64], phi: NDArray[np.float64], spacing: Sequence[float],
    rho: float, phi_min: float = 1e-3, face_mean: str = "harmonic",
) -> float:
    """Largest stable time step of :class:`FisherKpp` for a medium, without building a solver.

    Exactly ``FisherKpp(u0, diffusivity, phi, spacing, rho, phi_min=phi_min).dt_stable`` (the
    same float, the same input checks): ``min over active cells of 1 / (sum_f a_f / (phi h_f^2)
    + rho)``, a_f the harmonic mean of D phi over face f as the solver stores it (float32). The
    solver's default step is ``0.9 * stable_dt(...)``.

    Parameters
    ----------
    diffusivity : ndarray of float64, shape (nx, ny) or (nx, ny, nz)
        D in mm^2/day, >= 0.
    phi : ndarray of float64, same shape
        Phase field in [0, 1] (1 in tissue).
    spacing : sequence of 2 or 3 floats
        Voxel size in mm per axis.
    rho : float
        Proliferation rate in 1/day, >= 0.
    phi_min : float, default 1e-3
        Cells with ``phi < phi_min`` are inactive; in (0, 1].
    face_mean : str, default "harmonic"
        Mean of D phi on a face, as in :class:`FisherKpp` (``"harmonic"`` or ``"arithmetic"``).

    Returns
    -------
    float
        dt_stable in days; ``inf`` when D = 0 and rho = 0.

    Raises
    ------
    ValueError
        Mismatched shapes or spacing, NaN/Inf, values out of range, no active cell.
    """

def available_isas() -> list[str]:
    """Instruction sets this CPU runs the solver's cell update with, best first: a sub-list of
    ``["avx512", "avx2", "scalar"]`` ending with ``"scalar"``. Each may be passed as
    ``FisherKpp(..., isa=...)``; all give bit-identical results."""

class FisherKpp:
    """Explicit finite-volume solver of phi du/dt = div(D phi grad u) + phi rho u(1-u).

    ``isa`` forces the instruction set of the cell update: ``"auto"``/``None`` (the best of
    :func:`available_isas`), ``"avx512"``, ``"avx2"`` or ``"scalar"``; bit-identical results
    either way, ValueError for an unknown one or one this CPU lacks.

    ``face_mean`` is the mean of a = D phi on a face: ``"harmonic"`` (default,
    2 a_i a_j / (a_i + a_j)) or ``"arithmetic"`` ((a_i + a_j) / 2); a face with an inactive cell
    is closed either way. ValueError for another name.
    ``scheme``: ``"euler"`` (default; first order, ``dt = safety * dt_stable`` or the given
    ``dt <= dt_stable``) or ``"strang-rkl2"`` (second order: exact logistic half steps around an
    RKL2 super-time-step of the diffusion; default ``dt = 0.5 / rho`` days, any ``dt`` accepted;
    ``stages`` RKL2 stages per step, default the fewest with
    ``dt <= safety * dt_diffusion * (s^2 + s - 2) / 4``; a given ``stages`` is refused if unstable).
    ``stages`` is for ``"strang-rkl2"`` only.
    """

    def __init__(
        self, u0: NDArray[np.float64], diffusivity: NDArray[np.float64], phi: NDArray[np.float64],
        spacing: Sequence[float], rho: float, phi_min: float = 1e-3, safety: float = 0.9,
        dt: float | None = None, isa: str | None = None, face_mean: str = "harmonic",
        scheme: str = "euler", stages: int | None = None,
    ) -> None: ...
    @property
    def scheme(self) -> str: ...
    @property
    def stages(self) -> int: ...
    @property
    def dt_diffusion(self) -> float: ...
    @property
    def dt(self) -> float: ...
    @property
    def dt_stable(self) -> float: ...
    @property
    def isa(self) -> str: ...
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
