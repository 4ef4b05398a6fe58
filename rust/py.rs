//! Thin PyO3 wrappers: validate arguments, borrow NumPy arrays, release the GIL
//! (`py.detach`) around the kernel, hand back owned NumPy arrays.
//!
//! Conventions shared by every wrapper:
//! * fields arrive as C-contiguous float64 arrays of shape `(nx, ny)` (2D) or `(nx, ny, nz)` (3D);
//!   a 2D field is viewed as `(nx, ny, 1)` for the kernels;
//! * `spacing` is a sequence of 2 or 3 voxel sizes in mm matching the field's dimension;
//! * points are `(N, d)` float64 arrays in local mm (voxel `(i, j, k)` centre at `(i*dx, j*dy, k*dz)`);
//! * every `GbmError` becomes a Python exception in `to_py_err` and nowhere else.

use numpy::ndarray::{ArrayView3, ArrayViewD, Ix3};
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::error::GbmError;
use crate::grid::Grid;

/// The one place where Rust errors become Python exceptions.
pub(crate) fn to_py_err(e: GbmError) -> PyErr {
    match e {
        GbmError::InvalidInput(m) => PyValueError::new_err(m),
        GbmError::Numerical(m) => PyRuntimeError::new_err(m),
        GbmError::Interrupted => PyKeyboardInterrupt::new_err("interrupted"),
    }
}

/// Build a `Grid` from a field's shape and a spacing sequence, checking that they agree.
pub(crate) fn grid_for(name: &str, shape: &[usize], spacing: &[f64]) -> PyResult<Grid> {
    let dims = match shape.len() {
        2 => [shape[0], shape[1], 1],
        3 => [shape[0], shape[1], shape[2]],
        n => {
            return Err(PyValueError::new_err(format!(
                "{name} must be a 2D or 3D array, got {n} dimensions"
            )))
        }
    };
    if spacing.len() != shape.len() {
        return Err(PyValueError::new_err(format!(
            "spacing has {} entries but {name} is {}D",
            spacing.len(),
            shape.len()
        )));
    }
    let sp = [
        spacing[0],
        spacing[1],
        if spacing.len() == 3 { spacing[2] } else { 1.0 },
    ];
    Grid::new(dims, sp).map_err(to_py_err)
}

/// View a 2D/3D array as 3D `(nx, ny, nz)` with `nz = 1` for 2D.
pub(crate) fn as3<'a>(name: &str, a: ArrayViewD<'a, f64>) -> PyResult<ArrayView3<'a, f64>> {
    let a = if a.ndim() == 2 {
        a.insert_axis(numpy::ndarray::Axis(2))
    } else {
        a
    };
    a.into_dimensionality::<Ix3>()
        .map_err(|_| PyValueError::new_err(format!("{name} must be a 2D or 3D array")))
}

/// Reject NaN/Inf in an input array, naming it.
pub(crate) fn check_finite(name: &str, a: &ArrayViewD<'_, f64>) -> PyResult<()> {
    if a.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "{name} contains NaN or Inf values"
        )))
    }
}

/// Borrow a float64 field, check it is finite, and return it with its grid.
pub(crate) fn field_and_grid<'a>(
    name: &str,
    a: &'a PyReadonlyArrayDyn<'_, f64>,
    spacing: &[f64],
) -> PyResult<(ArrayView3<'a, f64>, Grid)> {
    let v = a.as_array();
    check_finite(name, &v)?;
    let grid = grid_for(name, v.shape(), spacing)?;
    Ok((as3(name, v)?, grid))
}

/// Number of threads in the rayon pool that the kernels use.
#[pyfunction]
fn num_threads() -> usize {
    rayon::current_num_threads()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    // --- phase_field wrappers register here ---
    m.add_function(wrap_pyfunction!(py_phase_field, m)?)?;
    // --- interpolate / sample wrappers register here ---
    m.add_function(wrap_pyfunction!(py_interpolate, m)?)?;
    m.add_function(wrap_pyfunction!(py_sample_radial, m)?)?;
    m.add_function(wrap_pyfunction!(py_sample_uniform, m)?)?;
    // --- fisher_kpp / radial wrappers register here ---
    m.add_class::<PyFisherKpp>()?;
    m.add_function(wrap_pyfunction!(py_radial_solve, m)?)?;
    Ok(())
}

