//! One error type for the whole Rust core.
//!
//! Kernels return `Result<T, GbmError>`; the single conversion into Python exceptions lives in
//! `py/mod.rs` (`ValueError` for bad input, `RuntimeError` for numerical failures), so every
//! message a user sees is written here or at the call site that detected the problem.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GbmError {
    /// The caller passed something unusable: the message names the argument and the problem.
    #[error("{0}")]
    InvalidInput(String),
    /// A numerical procedure failed (diverged, produced NaN, did not converge when required).
    #[error("{0}")]
    Numerical(String),
    /// The run was interrupted (Ctrl-C) between chunks of work.
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, GbmError>;

/// Shorthand for an `InvalidInput` error.
pub fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(GbmError::InvalidInput(msg.into()))
}
