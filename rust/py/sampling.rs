//! Python wrappers of the bilinear/trilinear interpolation (`crate::interpolate`) and of the
//! collocation-point samplers (`crate::sample`). Points are (N, d) float64 in local mm (voxel
//! (i, j, k) centre at (i*dx, j*dy, k*dz)); sampled times are in days.

use numpy::ndarray::ArrayView3;
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use super::{as3, check_finite, grid_for, to_py_err};
use crate::grid::Grid;

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
pub(super) fn py_interpolate<'py>(
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
pub(super) fn py_sample_radial<'py>(
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
pub(super) fn py_sample_uniform<'py>(
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
