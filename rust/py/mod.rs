//! Thin PyO3 wrappers: validate arguments, borrow NumPy arrays, release the GIL
//! (`py.detach`) around the kernel, hand back owned NumPy arrays.
//!
//! Conventions shared by every wrapper:
//! * fields arrive as C-contiguous float64 arrays of shape `(nx, ny)` (2D) or `(nx, ny, nz)` (3D);
//!   a 2D field is viewed as `(nx, ny, 1)` for the kernels;
//! * `spacing` is a sequence of 2 or 3 voxel sizes in mm matching the field's dimension;
//! * points are `(N, d)` float64 arrays in local mm (voxel `(i, j, k)` centre at `(i*dx, j*dy, k*dz)`);
//! * every `GbmError` becomes a Python exception in `to_py_err` and nowhere else.
//!
//! Files by area: `phase_field.rs`, `sampling.rs` (interpolation and collocation samplers),
//! `fisher_kpp.rs` (the `FisherKpp` class, `stable_dt`, `available_isas`), `radial.rs`; this file
//! holds the conversions they share and `register`.

use numpy::ndarray::{ArrayView3, ArrayViewD, Ix3};
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::error::GbmError;
use crate::grid::Grid;

mod fisher_kpp;
mod phase_field;
mod radial;
mod sampling;

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
    m.add_function(wrap_pyfunction!(phase_field::py_phase_field, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::py_interpolate, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::py_sample_radial, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::py_sample_uniform, m)?)?;
    m.add_class::<fisher_kpp::PyFisherKpp>()?;
    m.add_function(wrap_pyfunction!(fisher_kpp::py_stable_dt, m)?)?;
    m.add_function(wrap_pyfunction!(fisher_kpp::py_available_isas, m)?)?;
    m.add_function(wrap_pyfunction!(radial::py_radial_solve, m)?)?;
    Ok(())
}
