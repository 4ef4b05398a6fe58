//! Python wrapper of the radially symmetric Fisher–Kolmogorov solver (`crate::radial`): slab, disk
//! or ball, phi du/dt = r^-m d/dr (r^m D phi du/dr) + phi rho u (1 - u), m = dim - 1.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::to_py_err;

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
pub(super) fn py_radial_solve<'py>(
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
