"""Numpy baseline of the explicit finite-volume Fisher-Kolmogorov solver (the Rust solver's scheme).

This is the reference implementation the benchmark (``benches/bench_fd.py``) times the Rust solver
``gbm._core.FisherKpp`` against, and the tests (``tests/test_numpy_baseline.py``) check it with.
It implements exactly the scheme documented in the header of ``rust/fisher_kpp/mod.rs``:

    phi du/dt = div(D phi grad u) + phi rho u (1 - u)          u in [0, 1]; mm, days

* cell-centred finite volumes, 2D arrays (nx, ny) or 3D arrays (nx, ny, nz), voxel size ``spacing``;
* a_i = D_i phi_i in active cells (phi_i >= phi_min, phi clamped into [0, 1]), 0 in inactive ones;
  face coefficient A_f = 2 a_i a_j / (a_i + a_j) / h_f^2 (harmonic mean, 0 if either cell is
  inactive), rounded to float32 like the Rust solver stores it; 1/phi_i in float64;
* explicit Euler: u_i <- u_i + tau (1/phi_i sum_f A_f (u_j - u_i) + rho u_i (1 - u_i)), values
  below ``FLUSH`` = 1e-200 set to 0; inactive cells stay 0; no flux through the box edge (faces
  exist only between neighbouring cells of the box: plain slicing, no periodic wrap);
* dt = safety / max over active cells (sum_f A_f / phi_i + rho)  (safety 0.9), never depending on
  the run length; a snapshot at t between steps is one partial Euler step of size t - t_n applied
  to a copy of the state.

The flux terms are summed in the same order as the Rust kernel (x-, x+, y-, y+, z+, z- in 3D;
x-, x+, y+, y- in 2D) and no fused multiply-add is involved, so the two implementations agree to
round-off (in practice bit for bit).  Everything is vectorised numpy on float64 arrays (one thread:
numpy's elementwise ufuncs are single-threaded), in two forms with identical results: in-place
ufuncs on preallocated buffers (``inplace=True``, the default and the faster one) or plain array
expressions with fresh temporaries every step (``inplace=False``, the way numpy solvers such as
TumorGrowthToolkit are usually written).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Values of u below this are set to zero after each step (as in the Rust solver).
FLUSH = 1e-200


def _sl(ndim: int, axis: int, s: slice) -> tuple[slice, ...]:
    """Index tuple selecting ``s`` along ``axis`` and everything along the other axes."""
    out = [slice(None)] * ndim
    out[axis] = s
    return tuple(out)


LO, HI = slice(None, -1), slice(1, None)  # cells i and i + 1 of the faces (i, i + 1)


def whole_steps(t: float, dt: float) -> int:
    """Largest n with n * dt <= t (0 for t <= 0), exact in floating point."""
    if not (np.isfinite(t) and t > 0 and dt > 0):
        return 0
    n = int(np.floor(t / dt))
    while (n + 1) * dt <= t:
        n += 1
    while n > 0 and n * dt > t:
        n -= 1
    return n


class NumpyFisherKpp:
    """Numpy twin of ``gbm._core.FisherKpp`` (same constructor arguments and methods).

    Parameters
    ----------
    u0, diffusivity, phi : ndarray, float64, shape (nx, ny) or (nx, ny, nz)
        Initial density in [0, 1], D in mm^2/day, phase field in [0, 1].
    spacing : sequence of float
        Voxel size in mm per axis.
    rho : float
        Proliferation rate, 1/day.
    phi_min, safety : float
        Inactive-cell threshold and time-step safety factor (defaults as in the Rust solver).
    inplace : bool
        True: in-place ufuncs on preallocated buffers (the fastest numpy form); False: the plain
        expression form ``u + tau * (inv_phi * flux + rho * u * (1 - u))`` with fresh temporaries
        each step, as numpy code is usually written.  Same operations in the same order, so both
        give identical results.
    """

    def __init__(self, u0: np.ndarray, diffusivity: np.ndarray, phi: np.ndarray,
                 spacing: Sequence[float], rho: float, phi_min: float = 1e-3,
                 safety: float = 0.9, inplace: bool = True) -> None:
        phi = np.clip(np.asarray(phi, dtype=np.float64), 0.0, 1.0)
        d = np.asarray(diffusivity, dtype=np.float64)
        u0 = np.asarray(u0, dtype=np.float64)
        if not (phi.shape == d.shape == u0.shape) or phi.ndim not in (2, 3):
            raise ValueError(f"shapes differ or are not 2D/3D: {u0.shape}, {d.shape}, {phi.shape}")
        if len(spacing) != phi.ndim:
            raise ValueError(f"spacing needs {phi.ndim} entries, got {len(spacing)}")
        self.ndim = phi.ndim
        self.inplace = bool(inplace)
        self.shape = phi.shape
        self.rho = float(rho)
        active = phi >= phi_min
        a = np.where(active, d * phi, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.inv_phi = np.where(active, 1.0 / phi, 0.0)
        # Face coefficients A_f = harmonic(a_i, a_{i+1}) / h^2, float32, shape n - 1 along the axis.
        self.faces: list[np.ndarray] = []
        for ax, h in enumerate(spacing):
            al, ah = a[_sl(self.ndim, ax, LO)], a[_sl(self.ndim, ax, HI)]
            with np.errstate(divide="ignore", invalid="ignore"):
                hm = np.where((al > 0) & (ah > 0), 2.0 * al * ah / (al + ah), 0.0)
            self.faces.append((hm * (1.0 / (h * h))).astype(np.float32))
        self.active_cells = int(active.sum())
        if self.active_cells == 0:
            raise ValueError(f"phi has no cell above phi_min={phi_min}: empty domain")
        self.dt_stable = self._stable_dt()
        self.dt = safety * self.dt_stable if np.isfinite(self.dt_stable) else 1.0
        self.u = np.where(active & (u0 >= FLUSH), u0, 0.0)
        self.steps = 0
        if self.inplace:  # work buffers, allocated once
            self._next = np.empty_like(self.u)
            self._flux = np.empty_like(self.u)
            self._tmp = np.empty_like(self.u)
            self._dface = [np.empty(f.shape) for f in self.faces]

    def _stable_dt(self) -> float:
        """1 / max over active cells of (sum_f A_f / phi_i + rho), summed in the Rust order."""
        nd = self.ndim
        plus, minus = [], []
        for ax, f in enumerate(self.faces):
            p = np.zeros(self.shape)
            m = np.zeros(self.shape)
            p[_sl(nd, ax, LO)] = f
            m[_sl(nd, ax, HI)] = f
            plus.append(p)
            minus.append(m)
        # Rust (internal axes x, y, z; 2D has only y, z): s = Ay+ + Az+ (+ Ax+ + Ax-) + Ay- + Az-.
        s = plus[-2] + plus[-1]
        if nd == 3:
            s += plus[0]
            s += minus[0]
        s += minus[-2]
        s += minus[-1]
        worst = float(np.max(np.where(self.inv_phi > 0, self.inv_phi * s + self.rho, 0.0)))
        return 1.0 / worst if worst > 0 else float("inf")

    @property
    def t(self) -> float:
        """Time of the current state, ``steps * dt`` (days)."""
        return self.steps * self.dt

    def steps_until(self, t: float) -> int:
        """Whole steps still possible without passing time ``t`` (days)."""
        return max(whole_steps(t, self.dt) - self.steps, 0)

    def _step_expr(self, u: np.ndarray, tau: float) -> np.ndarray:
        """One explicit Euler step of size ``tau`` from ``u``, written as plain expressions."""
        nd = self.ndim
        flux = np.zeros_like(u)
        for ax, f in enumerate(self.faces):
            lo, hi = _sl(nd, ax, LO), _sl(nd, ax, HI)
            df = f * (u[hi] - u[lo])
            if ax < nd - 1:
                flux[hi] -= df
                flux[lo] += df
            else:
                flux[lo] += df
                flux[hi] -= df
        v = u + tau * (self.inv_phi * flux + self.rho * u * (1.0 - u))
        v[v < FLUSH] = 0.0
        return v

    def _step(self, u: np.ndarray, out: np.ndarray, tau: float) -> None:
        """One explicit Euler step of size ``tau`` from ``u`` into ``out`` (a different array)."""
        if not self.inplace:
            out[...] = self._step_expr(u, tau)
            return
        nd = self.ndim
        flux = self._flux
        flux.fill(0.0)
        for ax, (f, df) in enumerate(zip(self.faces, self._dface)):
            lo, hi = _sl(nd, ax, LO), _sl(nd, ax, HI)
            np.subtract(u[hi], u[lo], out=df)  # u_{i+1} - u_i on each face
            df *= f  # A_f (u_{i+1} - u_i): the flux into cell i, minus the flux into cell i+1
            if ax < nd - 1:  # Rust order: the -face term before the +face term
                flux[hi] -= df
                flux[lo] += df
            else:  # along the contiguous axis: the +face term first
                flux[lo] += df
                flux[hi] -= df
        tmp = self._tmp
        np.multiply(u, self.rho, out=tmp)  # rho u
        np.subtract(1.0, u, out=out)  # (1 - u), out used as scratch
        tmp *= out  # rho u (1 - u)
        flux *= self.inv_phi
        flux += tmp
        flux *= tau
        np.add(u, flux, out=out)
        out[out < FLUSH] = 0.0

    def advance(self, n_steps: int) -> None:
        """Take ``n_steps`` whole time steps."""
        for _ in range(int(n_steps)):
            if self.inplace:
                self._step(self.u, self._next, self.dt)
                self.u, self._next = self._next, self.u
            else:
                self.u = self._step_expr(self.u, self.dt)
            self.steps += 1

    def state(self, t: float | None = None) -> np.ndarray:
        """Copy of the density at time ``t`` in [t, t + dt] (default: now); see the header."""
        if t is None:
            return self.u.copy()
        now = self.t
        tol = 1e-9 * (self.dt + now)
        if not (np.isfinite(t) and now - tol <= t <= now + self.dt + tol):
            raise ValueError(f"t={t} is outside [{now}, {now + self.dt}] (days); advance first")
        tau = min(max(t - now, 0.0), self.dt)
        if self.dt - tau <= tol:
            tau = self.dt
        if tau == 0.0:
            return self.u.copy()
        out = np.empty_like(self.u)
        self._step(self.u, out, tau)
        return out


def solve(u0: np.ndarray, diffusivity: np.ndarray, phi: np.ndarray, spacing: Sequence[float],
          rho: float, t_end: float, **kw: Any) -> tuple[np.ndarray, NumpyFisherKpp]:
    """Run to ``t_end`` days: whole steps, then the partial step; returns (u(t_end), solver)."""
    s = NumpyFisherKpp(u0, diffusivity, phi, spacing, rho, **kw)
    s.advance(s.steps_until(t_end))
    return s.state(t_end), s
