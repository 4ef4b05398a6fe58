//! Radially symmetric solver of the diffuse-domain Fisher–KPP equation (slab, disk, ball).
//!
//! Equation, with m = dim - 1 (dim = 1 slab, 2 disk, 3 ball) and phi = phi(r), D = D(r):
//!
//! ```text
//!     phi du/dt = r^-m d/dr ( r^m D phi du/dr ) + phi rho u (1 - u)
//! ```
//!
//! Units: r in mm, t in days, D in mm^2/day, rho in 1/day.
//!
//! Discretisation: cell-centred finite volumes on r_i = (i + 1/2) dr, i = 0 .. nr-1, faces at
//! r_f = f dr. With the exact shell measure V_i = ((i+1)^dim - i^dim) dr^dim / dim and the face
//! measure S_f = r_f^m (the common factor 2 pi or 4 pi cancels), one explicit Euler step of size tau is
//!
//! ```text
//!     u_i <- u_i + tau/(phi_i V_i) * sum_f S_f a_f (u_j - u_i)/dr + tau rho u_i (1 - u_i),
//! ```
//!
//! with a_f the harmonic mean of a = D phi of the two cells (as in `fisher_kpp`: flux continuity and
//! a_f <= 2 min(a_i, a_j)). Second order in dr, first in dt.
//!
//! Boundaries: zero flux at r = 0 (S_0 = 0 for dim >= 2; for dim = 1 the face at 0 is a symmetry
//! plane, also zero flux) and at r_max = nr dr. Cells with phi < phi_min are inactive (u = 0, no
//! flux through their faces), exactly as in the 2D/3D solver.
//!
//! Time step: dt_stable = min over active cells of 1 / (sum_f S_f a_f / (dr phi_i V_i) + rho) — the
//! monotonicity bound, see `fisher_kpp` — and dt = safety * dt_stable unless the caller gives a dt
//! (refused above dt_stable). The main sequence takes whole steps; the state at a requested time t
//! in [t_n, t_n + dt) is one partial step of size t - t_n applied to a copy, the same rule as
//! `FisherKpp::state_at`, so dt never depends on the requested times.
//!
//! Precision: everything in f64 (1D is cheap). The near-origin cell of the ball has
//! S/(dr V) = 3/dr^2, so dt_stable ~ dr^2/(3 D): dr = 0.1 mm with D = 0.13 gives ~12k steps for
//! 300 days on a few hundred cells, some tens of milliseconds.

use ndarray::{Array2, ArrayView1};

use crate::error::{invalid, Result};
use crate::fisher_kpp::{harmonic, whole_steps, FLUSH};

/// Options of the radial solver (same meaning as `FkOptions`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadialOptions {
    pub phi_min: f64,
    pub safety: f64,
    pub dt: Option<f64>,
}

impl Default for RadialOptions {
    fn default() -> Self {
        Self {
            phi_min: 1e-3,
            safety: 0.9,
            dt: None,
        }
    }
}

/// What the radial run used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadialInfo {
    /// Time step (days).
    pub dt: f64,
    /// Stability bound the step was checked against (days).
    pub dt_stable: f64,
    /// Whole steps of the main sequence.
    pub steps: u64,
}

