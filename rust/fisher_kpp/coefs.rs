//! Coefficients of the FV Fisher–KPP scheme and its stable time step (see `mod.rs` for the scheme).
//!
//! With a_i = D_i phi_i in active cells (phi_i >= phi_min, phi clamped into [0, 1]) and 0 elsewhere,
//! each cell stores the face coefficients towards +x, +y, +z as f32
//!
//! ```text
//!     A_f = a_f / h_f^2 = 2 a_i a_j / (a_i + a_j) / h_f^2      (0 on the box edge)
//! ```
//!
//! (or (a_i + a_j) / 2 / h_f^2 with `FaceMean::Arithmetic`; either is 0 when a cell is inactive)
//! plus 1/phi_i (f64; 0 in inactive cells) and the active range `[k0, k1)` of every line. The
//! stable (monotone) step is computed from the stored (rounded) A_f:
//!
//! ```text
//!     dt_stable = 1 / max over active cells of (sum_f A_f / phi_i + rho)     (+inf if that is 0)
//! ```
//!
//! Units: A_f in 1/day, dt_stable in days. Also here: the checks of the inputs these depend on.

use ndarray::ArrayView3;
use rayon::prelude::*;

use super::fv::{shape_str, FaceMean};
use super::PHI_TOL;
use crate::error::{invalid, GbmError, Result};
use crate::grid::Grid;

/// Per-cell coefficients, in the internal `(n0, n1, n2)` layout (see the module header).
#[derive(Debug, Clone)]
pub(super) struct Coefs {
    /// Internal shape (n0 planes, n1 lines per plane, n2 cells per line).
    pub n: [usize; 3],
    /// a_f / h^2 (1/day) of the face towards +axis; 0 on the box edge and at inactive cells.
    /// `ax` is empty when n0 == 1 (2D).
    pub ax: Vec<f32>,
    pub ay: Vec<f32>,
    pub az: Vec<f32>,
    /// 1/phi in active cells, 0 in inactive ones.
    pub inv_phi: Vec<f64>,
    /// Active range `[k0, k1)` of each line `(i, j)`; `k0 == k1` if the line has no active cell.
    pub lines: Vec<(u32, u32)>,
}

/// What the medium (D, phi, rho) fixes: the coefficients, the active cell count and dt_stable.
pub(super) struct Medium {
    pub coefs: Coefs,
    pub active: usize,
    pub dt_stable: f64,
    /// The same bound for the diffusion alone (rho = 0): 1 / max over active cells of
    /// sum_f A_f / phi_i (+inf without diffusion). The RKL2 stages of `rkl.rs` are sized by it.
    pub dt_diffusion: f64,
}

impl Medium {
    /// Check `diffusivity`, `phi`, `rho` and `phi_min` and build the coefficients with the
    /// face mean `mean`.
    pub fn new(
        diffusivity: ArrayView3<f64>,
        phi: ArrayView3<f64>,
        grid: &Grid,
        rho: f64,
        phi_min: f64,
        mean: FaceMean,
    ) -> Result<Self> {
        let gshape = grid.shape;
        check_shape("diffusivity", diffusivity.shape(), &gshape)?;
        check_shape("phi", phi.shape(), &gshape)?;
        check_rate_and_threshold(rho, phi_min)?;
        let d = diffusivity.as_standard_layout();
        let ph = phi.as_standard_layout();
        let (ds, phs) = match (d.as_slice(), ph.as_slice()) {
            (Some(b), Some(c)) => (b, c),
            _ => {
                return Err(GbmError::Numerical(
                    "internal: non-contiguous standard layout".into(),
                ))
            }
        };
        check_values("diffusivity", ds, 0.0, f64::INFINITY, 0.0)?;
        check_values("phi", phs, 0.0, 1.0, PHI_TOL)?;

        let (n, h) = if grid.ndim() == 2 {
            (
                [1, gshape[0], gshape[1]],
                [1.0, grid.spacing[0], grid.spacing[1]],
            )
        } else {
            (gshape, grid.spacing)
        };
        let coefs = build_coefs(n, h, ds, phs, phi_min, mean);
        let active = coefs.inv_phi.iter().filter(|&&w| w > 0.0).count();
        if active == 0 {
            return invalid(format!(
                "phi has no cell above phi_min={phi_min}: empty domain"
            ));
        }
        let rate = diffusion_rate(&coefs);
        let dt_stable = inverse_or_inf(rate + rho);
        if !(dt_stable > 0.0) {
            return invalid(format!(
                "diffusivity is too large: a face coefficient D phi / h^2 overflows (max D = {:.3e})",
                ds.iter().copied().fold(0.0, f64::max)
            ));
        }
        Ok(Self {
            coefs,
            active,
            dt_stable,
            dt_diffusion: inverse_or_inf(rate),
        })
    }
}

/// An input array must have the grid's shape.
pub(super) fn check_shape(name: &str, shape: &[usize], grid_shape: &[usize; 3]) -> Result<()> {
    if shape != grid_shape {
        return invalid(format!(
            "{name} has shape {} but the grid has shape {}",
            shape_str(shape),
            shape_str(grid_shape)
        ));
    }
    Ok(())
}