// ======================= phase_field wrappers =======================

/// `(phi, info)` of `phase_field`.
type PhaseFieldOut<'py> = (
    Bound<'py, numpy::PyArrayDyn<f64>>,
    Bound<'py, pyo3::types::PyDict>,
);

/// Smooth a binary mask into a diffuse-interface phase field with the Cahn–Hilliard equation
/// (degenerate mobility, paper Eq. 4–5).
///
/// Solves d phi/dt = div(M(phi) grad mu), mu = g'(phi) - epsilon^2 lap phi,
/// g = phi^2 (1-phi)^2 / 4, M = phi (1-phi), from phi(0) = mask with no flux through the box edge
/// (no periodic wrap), by a stabilised semi-implicit DCT scheme (``rust/phase_field.rs``). Time is
/// in mm^2 (the equation has no mobility constant). The integral of phi is conserved to round-off.
///
/// Parameters
/// ----------
/// mask : ndarray of float64, shape (nx, ny) or (nx, ny, nz)
///     Initial phase field with values in [0, 1]: a binary brain mask (1 inside) on its cropped
///     box; a smooth start is accepted. Needs voxels >= 0.5 and voxels < 0.5. Keep a margin of
///     background (a few voxels, >= ~3 epsilon) around the tissue.
/// spacing : sequence of 2 or 3 floats
///     Voxel size in mm, one per axis of ``mask``.
/// epsilon : float, default 0.5
///     Interface parameter in mm. Equilibrium profile 0.5 + 0.5 tanh(x / (2 sqrt(2) epsilon))
///     (x = signed distance in mm), 10–90 % width 6.2 epsilon. Gaps in the mask narrower than
///     about that width close; 0.5 mm is the smallest value resolved on a 1 mm grid.
/// tol : float, default 5e-3
///     Stop (``converged = True``) when ``change = epsilon^2 max |d phi/dt|`` (dimensionless:
///     the rate in units of the interface time epsilon^2) of the current state is < ``tol``.
///     The default stops once the interface has formed; smaller values let Cahn–Hilliard keep
///     smoothing the shape (it has no nearby steady state for a brain-shaped mask).
/// max_steps : int, default 500
///     Otherwise stop after this many steps (``converged = False``).
/// dt : float, optional
///     Largest time step in mm^2 (default 4 epsilon^2); the step adapts below it so that phi
///     changes by at most 0.2 per step.
///
/// Returns
/// -------
/// phi : ndarray of float64, same shape as ``mask``
///     Phase field, ~1 inside, ~0 outside, clipped to [0, 1]: the scheme overshoots by ~1e-2,
///     and the clipped mass is reported as ``info["mass_rel_clipped"]``.
/// info : dict
///     ``steps`` (accepted), ``rejected`` (retried with a smaller dt), ``converged`` (bool),
///     ``stopped`` ("tol" or "max_steps"), ``change`` (stopping metric of the returned state),
///     ``time`` (mm^2), ``dt`` (largest step, mm^2), ``epsilon`` (mm), ``mass_initial`` and
///     ``mass_final`` (integral of phi, mm^3 or mm^2), ``mass_rel_change`` (returned, clipped
///     phi vs mask), ``mass_rel_change_unclipped`` (round-off only), ``mass_rel_clipped``,
///     ``phi_min``/``phi_max`` (before clipping), ``volume_mask`` (of {mask >= 0.5}),
///     ``volume_phi`` (of {phi > 0.5}), ``volume_rel_diff``, ``seconds`` (wall time).
///
/// Raises
/// ------
/// ValueError
///     NaN/Inf or values outside [0, 1] in ``mask``, a mask without inside or without outside
///     voxels, wrong ``spacing`` length or non-positive spacing, ``epsilon <= 0``, ``dt <= 0``,
///     ``tol < 0``.
/// RuntimeError
///     The iteration produced non-finite values.
/// KeyboardInterrupt
///     Ctrl-C, checked about every 0.2 s (the solve runs without the GIL in between).
#[pyfunction]
#[pyo3(
    name = "phase_field",
    signature = (
        mask,
        spacing,
        epsilon = crate::phase_field::DEFAULT_EPSILON_MM,
        tol = crate::phase_field::DEFAULT_TOL,
        max_steps = crate::phase_field::DEFAULT_MAX_STEPS,
        dt = None
    )
)]
fn py_phase_field<'py>(
    py: Python<'py>,
    mask: PyReadonlyArrayDyn<'py, f64>,
    spacing: Vec<f64>,
    epsilon: f64,
    tol: f64,
    max_steps: usize,
    dt: Option<f64>,
) -> PyResult<PhaseFieldOut<'py>> {
    use crate::phase_field::{CahnHilliard, PhaseFieldOptions};
    use numpy::IntoPyArray;
    use pyo3::types::PyDict;
    use std::time::{Duration, Instant};

    let shape: Vec<usize> = mask.as_array().shape().to_vec();
    let ndim = shape.len();
    let (view, grid) = field_and_grid("mask", &mask, &spacing)?;
    let opts = PhaseFieldOptions {
        epsilon,
        dt,
        tol,
        max_steps,
        ..PhaseFieldOptions::default()
    };
    let start = Instant::now();
    let mut solver = py
        .detach(|| CahnHilliard::new(view, &grid, &opts))
        .map_err(to_py_err)?;
    // Run in chunks of ~0.2 s without the GIL; look for Ctrl-C between chunks.
    loop {
        let done = py
            .detach(|| -> crate::error::Result<bool> {
                let t = Instant::now();
                loop {
                    if solver.advance(1)? {
                        return Ok(true);
                    }
                    if t.elapsed() > Duration::from_millis(200) {
                        return Ok(false);
                    }
                }
            })
            .map_err(to_py_err)?;
        if done {
            break;
        }
        py.check_signals()?;
    }
    let (phi, info) = py.detach(|| solver.finish());
    let seconds = start.elapsed().as_secs_f64();
    let phi = phi
        .into_shape_with_order(if ndim == 2 {
            vec![shape[0], shape[1]]
        } else {
            shape
        })
        .map_err(|e| PyRuntimeError::new_err(format!("phase_field: reshape failed: {e}")))?;
    let d = PyDict::new(py);
    let rel = |a: f64| a / info.mass_initial;
    d.set_item("steps", info.steps)?;
    d.set_item("converged", info.converged)?;
    d.set_item("stopped", if info.converged { "tol" } else { "max_steps" })?;
    d.set_item("change", info.change)?;
    d.set_item("time", info.time)?;
    d.set_item("dt", info.dt)?;
    d.set_item("rejected", info.rejected)?;
    d.set_item("epsilon", info.epsilon)?;
    d.set_item("mass_initial", info.mass_initial)?;
    d.set_item("mass_final", info.mass_final)?;
    d.set_item("mass_rel_change", rel(info.mass_final - info.mass_initial))?;
    d.set_item(
        "mass_rel_change_unclipped",
        rel(info.mass_unclipped - info.mass_initial),
    )?;
    d.set_item(
        "mass_rel_clipped",
        rel(info.mass_unclipped - info.mass_final),
    )?;
    d.set_item("phi_min", info.phi_min)?;
    d.set_item("phi_max", info.phi_max)?;
    d.set_item("volume_mask", info.volume_mask)?;
    d.set_item("volume_phi", info.volume_phi)?;
    d.set_item(
        "volume_rel_diff",
        (info.volume_phi - info.volume_mask) / info.volume_mask,
    )?;
    d.set_item("seconds", seconds)?;
    Ok((phi.into_pyarray(py), d))
}