/// Solve the radial problem and return u at each of `times` (days, non-decreasing, >= 0).
///
/// * `phi`: phase field per cell, length nr, in [0, 1];
/// * `diffusivity`: D per cell (length nr) or one value for all (length 1), mm^2/day, >= 0;
/// * `u0`: initial density per cell, in [0, 1] (set to 0 in inactive cells);
/// * `dr`: cell width (mm); `dim`: 1, 2 or 3; `rho`: 1/day, >= 0.
///
/// Returns an array of shape `(times.len(), nr)` and the run's `RadialInfo`.
#[allow(clippy::too_many_arguments)]
pub fn radial_solve(
    phi: ArrayView1<f64>,
    diffusivity: ArrayView1<f64>,
    u0: ArrayView1<f64>,
    dr: f64,
    dim: usize,
    rho: f64,
    times: &[f64],
    opts: RadialOptions,
) -> Result<(Array2<f64>, RadialInfo)> {
    let nr = phi.len();
    if nr == 0 {
        return invalid("phi must have at least one cell");
    }
    if u0.len() != nr {
        return invalid(format!(
            "u0 has shape ({},) but phi has shape ({nr},)",
            u0.len()
        ));
    }
    if diffusivity.len() != nr && diffusivity.len() != 1 {
        return invalid(format!(
            "diffusivity has shape ({},) but phi has shape ({nr},) (or give one value)",
            diffusivity.len()
        ));
    }
    if !(dr.is_finite() && dr > 0.0) {
        return invalid(format!("dr must be finite and > 0, got {dr}"));
    }
    if !(1..=3).contains(&dim) {
        return invalid(format!("dim must be 1, 2 or 3, got {dim}"));
    }
    if !(rho.is_finite() && rho >= 0.0) {
        return invalid(format!("rho must be >= 0, got {rho}"));
    }
    if !(opts.phi_min > 0.0 && opts.phi_min <= 1.0) {
        return invalid(format!("phi_min must be in (0, 1], got {}", opts.phi_min));
    }
    if !(opts.safety > 0.0 && opts.safety <= 1.0) {
        return invalid(format!("safety must be in (0, 1], got {}", opts.safety));
    }
    if let Some(dt) = opts.dt {
        if !(dt.is_finite() && dt > 0.0) {
            return invalid(format!("dt must be finite and > 0, got {dt}"));
        }
    }
    for (name, a, lo, hi, tol) in [
        ("phi", &phi, 0.0, 1.0, 1e-9),
        ("u0", &u0, 0.0, 1.0, 0.0),
        ("diffusivity", &diffusivity, 0.0, f64::INFINITY, 0.0),
    ] {
        if a.iter().any(|v| !v.is_finite()) {
            return invalid(format!("{name} contains NaN or Inf values"));
        }
        let mn = a.iter().copied().fold(f64::INFINITY, f64::min);
        let mx = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if mn < lo - tol || mx > hi + tol {
            let range = if hi.is_finite() {
                format!("[{lo}, {hi}]")
            } else {
                format!(">= {lo}")
            };
            return invalid(format!("{name} values must be {range}, found [{mn}, {mx}]"));
        }
    }
    if times.iter().any(|t| !(t.is_finite() && *t >= 0.0)) {
        return invalid("times must be finite and >= 0");
    }
    if times.windows(2).any(|w| w[1] < w[0]) {
        return invalid("times must be non-decreasing");
    }

    // Coefficients.
    let p: Vec<f64> = phi.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    let d = |i: usize| {
        if diffusivity.len() == 1 {
            diffusivity[0]
        } else {
            diffusivity[i]
        }
    };
    let a: Vec<f64> = (0..nr)
        .map(|i| {
            if p[i] >= opts.phi_min {
                d(i) * p[i]
            } else {
                0.0
            }
        })
        .collect();
    let dimf = dim as i32;
    let volume = |i: usize| {
        (((i + 1) as f64).powi(dimf) - (i as f64).powi(dimf)) * dr.powi(dimf) / dim as f64
    };
    let area = |f: usize| (f as f64 * dr).powi(dimf - 1);
    // cp[i]: S a / dr of the face between cell i and i+1 (0 for the last cell: r_max is no-flux).
    let cp: Vec<f64> = (0..nr)
        .map(|i| {
            if i + 1 < nr {
                area(i + 1) * harmonic(a[i], a[i + 1]) / dr
            } else {
                0.0
            }
        })
        .collect();
    // w[i] = 1/(phi_i V_i) in active cells, 0 elsewhere.
    let w: Vec<f64> = (0..nr)
        .map(|i| {
            if p[i] >= opts.phi_min {
                1.0 / (p[i] * volume(i))
            } else {
                0.0
            }
        })
        .collect();
    if w.iter().all(|&x| x == 0.0) {
        return invalid(format!(
            "phi has no cell above phi_min={}: empty domain",
            opts.phi_min
        ));
    }
    let worst = (0..nr)
        .filter(|&i| w[i] > 0.0)
        .map(|i| w[i] * (cp[i] + if i > 0 { cp[i - 1] } else { 0.0 }) + rho)
        .fold(0.0, f64::max);
    let dt_stable = if worst > 0.0 {
        1.0 / worst
    } else {
        f64::INFINITY
    };
    if !(dt_stable > 0.0) {
        return invalid("diffusivity is too large: a face coefficient overflows");
    }
    let dt = match opts.dt {
        Some(dt) if dt > dt_stable => {
            return invalid(format!(
                "dt={dt} exceeds the stability bound dt_stable={dt_stable} (days)"
            ))
        }
        Some(dt) => dt,
        None if dt_stable.is_finite() => opts.safety * dt_stable,
        None => 1.0,
    };

    let mut u: Vec<f64> = u0
        .iter()
        .zip(&w)
        .map(|(&v, &wi)| if wi > 0.0 && v >= FLUSH { v } else { 0.0 })
        .collect();
    let mut next = u.clone();
    let mut out = Array2::<f64>::zeros((times.len(), nr));
    let mut steps: u64 = 0;
    for (n, &t) in times.iter().enumerate() {
        let target = whole_steps(t, dt);
        while steps < target {
            radial_step(&cp, &w, &u, &mut next, dt, rho);
            std::mem::swap(&mut u, &mut next);
            steps += 1;
        }
        let tau = t - steps as f64 * dt;
        // Within round-off of the next step boundary: take exactly the next whole step.
        let tau = if dt - tau <= 1e-9 * (dt + t) { dt } else { tau };
        let mut row = out.row_mut(n);
        if tau > 0.0 {
            radial_step(&cp, &w, &u, &mut next, tau.min(dt), rho);
            row.iter_mut().zip(&next).for_each(|(o, &v)| *o = v);
        } else {
            row.iter_mut().zip(&u).for_each(|(o, &v)| *o = v);
        }
    }
    Ok((
        out,
        RadialInfo {
            dt,
            dt_stable,
            steps,
        },
    ))
}

