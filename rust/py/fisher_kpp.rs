//! Python wrappers of the FV Fisher–KPP solver (`crate::fisher_kpp`): the `FisherKpp` class,
//! `stable_dt` (its time-step bound without building it) and `available_isas`.
//!
//! Equation: phi du/dt = div(D phi grad u) + phi rho u (1 - u); D in mm^2/day, rho in 1/day,
//! times in days. The solver object owns its state; `advance` and `observe` run without the GIL in
//! chunks of ~0.2 s and check for Ctrl-C between them.

use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use super::{field_and_grid, to_py_err};

/// Python-style shape tuple for messages, e.g. `(3, 4)`.
fn fk_shape(s: &[usize]) -> String {
    crate::fisher_kpp::shape_str(s)
}

/// Each named array must have the shape of `phi`.
fn same_shape_as_phi(
    phi: &PyReadonlyArrayDyn<'_, f64>,
    others: &[(&str, &PyReadonlyArrayDyn<'_, f64>)],
) -> PyResult<Vec<usize>> {
    let shape = phi.as_array().shape().to_vec();
    for (name, a) in others {
        let s = a.as_array().shape().to_vec();
        if s != shape {
            return Err(PyValueError::new_err(format!(
                "{name} has shape {} but phi has shape {}",
                fk_shape(&s),
                fk_shape(&shape)
            )));
        }
    }
    Ok(shape)
}

/// Largest stable time step of the explicit Fisher–KPP scheme for a medium, without building a
/// solver: exactly ``FisherKpp(u0, diffusivity, phi, spacing, rho, phi_min).dt_stable`` for any
/// valid ``u0`` (the same checks, the same float).
///
/// ``dt_stable = min over active cells of 1 / (sum_f a_f / (phi h_f^2) + rho)`` with a_f the
/// harmonic mean of D phi over face f, rounded to float32 as the solver stores it; the solver's
/// default step is ``0.9 * dt_stable``.
///
/// Parameters
/// ----------
/// diffusivity : ndarray of float64, shape (nx, ny) or (nx, ny, nz)
///     D in mm^2/day, >= 0.
/// phi : ndarray of float64, same shape
///     Phase field in [0, 1] (1 in tissue).
/// spacing : sequence of 2 or 3 floats
///     Voxel size in mm per axis.
/// rho : float
///     Proliferation rate in 1/day, >= 0.
/// phi_min : float, default 1e-3
///     Cells with ``phi < phi_min`` are inactive; in (0, 1].
/// face_mean : str, default "harmonic"
///     Mean of D phi on a face, as in :class:`FisherKpp`: ``"harmonic"`` or ``"arithmetic"``.
///
/// Returns
/// -------
/// float
///     dt_stable in days; ``inf`` when D = 0 and rho = 0 (nothing evolves).
///
/// Raises
/// ------
/// ValueError
///     Mismatched shapes or spacing, NaN/Inf, values out of range, no active cell, an unknown
///     ``face_mean``.
#[pyfunction]
#[pyo3(
    name = "stable_dt",
    signature = (diffusivity, phi, spacing, rho, phi_min = 1e-3, face_mean = "harmonic")
)]
pub(super) fn py_stable_dt(
    py: Python<'_>,
    diffusivity: PyReadonlyArrayDyn<'_, f64>,
    phi: PyReadonlyArrayDyn<'_, f64>,
    spacing: Vec<f64>,
    rho: f64,
    phi_min: f64,
    face_mean: &str,
) -> PyResult<f64> {
    use crate::fisher_kpp::{stable_time_step_with, FaceMean};
    same_shape_as_phi(&phi, &[("diffusivity", &diffusivity)])?;
    let (phi_v, grid) = field_and_grid("phi", &phi, &spacing)?;
    let (d_v, _) = field_and_grid("diffusivity", &diffusivity, &spacing)?;
    let mean = FaceMean::parse(face_mean).map_err(to_py_err)?;
    py.detach(|| stable_time_step_with(d_v, phi_v, &grid, rho, phi_min, mean))
        .map_err(to_py_err)
}

/// Instruction sets this CPU can run the solver's cell update with, best first.
///
/// Returns
/// -------
/// list of str
///     A sub-list of ``["avx512", "avx2", "scalar"]``; always ends with ``"scalar"`` (the build's
///     baseline target, SSE2 on x86-64). Any of them may be passed as ``FisherKpp(..., isa=...)``;
///     all give bit-identical results.
#[pyfunction]
#[pyo3(name = "available_isas")]
pub(super) fn py_available_isas() -> Vec<&'static str> {
    crate::fisher_kpp::Isa::available()
        .into_iter()
        .map(|i| i.name())
        .collect()
}