// ======================= interpolate / sample wrappers =======================

/// `(values, grads)` of `interpolate`.
type InterpOut<'py> = (
    Bound<'py, numpy::PyArrayDyn<f64>>,
    Bound<'py, numpy::PyArrayDyn<f64>>,
);
/// `(points, t)` of the samplers.
type SampleOut<'py> = (
    Bound<'py, numpy::PyArray2<f64>>,
    Bound<'py, numpy::PyArray1<f64>>,
);

/// Interpolate grid fields at points: values and gradients of the bilinear (2D) / trilinear (3D)
/// interpolant.
///
/// Parameters
/// ----------
/// fields : ndarray of float64, shape (C, nx, ny) or (C, nx, ny, nz); or one field (nx, ny[, nz])
///     Field values at voxel centres; voxel (i, j, k) sits at (i*dx, j*dy, k*dz) mm. The dimension
///     d is taken from ``len(spacing)``; ``fields.ndim == d`` means a single field.
/// spacing : sequence of d floats
///     Voxel size (dx, dy[, dz]) in mm.
/// points : ndarray of float64, shape (N, d)
///     Query points in local mm.
///
/// Returns
/// -------
/// values : ndarray of float64, shape (N, C) (or (N,) for a single field)
/// grads : ndarray of float64, shape (N, C, d) (or (N, d) for a single field)
///     Exact gradient of the interpolant (field unit / mm) in the cell holding the point; on a cell
///     face the upper cell is used.
///
/// Notes
/// -----
/// Points outside the box [0, (n-1)h] along an axis are clamped to the box edge along that axis:
/// they get the edge value and a zero derivative along that axis. Affine (and bi/trilinear) fields
/// are reproduced exactly. Runs in parallel without the GIL; the result does not depend on the
/// number of threads. ``fields`` is not scanned as a whole on every call (that would cost more
/// than the interpolation on a 3D atlas): a NaN/Inf in a cell that a point uses raises ValueError.
#[pyfunction]
#[pyo3(name = "interpolate", signature = (fields, spacing, points))]
fn py_interpolate<'py>(
    py: Python<'py>,
    fields: PyReadonlyArrayDyn<'py, f64>,
    spacing: Vec<f64>,
    points: PyReadonlyArrayDyn<'py, f64>,
) -> PyResult<InterpOut<'py>> {
    use numpy::ndarray::{Axis, Ix2, Ix4};
    use numpy::IntoPyArray;
    let d = spacing.len();
    if d != 2 && d != 3 {
        return Err(PyValueError::new_err(format!(
            "spacing must have 2 or 3 entries (mm), got {d}"
        )));
    }
    let f = fields.as_array();
    let single = f.ndim() == d;
    if !single && f.ndim() != d + 1 {
        return Err(PyValueError::new_err(format!(
            "fields must have shape (C, nx, ny{z}) or (nx, ny{z}) for {d} spacing entries, got shape {:?}",
            f.shape(),
            z = if d == 3 { ", nz" } else { "" }
        )));
    }
    let f = if single { f.insert_axis(Axis(0)) } else { f };
    let grid = grid_for("fields", &f.shape()[1..], &spacing)?;
    let f = if d == 2 { f.insert_axis(Axis(3)) } else { f };
    let f = f
        .into_dimensionality::<Ix4>()
        .map_err(|_| PyValueError::new_err("fields has an unexpected shape"))?;
    let p = points.as_array();
    if p.ndim() != 2 || p.shape()[1] != d {
        return Err(PyValueError::new_err(format!(
            "points must have shape (N, {d}), got {:?}",
            p.shape()
        )));
    }
    let p = p
        .into_dimensionality::<Ix2>()
        .map_err(|_| PyValueError::new_err("points must be a 2D array"))?;
    check_finite("points", &p.view().into_dyn())?;
    let (values, grads) = py
        .detach(|| crate::interpolate::interpolate(f, &grid, p))
        .map_err(to_py_err)?;
    if single {
        let n = values.nrows();
        let values = values
            .into_shape_with_order(n)
            .map_err(|e| PyRuntimeError::new_err(format!("internal shape error: {e}")))?;
        let grads = grads
            .into_shape_with_order((n, d))
            .map_err(|e| PyRuntimeError::new_err(format!("internal shape error: {e}")))?;
        return Ok((
            values.into_dyn().into_pyarray(py),
            grads.into_dyn().into_pyarray(py),
        ));
    }
    Ok((
        values.into_dyn().into_pyarray(py),
        grads.into_dyn().into_pyarray(py),
    ))
}

