//! Plain explicit Euler steps of the FV Fisher–KPP scheme (see `mod.rs`), the main sequence
//! (`advance`) and the partial step for snapshots (`state_at`).
//!
//! One step of size tau updates every cell of every active line range:
//!
//! ```text
//!     u_i <- u_i + tau/phi_i * sum_f A_f (u_j - u_i)  +  tau rho u_i (1 - u_i)
//! ```
//!
//! (the cell formula itself is in `simd.rs`). At the box edge the missing neighbour plane is
//! replaced by the cell's own plane, so u_j - u_i = 0: no flux. 3D steps run in parallel over
//! planes, large 2D ones over blocks of lines; the result does not depend on the split.

use ndarray::Array3;
use rayon::prelude::*;

use super::blocking::fused_steps;
use super::coefs::Coefs;
use super::rkl::{half_reaction, rkl2_coefs, strang_step, Buffers};
use super::rkl_blocking::fused_strang_step;
use super::simd::{plane_kernel, Isa, Src};
use super::{FisherKpp, Scheme, PAR_MIN_CELLS};
use crate::error::{invalid, Result};

impl FisherKpp {
    /// Take `n_steps` whole time steps (fused in 3D, see `blocking.rs`; bit-identical either way).
    pub fn advance(&mut self, n_steps: u64) {
        if self.scheme == Scheme::StrangRkl2 {
            let (c, sc) = (&self.coefs, &self.stage_coefs);
            let r = (self.rho > 0.0).then(|| half_reaction(self.rho, self.dt));
            for _ in 0..n_steps {
                if self.fuse > 1 {
                    let (u, next) = (&self.u, &mut self.next);
                    fused_strang_step(c, u, next, &mut self.rings, &self.slabs, sc, r, self.isa);
                    std::mem::swap(&mut self.u, &mut self.next);
                } else {
                    strang_step(
                        c,
                        &mut self.u,
                        &mut self.work,
                        sc,
                        self.rho,
                        self.dt,
                        self.isa,
                    );
                }
                self.steps += 1;
            }
            return;
        }
        let k = self.fuse as u64;
        let mut left = n_steps;
        while k > 1 && left >= k {
            let c = &self.coefs;
            fused_steps(
                c,
                &self.u,
                &mut self.next,
                &mut self.rings,
                &self.slabs,
                self.fuse,
                self.dt,
                self.rho,
                self.isa,
            );
            std::mem::swap(&mut self.u, &mut self.next);
            self.steps += k;
            left -= k;
        }
        for _ in 0..left {
            step(
                &self.coefs,
                &self.u,
                &mut self.next,
                self.dt,
                self.rho,
                self.isa,
            );
            std::mem::swap(&mut self.u, &mut self.next);
            self.steps += 1;
        }
    }

    /// State at time `t` in `[t(), t() + dt]`: one partial step of size `t - t()` applied to a copy
    /// of the current state (the main sequence is not touched). Euler: a partial Euler step;
    /// Strang–RKL2: a Strang step of size `t - t()` with the same number of stages (stable, as
    /// it is shorter), so `t = t() + dt` gives exactly the next whole step.
    pub fn state_at(&self, t: f64) -> Result<Array3<f64>> {
        let now = self.t();
        let tol = 1e-9 * (self.dt + now);
        if !(t.is_finite() && t >= now - tol && t <= now + self.dt + tol) {
            return invalid(format!(
                "t={t} is outside [t_now, t_now + dt] = [{now}, {}] (days); advance first",
                now + self.dt
            ));
        }
        // A time within round-off of the next step boundary gets exactly the next whole step.
        let tau = (t - now).clamp(0.0, self.dt);
        let tau = if self.dt - tau <= tol { self.dt } else { tau };
        if tau == 0.0 {
            return Ok(self.state());
        }
        let mut out = self.u.clone();
        if self.scheme == Scheme::StrangRkl2 {
            let sc = if tau == self.dt {
                self.stage_coefs.clone()
            } else {
                rkl2_coefs(self.stages, tau, self.rho)
            };
            let mut work = Buffers::new(out.len());
            strang_step(
                &self.coefs,
                &mut out,
                &mut work,
                &sc,
                self.rho,
                tau,
                self.isa,
            );
        } else {
            step(&self.coefs, &self.u, &mut out, tau, self.rho, self.isa);
        }
        Ok(self.to_array(out))
    }
}

/// Source planes of plane `i` taken from a whole state array `u`.
pub(super) fn src_of(u: &[f64], i: usize, n0: usize, plane: usize) -> Src<'_> {
    let c = &u[i * plane..(i + 1) * plane];
    let xm = if i > 0 {
        &u[(i - 1) * plane..i * plane]
    } else {
        c
    };
    let xp = if i + 1 < n0 {
        &u[(i + 1) * plane..(i + 2) * plane]
    } else {
        c
    };
    Src { xm, c, xp }
}

