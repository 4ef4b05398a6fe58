//! gbm's Rust core: the classical, heavy parts of the glioblastoma model.
//!
//! Exports only. Each operator lives in its own module (pure ndarray code, no pyo3); the thin
//! Python wrappers are in `py/` (one file per area).

// `!(x >= 0.0)` is used on purpose: unlike `x < 0.0` it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod error;
pub mod fisher_kpp;
pub mod grid;
pub mod interpolate;
pub mod observe;
pub mod phase_field;
pub mod radial;
pub mod sample;

mod py;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}