/// Check the integer arguments shared by the samplers.
fn sampler_ints(n: i64, seed: i128) -> PyResult<(usize, u64)> {
    if n <= 0 {
        return Err(PyValueError::new_err(format!("n must be > 0, got {n}")));
    }
    let seed = u64::try_from(seed).map_err(|_| {
        PyValueError::new_err(format!("seed must be an integer in [0, 2**64), got {seed}"))
    })?;
    let n =
        usize::try_from(n).map_err(|_| PyValueError::new_err(format!("n = {n} is too large")))?;
    Ok((n, seed))
}

/// Borrow phi as a 3D view with its grid (finiteness is checked by the sampler in one pass).
fn phi_view<'a>(
    phi: &'a PyReadonlyArrayDyn<'_, f64>,
    spacing: &[f64],
) -> PyResult<(ArrayView3<'a, f64>, Grid)> {
    let v = phi.as_array();
    let grid = grid_for("phi", v.shape(), spacing)?;
    Ok((as3("phi", v)?, grid))
}

/// Radially-symmetric collocation points around a centre (the paper's sampling around x_ic).
///
/// Parameters
/// ----------
/// phi : ndarray of float64, shape (nx, ny) or (nx, ny, nz)
///     Phase field (1 in the brain, 0 outside), voxel (i, j, k) at (i*dx, j*dy, k*dz) mm.
/// spacing : sequence of d floats
///     Voxel size in mm.
/// center : sequence of d floats
///     Centre x_ic in local mm; must be inside the box and have phi(center) >= phi_min.
/// radius : float
///     R in mm: the distance |x - center| is uniform on [0, R), the direction uniform on the
///     circle/sphere (density proportional to 1/|x - center|^(d-1)).
/// n : int
///     Number of points (> 0).
/// t_max : float
///     Times are uniform on [0, t_max) days.
/// seed : int
///     Seed in [0, 2**64); the output is bit-identical for the same seed and inputs whatever the
///     number of threads.
/// phi_min : float, default 0.5
///     Points are kept only inside the box [0, (n-1)h] and where the interpolated phi >= phi_min.
///
/// Returns
/// -------
/// points : ndarray of float64, shape (n, d)
///     Local mm.
/// t : ndarray of float64, shape (n,)
///     Days.
///
/// Raises
/// ------
/// ValueError
///     On bad arguments, a centre outside the box or the domain, or an acceptance rate below 1e-4.
#[pyfunction]
#[pyo3(
    name = "sample_radial",
    signature = (phi, spacing, center, radius, n, t_max, seed, phi_min = 0.5)
)]
#[allow(clippy::too_many_arguments)]
fn py_sample_radial<'py>(
    py: Python<'py>,
    phi: PyReadonlyArrayDyn<'py, f64>,
    spacing: Vec<f64>,
    center: Vec<f64>,
    radius: f64,
    n: i64,
    t_max: f64,
    seed: i128,
    phi_min: f64,
) -> PyResult<SampleOut<'py>> {
    use numpy::IntoPyArray;
    let (n, seed) = sampler_ints(n, seed)?;
    let (v, grid) = phi_view(&phi, &spacing)?;
    let (p, t) = py
        .detach(|| crate::sample::sample_radial(v, &grid, &center, radius, n, t_max, seed, phi_min))
        .map_err(to_py_err)?;
    Ok((p.into_pyarray(py), t.into_pyarray(py)))
}