/// `rho` >= 0 (finite) and `phi_min` in (0, 1].
pub(super) fn check_rate_and_threshold(rho: f64, phi_min: f64) -> Result<()> {
    if !(rho.is_finite() && rho >= 0.0) {
        return invalid(format!("rho must be >= 0, got {rho}"));
    }
    if !(phi_min > 0.0 && phi_min <= 1.0) {
        return invalid(format!("phi_min must be in (0, 1], got {phi_min}"));
    }
    Ok(())
}

/// Check finiteness and range `[lo - tol, hi + tol]`, naming the array.
pub(super) fn check_values(name: &str, v: &[f64], lo: f64, hi: f64, tol: f64) -> Result<()> {
    let mut mn = f64::INFINITY;
    let mut mx = f64::NEG_INFINITY;
    for &x in v {
        if !x.is_finite() {
            return invalid(format!("{name} contains NaN or Inf values"));
        }
        mn = mn.min(x);
        mx = mx.max(x);
    }
    if mn < lo - tol || mx > hi + tol {
        let range = if hi.is_finite() {
            format!("[{lo}, {hi}]")
        } else {
            format!(">= {lo}")
        };
        return invalid(format!("{name} values must be {range}, found [{mn}, {mx}]"));
    }
    Ok(())
}

/// Precompute face coefficients (the face mean `mean` of a = D phi), 1/phi and the active line
/// ranges.
pub(super) fn build_coefs(
    n: [usize; 3],
    h: [f64; 3],
    d: &[f64],
    phi: &[f64],
    phi_min: f64,
    mean: FaceMean,
) -> Coefs {
    let [n0, n1, n2] = n;
    let len = n0 * n1 * n2;
    let (s0, s1) = (n1 * n2, n2);
    // a = D phi in active cells, 0 elsewhere (phi clamped into [0, 1]).
    let a = |c: usize| -> f64 {
        let p = phi[c].clamp(0.0, 1.0);
        if p >= phi_min {
            d[c] * p
        } else {
            0.0
        }
    };
    let inv_phi: Vec<f64> = phi
        .par_iter()
        .map(|&p| {
            let p = p.clamp(0.0, 1.0);
            if p >= phi_min {
                1.0 / p
            } else {
                0.0
            }
        })
        .collect();
    let face = |c: usize, off: usize, inv_h2: f64| -> f32 {
        (mean.apply(a(c), a(c + off)) * inv_h2) as f32
    };
    let (ih0, ih1, ih2) = (
        1.0 / (h[0] * h[0]),
        1.0 / (h[1] * h[1]),
        1.0 / (h[2] * h[2]),
    );
    let ax: Vec<f32> = if n0 > 1 {
        (0..len)
            .into_par_iter()
            .map(|c| {
                if c / s0 + 1 < n0 {
                    face(c, s0, ih0)
                } else {
                    0.0
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let ay: Vec<f32> = (0..len)
        .into_par_iter()
        .map(|c| {
            if (c / s1) % n1 + 1 < n1 {
                face(c, s1, ih1)
            } else {
                0.0
            }
        })
        .collect();
    let az: Vec<f32> = (0..len)
        .into_par_iter()
        .map(|c| {
            if c % n2 + 1 < n2 {
                face(c, 1, ih2)
            } else {
                0.0
            }
        })
        .collect();
    let lines: Vec<(u32, u32)> = inv_phi
        .par_chunks(n2)
        .map(|line| {
            let first = line.iter().position(|&w| w > 0.0);
            let last = line.iter().rposition(|&w| w > 0.0);
            match (first, last) {
                (Some(f), Some(l)) => (f as u32, (l + 1) as u32),
                _ => (0, 0),
            }
        })
        .collect();
    Coefs {
        n,
        ax,
        ay,
        az,
        inv_phi,
        lines,
    }
}

/// dt_stable = 1 / max over active cells of (sum_f A_f / phi_i + rho), A_f = a_f / h_f^2 as stored.
#[cfg(test)]
pub(super) fn stable_dt(c: &Coefs, rho: f64) -> f64 {
    inverse_or_inf(diffusion_rate(c) + rho)
}

/// 1 / x, or +inf when x is not positive (nothing evolves).
fn inverse_or_inf(x: f64) -> f64 {
    if x > 0.0 {
        1.0 / x
    } else {
        f64::INFINITY
    }
}

/// max over active cells of sum_f A_f / phi_i (1/day; 0 if no cell diffuses). Adding rho to the
/// maximum gives bit for bit the maximum of (sum_f A_f / phi_i + rho): rounding is monotone.
pub(super) fn diffusion_rate(c: &Coefs) -> f64 {
    let [n0, n1, n2] = c.n;
    let (s0, s1) = (n1 * n2, n2);
    (0..n0 * n1 * n2)
        .into_par_iter()
        .map(|q| {
            let w = c.inv_phi[q];
            if w == 0.0 {
                return 0.0;
            }
            let (i, j, k) = (q / s0, (q / s1) % n1, q % n2);
            let mut s = c.ay[q] as f64 + c.az[q] as f64;
            if n0 > 1 {
                s += c.ax[q] as f64;
                if i > 0 {
                    s += c.ax[q - s0] as f64;
                }
            }
            if j > 0 {
                s += c.ay[q - s1] as f64;
            }
            if k > 0 {
                s += c.az[q - 1] as f64;
            }
            w * s
        })
        .reduce(|| 0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{solver, synthetic};
    use super::super::{FisherKpp, FkOptions};
    use super::*;
    use ndarray::Array3;

    #[test]
    fn stays_in_unit_interval_at_the_bound() {
        let shape = [20usize, 18, 16];
        let (_, d, phi) = synthetic(shape, 7.0);
        let u0 = Array3::from_shape_fn(shape, |(i, j, k)| ((i * 7 + j * 3 + k) % 5) as f64 / 4.0);
        let probe = solver(shape, &d, &phi, &u0, 0.3, FkOptions::default());
        let opts = FkOptions {
            dt: Some(probe.dt_stable()),
            ..FkOptions::default()
        };
        let mut s = solver(shape, &d, &phi, &u0, 0.3, opts);
        for _ in 0..50 {
            s.advance(1);
            let u = s.state();
            let (mn, mx) = u
                .iter()
                .fold((1.0f64, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
            assert!(mn >= 0.0 && mx <= 1.0, "{mn} {mx}");
        }
        // A step just above the bound is refused.
        let opts = FkOptions {
            dt: Some(probe.dt_stable() * 1.0000001),
            ..FkOptions::default()
        };
        let grid = Grid::new(shape, [1.0, 0.8, 1.25]).unwrap();
        assert!(FisherKpp::new(u0.view(), d.view(), phi.view(), &grid, 0.3, opts).is_err());
    }

    #[test]
    fn face_coefficients_are_shared_and_zero_at_inactive_cells() {
        // 1D line of 4 cells along z: a = D phi = [2, 0 (inactive), 1, 3], h = 0.5.
        let d = [2.0, 5.0, 1.0, 3.0];
        let phi = [1.0, 1e-4, 1.0, 1.0];
        let c = build_coefs(
            [1, 1, 4],
            [1.0, 1.0, 0.5],
            &d,
            &phi,
            1e-3,
            FaceMean::Harmonic,
        );
        assert_eq!(c.az, vec![0.0, 0.0, (1.5f64 * 4.0) as f32, 0.0]);
        assert_eq!(c.lines, vec![(0, 4)]);
        assert_eq!(c.inv_phi[1], 0.0);
        // dt_stable: the worst cell is 2 (A = 6 to its +z neighbour) or 3 (A = 6), rho = 0.5.
        assert_eq!(stable_dt(&c, 0.5), 1.0 / 6.5);
        // Arithmetic: (1 + 3) / 2 / 0.25 = 8 on the open face; the closed faces stay 0.
        let c = build_coefs(
            [1, 1, 4],
            [1.0, 1.0, 0.5],
            &d,
            &phi,
            1e-3,
            FaceMean::Arithmetic,
        );
        assert_eq!(c.az, vec![0.0, 0.0, 8.0, 0.0]);
        assert_eq!(stable_dt(&c, 0.5), 1.0 / 8.5);
    }

    #[test]
    fn two_cells_exchange_by_the_chosen_mean() {
        // Two cells along z, a = D phi = 1 and 4 (h = 1, phi = 1), rho = 0: one step of size tau
        // moves tau a_f (u_1 - u_0) from cell 1 into cell 0, with a_f = 1.6 (harmonic) or 2.5
        // (arithmetic), and the sum u_0 + u_1 is kept.
        let grid = Grid::new([1, 1, 2], [1.0; 3]).unwrap();
        let u0 = Array3::from_shape_vec((1, 1, 2), vec![0.0, 1.0]).unwrap();
        let d = Array3::from_shape_vec((1, 1, 2), vec![1.0, 4.0]).unwrap();
        let phi = Array3::from_elem((1, 1, 2), 1.0);
        for (mean, af) in [(FaceMean::Harmonic, 1.6), (FaceMean::Arithmetic, 2.5)] {
            let tau = 0.1;
            let opts = FkOptions {
                dt: Some(tau),
                face_mean: mean,
                ..FkOptions::default()
            };
            let mut s = FisherKpp::new(u0.view(), d.view(), phi.view(), &grid, 0.0, opts).unwrap();
            assert_eq!(s.dt_stable(), 1.0 / (af as f32) as f64);
            s.advance(1);
            let u = s.state();
            let moved = tau * (af as f32) as f64;
            assert!((u[[0, 0, 0]] - moved).abs() < 1e-15, "{mean:?} {u:?}");
            assert!(
                (u[[0, 0, 1]] - (1.0 - moved)).abs() < 1e-15,
                "{mean:?} {u:?}"
            );
        }
    }
}