/// One explicit step of size `tau` from `u` into `out` (active lines only; `out` must hold zeros
/// outside them, as `u` does). `isa` must be supported by this CPU.
pub(super) fn step(c: &Coefs, u: &[f64], out: &mut [f64], tau: f64, rho: f64, isa: Isa) {
    let [n0, n1, n2] = c.n;
    let plane = n1 * n2;
    if n0 * plane >= PAR_MIN_CELLS && n0 > 1 {
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, o)| plane_kernel(isa, c, src_of(u, i, n0, plane), o, i, 0, tau, rho));
    } else if n0 * plane >= PAR_MIN_CELLS {
        // 2D: a single plane; split it into blocks of lines.
        let per = n1.div_ceil(4 * rayon::current_num_threads()).max(1);
        let src = src_of(u, 0, n0, plane);
        out.par_chunks_mut(per * n2)
            .enumerate()
            .for_each(|(b, o)| plane_kernel(isa, c, src, o, 0, b * per, tau, rho));
    } else {
        for (i, o) in out.chunks_mut(plane).enumerate() {
            plane_kernel(isa, c, src_of(u, i, n0, plane), o, i, 0, tau, rho);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{mass, solver, synthetic};
    use super::super::FkOptions;
    use super::*;
    use crate::grid::Grid;

    #[test]
    fn conserves_mass_without_reaction_2d_and_3d() {
        // Off-centre ball touching the box edge, heterogeneous D, non-trivial phi.
        for shape in [[24usize, 20, 18], [40, 36, 1]] {
            let (mut u0, d, _) = synthetic(shape, 9.0);
            let phi = Array3::from_shape_fn(shape, |(i, j, k)| {
                let r = ((i as f64 - 4.0).powi(2)
                    + (j as f64 - 8.0).powi(2)
                    + (k as f64 * 0.5).powi(2))
                .sqrt();
                0.5 + 0.5 * ((12.0 - r) / 2.0).tanh()
            });
            u0.iter_mut()
                .enumerate()
                .for_each(|(n, v)| *v = 0.5 + 0.4 * ((n as f64) * 0.37).sin());
            let mut s = solver(shape, &d, &phi, &u0, 0.0, FkOptions::default());
            let m0 = mass(&s, &phi, &s.state());
            s.advance(300);
            let m1 = mass(&s, &phi, &s.state());
            assert!(((m1 - m0) / m0).abs() < 1e-13, "{shape:?}: {m0} -> {m1}");
            // and it did move: the state is far from u0
            let moved: f64 = s
                .state()
                .iter()
                .zip(u0.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(moved > 0.1);
        }
    }

    #[test]
    fn strips_along_each_axis_match_the_slab_solver() {
        // A homogeneous strip along x, y or z (2D and 3D) is the 1D problem: all must agree with
        // radial_solve(dim = 1) to round-off. Catches a face coefficient taken from the wrong axis.
        use crate::radial::{radial_solve, RadialOptions};
        let n = 64usize;
        let h = 0.5;
        let (d, rho) = (0.25, 0.5); // exact in f32, so coefficient rounding plays no part
        let x = |i: usize| (i as f64 + 0.5) * h;
        let ic = |i: usize| 0.8 * (-x(i) * x(i) / 4.0).exp();
        let phi1 = ndarray::Array1::from_elem(n, 1.0);
        let u1 = ndarray::Array1::from_shape_fn(n, ic);
        let dt = 0.2; // < h^2 / (2 d + rho h^2) = 0.4
        let times = [7.3];
        let (rad, _) = radial_solve(
            phi1.view(),
            ndarray::Array1::from_elem(1, d).view(),
            u1.view(),
            h,
            1,
            rho,
            &times,
            RadialOptions {
                dt: Some(dt),
                ..RadialOptions::default()
            },
        )
        .unwrap();
        for (shape, axis) in [
            ([n, 3, 1], 0),
            ([2, n, 1], 1),
            ([n, 2, 3], 0),
            ([3, n, 2], 1),
            ([2, 3, n], 2),
        ] {
            let mut sp = [1.0, 1.0, 1.0];
            sp[axis] = h;
            let grid = Grid::new(shape, sp).unwrap();
            let idx = |(i, j, k): (usize, usize, usize)| [i, j, k][axis];
            let u0 = Array3::from_shape_fn(shape, |p| ic(idx(p)));
            let dd = Array3::from_elem(shape, d);
            let phi = Array3::from_elem(shape, 1.0);
            let opts = FkOptions {
                dt: Some(dt),
                ..FkOptions::default()
            };
            let mut s = FisherKpp::new(u0.view(), dd.view(), phi.view(), &grid, rho, opts).unwrap();
            s.advance(s.steps_until(times[0]));
            let u = s.state_at(times[0]).unwrap();
            for (p, v) in u.indexed_iter() {
                let r = rad[[0, idx(p)]];
                assert!(
                    (v - r).abs() < 1e-14,
                    "{shape:?} axis {axis} at {p:?}: {v} vs {r}"
                );
            }
        }
    }
}