/// Collocation points uniform in the box, kept where phi >= phi_min.
///
/// Parameters
/// ----------
/// phi : ndarray of float64, shape (nx, ny) or (nx, ny, nz)
///     Phase field, voxel (i, j, k) at (i*dx, j*dy, k*dz) mm.
/// spacing : sequence of d floats
///     Voxel size in mm.
/// n : int
///     Number of points (> 0).
/// t_max : float
///     Times are uniform on [0, t_max) days.
/// seed : int
///     Seed in [0, 2**64); bit-identical output for the same seed whatever the number of threads.
/// phi_min : float, default 0.5
///     Points x uniform in the box [0, (n-1)h] are kept where the interpolated phi >= phi_min.
///
/// Returns
/// -------
/// points : ndarray of float64, shape (n, d)
///     Local mm.
/// t : ndarray of float64, shape (n,)
///     Days.
///
/// Raises
/// ------
/// ValueError
///     On bad arguments, when no voxel reaches phi_min, or an acceptance rate below 1e-4.
#[pyfunction]
#[pyo3(name = "sample_uniform", signature = (phi, spacing, n, t_max, seed, phi_min = 0.5))]
fn py_sample_uniform<'py>(
    py: Python<'py>,
    phi: PyReadonlyArrayDyn<'py, f64>,
    spacing: Vec<f64>,
    n: i64,
    t_max: f64,
    seed: i128,
    phi_min: f64,
) -> PyResult<SampleOut<'py>> {
    use numpy::IntoPyArray;
    let (n, seed) = sampler_ints(n, seed)?;
    let (v, grid) = phi_view(&phi, &spacing)?;
    let (p, t) = py
        .detach(|| crate::sample::sample_uniform(v, &grid, n, t_max, seed, phi_min))
        .map_err(to_py_err)?;
    Ok((p.into_pyarray(py), t.into_pyarray(py)))
}

