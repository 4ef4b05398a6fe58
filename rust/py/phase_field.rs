//! Python wrapper of the Cahn–Hilliard phase field (`crate::phase_field`): smooths a binary mask
//! into phi with d phi/dt = div(M(phi) grad mu), mu = g'(phi) - epsilon^2 lap phi, no flux at the
//! box edge; runs without the GIL in chunks of ~0.2 s and checks for Ctrl-C between them.

use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use super::{field_and_grid, to_py_err};

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
pub(super) fn py_phase_field<'py>(
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
