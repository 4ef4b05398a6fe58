//! Test problems shared by the unit tests of the solver's files: a ball-shaped phase field with a
//! tanh profile, a white/gray-like mix of D (0.13 and 0.013 mm^2/day) and a Gaussian seed.

use ndarray::Array3;

use super::{FisherKpp, FkOptions};
use crate::grid::Grid;

/// Synthetic brain-like box: a ball phase field (tanh profile) and a white/gray D mix.
pub(super) fn synthetic(shape: [usize; 3], r_ball: f64) -> (Array3<f64>, Array3<f64>, Array3<f64>) {
    let c = [
        (shape[0] as f64 - 1.0) / 2.0,
        (shape[1] as f64 - 1.0) / 2.0,
        (shape[2] as f64 - 1.0) / 2.0,
    ];
    let phi = Array3::from_shape_fn(shape, |(i, j, k)| {
        let r = ((i as f64 - c[0]).powi(2) + (j as f64 - c[1]).powi(2) + (k as f64 - c[2]).powi(2))
            .sqrt();
        0.5 + 0.5 * ((r_ball - r) / 1.5).tanh()
    });
    let d = Array3::from_shape_fn(shape, |(i, j, k)| {
        let pw = 0.5
            + 0.5
                * ((i as f64 * 0.21).sin() * (j as f64 * 0.17).cos() + (k as f64 * 0.13).sin())
                    .tanh();
        pw * 0.13 + (1.0 - pw) * 0.013
    });
    let u0 = Array3::from_shape_fn(shape, |(i, j, k)| {
        let r2 = (i as f64 - c[0]).powi(2) + (j as f64 - c[1]).powi(2) + (k as f64 - c[2]).powi(2);
        0.1 * (-r2 / 10.0).exp()
    });
    (u0, d, phi)
}

/// A solver on `shape` with spacing (1, 0.8, 1.25) mm.
pub(super) fn solver(
    shape: [usize; 3],
    d: &Array3<f64>,
    phi: &Array3<f64>,
    u0: &Array3<f64>,
    rho: f64,
    opts: FkOptions,
) -> FisherKpp {
    let grid = Grid::new(shape, [1.0, 0.8, 1.25]).unwrap();
    FisherKpp::new(u0.view(), d.view(), phi.view(), &grid, rho, opts).unwrap()
}

/// Tumour burden sum(phi u) dV.
pub(super) fn mass(s: &FisherKpp, phi: &Array3<f64>, u: &Array3<f64>) -> f64 {
    phi.iter().zip(u.iter()).map(|(p, v)| p * v).sum::<f64>() * s.grid().cell_volume()
}