// ======================= fisher_kpp / radial wrappers =======================

/// Python-style shape tuple for messages, e.g. `(3, 4)`.
fn fk_shape(s: &[usize]) -> String {
    crate::fisher_kpp::shape_str(s)
}

/// Explicit finite-volume solver of the diffuse-domain Fisher–Kolmogorov equation
///
///     phi du/dt = div(D phi grad u) + phi rho u (1 - u)
///
/// on a 2D or 3D box (cell-centred finite volumes, harmonic-mean face coefficients, explicit
/// Euler; see ``rust/fisher_kpp.rs``). Cells with ``phi < phi_min`` are inactive (u = 0, no flux);
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
///
/// Attributes
/// ----------
/// dt, dt_stable : float
///     Time step and its stability bound (days).
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
///     the bound.
#[pyclass(name = "FisherKpp", module = "gbm._core")]
struct PyFisherKpp {
    inner: crate::fisher_kpp::FisherKpp,
    shape: Vec<usize>,
}

#[pymethods]
impl PyFisherKpp {
    #[new]
    #[pyo3(signature = (u0, diffusivity, phi, spacing, rho, phi_min = 1e-3, safety = 0.9, dt = None))]
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
    ) -> PyResult<Self> {
        use crate::fisher_kpp::{FisherKpp, FkOptions};
        let shape = phi.as_array().shape().to_vec();
        for (name, a) in [("u0", &u0), ("diffusivity", &diffusivity)] {
            let s = a.as_array().shape().to_vec();
            if s != shape {
                return Err(PyValueError::new_err(format!(
                    "{name} has shape {} but phi has shape {}",
                    fk_shape(&s),
                    fk_shape(&shape)
                )));
            }
        }
        let (phi_v, grid) = field_and_grid("phi", &phi, &spacing)?;
        let (u0_v, _) = field_and_grid("u0", &u0, &spacing)?;
        let (d_v, _) = field_and_grid("diffusivity", &diffusivity, &spacing)?;
        let opts = FkOptions {
            phi_min,
            safety,
            dt,
        };
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
    ///     In ``[self.t, self.t + self.dt]``; the state there is one partial Euler step of size
    ///     ``t - self.t`` from the current state (the solver itself is not advanced). Default: the
    ///     current state.
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
    /// interpolant: exactly the interpolated partial step ``state(t)`` (see ``rust/observe.rs``).
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
            "FisherKpp(shape={}, dt={}, t={}, steps={}, active_cells={})",
            fk_shape(&self.shape),
            self.inner.dt(),
            self.inner.t(),
            self.inner.steps(),
            self.inner.active_cells()
        )
    }
}