/// One explicit step of size `tau`: `out = u + tau * (w * net flux + rho u (1 - u))`.
fn radial_step(cp: &[f64], w: &[f64], u: &[f64], out: &mut [f64], tau: f64, rho: f64) {
    let nr = u.len();
    let cell = |i: usize| -> f64 {
        let ui = u[i];
        let mut flux = 0.0;
        if i + 1 < nr {
            flux += cp[i] * (u[i + 1] - ui);
        }
        if i > 0 {
            flux += cp[i - 1] * (u[i - 1] - ui);
        }
        let v = ui + tau * (w[i] * flux + rho * ui * (1.0 - ui));
        if v < FLUSH {
            0.0
        } else {
            v
        }
    };
    if nr < 3 {
        for (i, o) in out.iter_mut().enumerate() {
            *o = cell(i);
        }
        return;
    }
    out[0] = cell(0);
    out[nr - 1] = cell(nr - 1);
    // Interior with equal-length slices (vectorisable, no bounds checks). Same operation order as
    // `cell`, so interior and end cells follow one formula.
    let m = nr - 2;
    let (um, uc, up) = (&u[0..m], &u[1..m + 1], &u[2..m + 2]);
    let (cm, cc, wc) = (&cp[0..m], &cp[1..m + 1], &w[1..m + 1]);
    let o = &mut out[1..m + 1];
    for k in 0..m {
        let ui = uc[k];
        let flux = cc[k] * (up[k] - ui) + cm[k] * (um[k] - ui);
        let v = ui + tau * (wc[k] * flux + rho * ui * (1.0 - ui));
        o[k] = if v < FLUSH { 0.0 } else { v };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::GbmError;
    use ndarray::Array1;

    fn tanh_phi(nr: usize, dr: f64, r0: f64) -> Array1<f64> {
        Array1::from_shape_fn(nr, |i| 0.5 + 0.5 * (r0 - (i as f64 + 0.5) * dr).tanh())
    }

    #[test]
    fn conserves_mass_without_reaction() {
        // sum_i phi_i V_i u_i is invariant for rho = 0, in every dimension, with heterogeneous D.
        let (nr, dr) = (120usize, 0.25);
        let phi = tanh_phi(nr, dr, 22.0);
        let d = Array1::from_shape_fn(nr, |i| 0.013 + 0.117 * (0.5 + 0.5 * (i as f64 * 0.3).sin()));
        let u0 = Array1::from_shape_fn(nr, |i| {
            0.9 * (-((i as f64 + 0.5) * dr).powi(2) / 20.0).exp()
        });
        for dim in 1..=3usize {
            let (u, info) = radial_solve(
                phi.view(),
                d.view(),
                u0.view(),
                dr,
                dim,
                0.0,
                &[0.0, 400.0],
                RadialOptions::default(),
            )
            .unwrap();
            let vol = |i: usize| ((i + 1) as f64).powi(dim as i32) - (i as f64).powi(dim as i32);
            let m = |row: usize| (0..nr).map(|i| phi[i] * vol(i) * u[[row, i]]).sum::<f64>();
            let (m0, m1) = (m(0), m(1));
            assert!(info.steps > 1000);
            assert!(((m1 - m0) / m0).abs() < 1e-12, "dim {dim}: {m0} -> {m1}");
            assert!((u[[1, 0]] - u0[0]).abs() > 0.1, "nothing happened");
        }
    }

    #[test]
    fn uniform_state_follows_the_logistic_recurrence() {
        // A constant u has no flux anywhere (including the cells at r = 0 and r_max), so every
        // active cell follows the Euler recurrence of u' = rho u (1 - u) exactly.
        let (nr, dr, rho) = (50usize, 0.2, 0.3);
        let phi = tanh_phi(nr, dr, 8.0);
        let d = Array1::from_shape_fn(nr, |i| 0.05 + 0.01 * i as f64);
        let u0 = Array1::from_elem(nr, 0.05);
        for dim in 1..=3usize {
            let (u, info) = radial_solve(
                phi.view(),
                d.view(),
                u0.view(),
                dr,
                dim,
                rho,
                &[5.0],
                RadialOptions::default(),
            )
            .unwrap();
            let mut v = 0.05f64;
            for _ in 0..info.steps {
                v += info.dt * (rho * v * (1.0 - v));
            }
            let tau = 5.0 - info.steps as f64 * info.dt;
            v += tau * (rho * v * (1.0 - v));
            for i in 0..nr {
                if phi[i] >= 1e-3 {
                    assert!(
                        (u[[0, i]] - v).abs() < 1e-14,
                        "dim {dim} cell {i}: {} vs {v}",
                        u[[0, i]]
                    );
                } else {
                    assert_eq!(u[[0, i]], 0.0);
                }
            }
        }
    }

    #[test]
    fn time_step_rule() {
        let (nr, dr) = (80usize, 0.25);
        let phi = tanh_phi(nr, dr, 15.0);
        let d = Array1::from_elem(1, 0.13);
        let u0 = Array1::from_shape_fn(nr, |i| {
            0.1 * (-((i as f64 + 0.5) * dr).powi(2) / 10.0).exp()
        });
        let o = RadialOptions::default();
        let (a, ia) =
            radial_solve(phi.view(), d.view(), u0.view(), dr, 3, 0.025, &[15.0], o).unwrap();
        let (b, ib) = radial_solve(
            phi.view(),
            d.view(),
            u0.view(),
            dr,
            3,
            0.025,
            &[3.3, 15.0, 30.0],
            o,
        )
        .unwrap();
        assert_eq!(ia.dt, ib.dt);
        assert_eq!(a.row(0), b.row(1));
        // Ball near the origin: S/(dr V) = 3/dr^2 is the largest weight, so dt_stable = 1/(3 D/dr^2 + rho).
        let expect = 1.0 / (3.0 * 0.13 / (dr * dr) + 0.025);
        assert!(
            (ia.dt_stable - expect).abs() < 1e-12 * expect,
            "{} vs {expect}",
            ia.dt_stable
        );
        let err = radial_solve(
            phi.view(),
            d.view(),
            u0.view(),
            dr,
            3,
            0.025,
            &[1.0],
            RadialOptions {
                dt: Some(ia.dt_stable * 1.01),
                ..o
            },
        );
        assert!(
            matches!(err, Err(GbmError::InvalidInput(m)) if m.contains("exceeds the stability bound"))
        );
    }

    #[test]
    fn rejects_bad_input() {
        let phi = Array1::from_elem(10, 1.0);
        let u0 = Array1::from_elem(10, 0.1);
        let d = Array1::from_elem(1, 0.1);
        let o = RadialOptions::default();
        let msg = |r: Result<(Array2<f64>, RadialInfo)>| match r {
            Err(GbmError::InvalidInput(m)) => m,
            _ => panic!("expected InvalidInput"),
        };
        let short = Array1::from_elem(9, 0.1);
        assert_eq!(
            msg(radial_solve(
                phi.view(),
                d.view(),
                short.view(),
                0.1,
                2,
                0.1,
                &[1.0],
                o
            )),
            "u0 has shape (9,) but phi has shape (10,)"
        );
        assert_eq!(
            msg(radial_solve(
                phi.view(),
                d.view(),
                u0.view(),
                0.1,
                4,
                0.1,
                &[1.0],
                o
            )),
            "dim must be 1, 2 or 3, got 4"
        );
        assert_eq!(
            msg(radial_solve(
                phi.view(),
                d.view(),
                u0.view(),
                0.1,
                2,
                -1.0,
                &[1.0],
                o
            )),
            "rho must be >= 0, got -1"
        );
        assert!(msg(radial_solve(
            phi.view(),
            d.view(),
            u0.view(),
            0.0,
            2,
            0.1,
            &[1.0],
            o
        ))
        .starts_with("dr must be"));
        assert!(msg(radial_solve(
            phi.view(),
            d.view(),
            u0.view(),
            0.1,
            2,
            0.1,
            &[2.0, 1.0],
            o
        ))
        .contains("non-decreasing"));
        let zero = Array1::zeros(10);
        assert!(msg(radial_solve(
            zero.view(),
            d.view(),
            u0.view(),
            0.1,
            2,
            0.1,
            &[1.0],
            o
        ))
        .contains("empty domain"));
    }
}