/// Explicit finite-volume solver of the diffuse-domain Fisher–Kolmogorov equation
///
///     phi du/dt = div(D phi grad u) + phi rho u (1 - u)
///
/// on a 2D or 3D box (cell-centred finite volumes, harmonic-mean face coefficients by default,
/// explicit Euler or Strang–RKL2 in time; see ``rust/fisher_kpp/mod.rs``). Cells with
/// ``phi < phi_min`` are inactive (u = 0, no flux);
/// the box edge is no-flux. The time step is fixed at construction from the coefficients alone:
/// ``dt = safety * dt_stable`` with ``dt_stable = min 1 / (sum_f a_f / (phi h_f^2) + rho)``, so a
/// snapshot at day 150 is the same whatever the total run length.
///
/// Parameters
/// ----------
/// u0 : ndarray of float64, shape (nx, ny) or (nx, ny, nz)
///     Initial density in [0, 1]; values in inactive cells are dropped (set to 0).
/// diffusivity : ndarray of float64, same shape
///     D in mm^2/day, >= 0.
/// phi : ndarray of float64, same shape
///     Phase field in [0, 1] (1 in tissue).
/// spacing : sequence of 2 or 3 floats
///     Voxel size in mm per axis.
/// rho : float
///     Proliferation rate in 1/day, >= 0.
/// phi_min : float, default 1e-3
///     Activity threshold on phi, in (0, 1].
/// safety : float, default 0.9
///     ``dt = safety * dt_stable`` when ``dt`` is not given; in (0, 1].
/// dt : float, optional
///     Explicit time step in days; refused (ValueError) above ``dt_stable``.
/// isa : str, optional
///     Instruction set of the cell update: ``"auto"`` (default, the best this CPU has),
///     ``"avx512"``, ``"avx2"`` or ``"scalar"`` (see :func:`available_isas`). Results are
///     bit-identical for every choice; only speed changes.
/// face_mean : str, default "harmonic"
///     Mean of a = D phi on a face: ``"harmonic"`` (2 a_i a_j / (a_i + a_j), flux continuity) or
///     ``"arithmetic"`` ((a_i + a_j) / 2, as some peer solvers do); 0 when either cell is
///     inactive, either way.
/// scheme : {"euler", "strang-rkl2"}, default "euler"
///     Time integrator. ``"euler"``: explicit Euler (first order; ``dt <= dt_stable``).
///     ``"strang-rkl2"``: Strang splitting, the logistic reaction solved exactly over half steps
///     around a second-order Runge–Kutta–Legendre super-time-step of the diffusion (second order;
///     any ``dt``, default ``0.5 / rho`` days; see ``rust/fisher_kpp/rkl.rs``).
/// stages : int, optional
///     ``"strang-rkl2"`` only: RKL2 stages (stencil sweeps) per step, >= 2; refused if
///     ``dt > dt_diffusion * (stages^2 + stages - 2) / 4``. Default: the fewest with
///     ``dt <= safety * dt_diffusion * (s^2 + s - 2) / 4``.
///
/// Attributes
/// ----------
/// dt, dt_stable : float
///     Time step and the explicit Euler stability bound (days); ``dt_stable`` is also
///     :func:`stable_dt`.
/// scheme : str
///     ``"euler"`` or ``"strang-rkl2"``.
/// stages : int
///     Stencil sweeps per step (1 for Euler).
/// dt_diffusion : float
///     Forward-Euler bound of the diffusion alone (``dt_stable`` at rho = 0), days.
/// isa : str
///     Instruction set in use.
/// t : float
///     Time of the current state, ``steps * dt`` (days).
/// steps : int
///     Whole steps taken.
/// active_cells : int
///     Cells with ``phi >= phi_min``.
///
/// Raises
/// ------
/// ValueError
///     Mismatched shapes or spacing, NaN/Inf, values out of range, no active cell, ``dt`` above
///     the bound, an unknown ``isa`` or one this CPU lacks, an unknown ``face_mean``.
#[pyclass(name = "FisherKpp", module = "gbm._core")]
pub(super) struct PyFisherKpp {
    inner: crate::fisher_kpp::FisherKpp,
    shape: Vec<usize>,
}