/// `(u, info)` of `radial_solve`.
type RadialOut<'py> = (
    Bound<'py, numpy::PyArray2<f64>>,
    Bound<'py, pyo3::types::PyDict>,
);

/// Radially symmetric Fisher–Kolmogorov solver (slab, disk or ball) of the diffuse-domain equation
///
///     phi du/dt = r^-m d/dr (r^m D phi du/dr) + phi rho u (1 - u),   m = dim - 1,
///
/// cell-centred finite volumes on r_i = (i + 1/2) dr with exact shell volumes, harmonic-mean face
/// coefficients, explicit Euler, zero flux at r = 0 and r = nr dr (see ``rust/radial.rs``). The
/// time-step rule and the partial step for snapshots are those of :class:`FisherKpp`.
///
/// Parameters
/// ----------
/// phi : ndarray of float64, shape (nr,)
///     Phase field at r_i, in [0, 1].
/// diffusivity : float or ndarray of float64, shape (nr,)
///     D in mm^2/day, >= 0.
/// u0 : ndarray of float64, shape (nr,)
///     Initial density at r_i, in [0, 1].
/// dr : float
///     Cell width in mm.
/// dim : int
///     1 (slab), 2 (disk) or 3 (ball).
/// rho : float
///     Proliferation rate in 1/day, >= 0.
/// times : sequence of float
///     Output times in days, >= 0, non-decreasing.
/// phi_min : float, default 1e-3
///     Cells with ``phi < phi_min`` are inactive.
/// safety : float, default 0.9
///     ``dt = safety * dt_stable`` unless ``dt`` is given.
/// dt : float, optional
///     Explicit time step in days; refused above ``dt_stable``.
///
/// Returns
/// -------
/// u : ndarray of float64, shape (len(times), nr)
/// info : dict
///     ``dt`` and ``dt_stable`` (days), ``steps`` (whole steps taken).
#[pyfunction]
#[pyo3(
    name = "radial_solve",
    signature = (phi, diffusivity, u0, dr, dim, rho, times, phi_min = 1e-3, safety = 0.9, dt = None)
)]
#[allow(clippy::too_many_arguments)]
fn py_radial_solve<'py>(
    py: Python<'py>,
    phi: numpy::PyReadonlyArray1<'py, f64>,
    diffusivity: &Bound<'py, PyAny>,
    u0: numpy::PyReadonlyArray1<'py, f64>,
    dr: f64,
    dim: usize,
    rho: f64,
    times: Vec<f64>,
    phi_min: f64,
    safety: f64,
    dt: Option<f64>,
) -> PyResult<RadialOut<'py>> {
    use crate::radial::{radial_solve, RadialOptions};
    use numpy::ndarray::Array1;
    use numpy::IntoPyArray;
    use pyo3::types::PyDict;
    let d: Array1<f64> = if let Ok(v) = diffusivity.extract::<f64>() {
        Array1::from_elem(1, v)
    } else if let Ok(a) = diffusivity.extract::<numpy::PyReadonlyArray1<'py, f64>>() {
        a.as_array().to_owned()
    } else {
        return Err(PyValueError::new_err(
            "diffusivity must be a float or a 1D float64 array of shape (nr,)",
        ));
    };
    let (phi_v, u0_v) = (phi.as_array(), u0.as_array());
    let opts = RadialOptions {
        phi_min,
        safety,
        dt,
    };
    let (u, info) = py
        .detach(|| radial_solve(phi_v, d.view(), u0_v, dr, dim, rho, &times, opts))
        .map_err(to_py_err)?;
    let out = PyDict::new(py);
    out.set_item("dt", info.dt)?;
    out.set_item("dt_stable", info.dt_stable)?;
    out.set_item("steps", info.steps)?;
    Ok((u.into_pyarray(py), out))
}