#[pymethods]
impl PyFisherKpp {
    #[new]
    #[pyo3(signature = (
        u0, diffusivity, phi, spacing, rho, phi_min = 1e-3, safety = 0.9, dt = None, isa = None,
        face_mean = "harmonic", scheme = "euler", stages = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        u0: PyReadonlyArrayDyn<'_, f64>,
        diffusivity: PyReadonlyArrayDyn<'_, f64>,
        phi: PyReadonlyArrayDyn<'_, f64>,
        spacing: Vec<f64>,
        rho: f64,
        phi_min: f64,
        safety: f64,
        dt: Option<f64>,
        isa: Option<&str>,
        face_mean: &str,
        scheme: &str,
        stages: Option<i64>,
    ) -> PyResult<Self> {
        use crate::fisher_kpp::{FaceMean, FisherKpp, FkOptions, Isa, Scheme};
        let shape = same_shape_as_phi(&phi, &[("u0", &u0), ("diffusivity", &diffusivity)])?;
        let (phi_v, grid) = field_and_grid("phi", &phi, &spacing)?;
        let (u0_v, _) = field_and_grid("u0", &u0, &spacing)?;
        let (d_v, _) = field_and_grid("diffusivity", &diffusivity, &spacing)?;
        let opts = FkOptions {
            phi_min,
            safety,
            dt,
            isa: Isa::parse(isa.unwrap_or("auto")).map_err(to_py_err)?,
            face_mean: FaceMean::parse(face_mean).map_err(to_py_err)?,
            scheme: Scheme::parse(scheme).map_err(to_py_err)?,
            stages: match stages {
                Some(s) if s < 2 => {
                    return Err(PyValueError::new_err(format!(
                        "stages must be >= 2, got {s}"
                    )))
                }
                Some(s) => Some(s as usize),
                None => None,
            },
        };
        if stages.is_some() && opts.scheme != Scheme::StrangRkl2 {
            return Err(PyValueError::new_err(
                "stages applies to scheme='strang-rkl2' only",
            ));
        }
        let inner = py
            .detach(|| FisherKpp::new(u0_v, d_v, phi_v, &grid, rho, opts))
            .map_err(to_py_err)?;
        Ok(Self { inner, shape })
    }

    /// Time step (days).
    #[getter]
    fn dt(&self) -> f64 {
        self.inner.dt()
    }

    /// Stability (monotonicity) bound on the time step (days).
    #[getter]
    fn dt_stable(&self) -> f64 {
        self.inner.dt_stable()
    }

    /// Time integrator: ``"euler"`` or ``"strang-rkl2"``.
    #[getter]
    fn scheme(&self) -> &'static str {
        self.inner.scheme().name()
    }

    /// Stencil sweeps per step: the RKL2 stages of ``"strang-rkl2"``, 1 for ``"euler"``.
    #[getter]
    fn stages(&self) -> usize {
        self.inner.stages()
    }

    /// Forward-Euler bound of the diffusion alone (days): ``dt_stable`` at rho = 0. A
    /// ``"strang-rkl2"`` step with s stages is stable up to ``dt_diffusion * (s^2 + s - 2) / 4``.
    #[getter]
    fn dt_diffusion(&self) -> f64 {
        self.inner.dt_diffusion()
    }

    /// Instruction set of the cell update (``"avx512"``, ``"avx2"`` or ``"scalar"``).
    #[getter]
    fn isa(&self) -> &'static str {
        self.inner.isa().name()
    }

    /// Time of the current state, ``steps * dt`` (days).
    #[getter]
    fn t(&self) -> f64 {
        self.inner.t()
    }

    /// Whole steps taken so far.
    #[getter]
    fn steps(&self) -> u64 {
        self.inner.steps()
    }

    /// Number of active cells (``phi >= phi_min``).
    #[getter]
    fn active_cells(&self) -> usize {
        self.inner.active_cells()
    }

    /// Take ``n_steps`` whole time steps (GIL released; Ctrl-C is checked every ~0.2 s).
    ///
    /// In 3D the solver fuses a few steps per sweep over memory (temporal blocking), so calling
    /// ``advance`` with many steps at once is faster than many calls with one step; the results
    /// are bit-identical either way.
    ///
    /// Parameters
    /// ----------
    /// n_steps : int
    ///     Number of steps, >= 0.
    fn advance(mut slf: PyRefMut<'_, Self>, py: Python<'_>, n_steps: i64) -> PyResult<()> {
        use std::time::{Duration, Instant};
        if n_steps < 0 {
            return Err(PyValueError::new_err(format!(
                "n_steps must be >= 0, got {n_steps}"
            )));
        }
        let mut left = n_steps as u64;
        let inner = &mut slf.inner;
        while left > 0 {
            left = py.detach(|| {
                let start = Instant::now();
                while left > 0 {
                    // Chunks of 24 steps: a multiple of every fusion depth the solver uses.
                    let k = left.min(24);
                    inner.advance(k);
                    left -= k;
                    if start.elapsed() > Duration::from_millis(200) {
                        break;
                    }
                }
                left
            });
            if left > 0 {
                py.check_signals()?;
            }
        }
        Ok(())
    }

    /// Density at time ``t`` (days), same shape as ``u0``.
    ///
    /// Parameters
    /// ----------
    /// t : float, optional
    ///     In ``[self.t, self.t + self.dt]``; the state there is one partial step (Euler, or a
    ///     Strang step with the same stages) of size ``t - self.t`` from the current state (the
    ///     solver itself is not advanced). Default: the current state.
    ///
    /// Returns
    /// -------
    /// ndarray of float64, shape of ``u0``
    #[pyo3(signature = (t = None))]
    fn state<'py>(
        &self,
        py: Python<'py>,
        t: Option<f64>,
    ) -> PyResult<Bound<'py, numpy::PyArrayDyn<f64>>> {
        use numpy::IntoPyArray;
        let inner = &self.inner;
        let a = match t {
            None => py.detach(|| inner.state()),
            Some(t) => py.detach(|| inner.state_at(t)).map_err(to_py_err)?,
        };
        let a = a.into_shape_with_order(self.shape.clone()).map_err(|e| {
            PyRuntimeError::new_err(format!("FisherKpp.state: reshape failed: {e}"))
        })?;
        Ok(a.into_pyarray(py))
    }

    /// The solution at scattered space-time points: advance to the last observation time and
    /// return u at every ``(points[i], times[i])`` (GIL released; Ctrl-C is checked every ~0.2 s).
    ///
    /// An observation at t in step n (``n dt <= t < (n+1) dt``) gets
    /// ``(1 - w) I[u_n](x) + w I[u_{n+1}](x)`` with ``w = t/dt - n`` and I the bilinear/trilinear
    /// interpolant: for ``"euler"`` exactly the interpolated partial step ``state(t)``; for
    /// ``"strang-rkl2"`` a linear interpolation in time between whole steps (see
    /// ``rust/observe.rs``).
    ///
    /// Parameters
    /// ----------
    /// points : ndarray of float64, shape (N, d)
    ///     Local mm; points outside the box are clamped to its edge.
    /// times : ndarray of float64, shape (N,)
    ///     Days, not before the solver's current time ``t``; any order.
    ///
    /// Returns
    /// -------
    /// ndarray of float64, shape (N,)
    fn observe<'py>(
        mut slf: PyRefMut<'py, Self>,
        py: Python<'py>,
        points: numpy::PyReadonlyArray2<'py, f64>,
        times: numpy::PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Bound<'py, numpy::PyArray1<f64>>> {
        use numpy::IntoPyArray;
        use std::time::{Duration, Instant};
        let p = points.as_array();
        let t = times.as_array();
        let t = t.as_standard_layout();
        let ts = t
            .as_slice()
            .ok_or_else(|| PyValueError::new_err("times could not be made contiguous"))?;
        let inner = &mut slf.inner;
        let mut obs = py
            .detach(|| crate::observe::Observer::new(inner, p, ts))
            .map_err(to_py_err)?;
        while !py.detach(|| obs.run(inner, Some(Instant::now() + Duration::from_millis(200)))) {
            py.check_signals()?;
        }
        Ok(obs.values().to_vec().into_pyarray(py))
    }

    /// Whole steps the solver can still take without passing time ``t`` (days); 0 if none.
    fn steps_until(&self, t: f64) -> PyResult<u64> {
        if !t.is_finite() {
            return Err(PyValueError::new_err(format!("t must be finite, got {t}")));
        }
        Ok(self.inner.steps_until(t))
    }

    fn __repr__(&self) -> String {
        format!(
            "FisherKpp(shape={}, scheme='{}', dt={}, stages={}, t={}, steps={}, active_cells={})",
            fk_shape(&self.shape),
            self.inner.scheme().name(),
            self.inner.dt(),
            self.inner.stages(),
            self.inner.t(),
            self.inner.steps(),
            self.inner.active_cells()
        )
    }
}
