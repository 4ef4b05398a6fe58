//! Space-time observation operator of the FD solution: u at scattered points (x_i, t_i).
//!
//! This is the forward map of FD-based inference: parameters -> FD solution -> the values the
//! observations see. It runs the explicit solver of `fisher_kpp/` once and reads every
//! observation off the states it passes, without storing snapshots.
//!
//! Operator: with the solver's fixed step dt, an observation at time t falls in step
//! n = floor(t / dt) (`whole_steps`, exact in floating point) with fraction w = (t - n dt)/dt in
//! [0, 1), and
//!
//! ```text
//!     u_h(x, t) = (1 - w) I[u_n](x) + w I[u_{n+1}](x)
//! ```
//!
//! where I is the bilinear (2D) / trilinear (3D) interpolant of `interpolate.rs` (clamped at the
//! box edge) and u_n the state after n whole steps. Because one explicit Euler step is affine in
//! its length tau (u_n + tau F(u_n)), this equals I applied to the partial step `state_at(t)` of
//! `fisher_kpp/` up to round-off (the 1e-200 flush aside): the operator is the solver's own
//! value at (x, t), not an extra time interpolation. It is linear in u, so the misfit of an FD fit
//! is as smooth in (Dw, rho, seed) as the discrete solution itself.
//!
//! With `Scheme::StrangRkl2` (steps of several days, see `fisher_kpp/rkl.rs`) the same formula is
//! a linear interpolation in time between the scheme's whole steps: second order in time like the
//! scheme, but no longer equal to its partial step `state_at(t)` (which runs a Strang step of
//! size t - t_n). Observations at whole steps are the scheme's own states.
//!
//! Algorithm: every observation contributes one event (n, i, 1 - w) and, when w > 0, a second one
//! (n + 1, i, w). Events are sorted by step; the solver advances (fused steps allowed in 3D)
//! to each step that has events, the events of that step are evaluated (in parallel when there
//! are many) and accumulated into out[i]. Cost: one solve to max(t) plus O(N 2^d) reads.
//! Observations before the solver's current time are refused. Units: mm, days.

use std::time::Instant;

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::fisher_kpp::{whole_steps, FisherKpp};
use crate::interpolate::value_at;

/// Fractions below this count as "on the step": no second event.
const W_TOL: f64 = 1e-12;
/// Events of one step evaluated in parallel above this count.
const PAR_MIN_EVENTS: usize = 4096;
/// Steps advanced between deadline checks while no event is due.
const ADVANCE_CHUNK: u64 = 24;

/// One read of the solution: at whole step `step`, `w` x u(`p`) goes to observation `obs`. The
/// point is stored in the event so that the reads of a step walk memory in order.
#[derive(Debug, Clone, Copy, Default)]
struct Event {
    step: u64,
    obs: usize,
    w: f64,
    p: [f64; 3],
}

/// Resumable observation of a running solver (see the module header).
#[derive(Debug, Clone)]
pub struct Observer {
    d: usize,
    /// Sorted by step.
    events: Vec<Event>,
    cursor: usize,
    out: Vec<f64>,
}

impl Observer {
    /// Plan the observation of `solver` at `points` (`N x d`, local mm) and `times` (`N`, days).
    pub fn new(solver: &FisherKpp, points: ArrayView2<'_, f64>, times: &[f64]) -> Result<Self> {
        let grid = solver.grid();
        let d = grid.ndim();
        let n = points.nrows();
        if points.ncols() != d {
            return invalid(format!(
                "points must have shape (N, {d}) for a {d}D solver, got (N, {})",
                points.ncols()
            ));
        }
        if times.len() != n {
            return invalid(format!(
                "times has {} entries but points has {n} rows",
                times.len()
            ));
        }
        if !points.iter().all(|v| v.is_finite()) {
            return invalid("points contains NaN or Inf values");
        }
        let dt = solver.dt();
        let now = solver.steps();
        let mut events = Vec::with_capacity(2 * n);
        for (i, &t) in times.iter().enumerate() {
            if !(t.is_finite() && t >= 0.0) {
                return invalid(format!("times[{i}] = {t} must be finite and >= 0 (days)"));
            }
            let s = whole_steps(t, dt);
            let w = ((t - s as f64 * dt) / dt).clamp(0.0, 1.0);
            // A time within round-off of the next step boundary is that step.
            let (s, w) = if 1.0 - w <= W_TOL {
                (s + 1, 0.0)
            } else {
                (s, w)
            };
            if s < now {
                return invalid(format!(
                    "times[{i}] = {t} d is before the solver's current time {} d",
                    solver.t()
                ));
            }
            let mut p = [0.0; 3];
            for (a, v) in p.iter_mut().zip(points.row(i)) {
                *a = *v;
            }
            events.push(Event {
                step: s,
                obs: i,
                w: 1.0 - w,
                p,
            });
            if w > W_TOL {
                events.push(Event {
                    step: s + 1,
                    obs: i,
                    w,
                    p,
                });
            }
        }
        let events = sort_by_step(events, now);
        Ok(Self {
            d,
            events,
            cursor: 0,
            out: vec![0.0; n],
        })
    }

    /// Whether every observation has been evaluated.
    pub fn done(&self) -> bool {
        self.cursor >= self.events.len()
    }

    /// Advance `solver` and evaluate events until all are done (true) or `deadline` passes
    /// (false; call again to continue).
    pub fn run(&mut self, solver: &mut FisherKpp, deadline: Option<Instant>) -> bool {
        while !self.done() {
            let step = self.events[self.cursor].step;
            while solver.steps() < step {
                solver.advance((step - solver.steps()).min(ADVANCE_CHUNK));
                if deadline.is_some_and(|d| Instant::now() >= d) && solver.steps() < step {
                    return false;
                }
            }
            let end = self.cursor + self.events[self.cursor..].partition_point(|e| e.step == step);
            let grid = *solver.grid();
            let u = solver.values();
            let d = self.d;
            let eval = |e: &Event| e.w * value_at(u, &grid, &e.p[..d]);
            let group = &self.events[self.cursor..end];
            if group.len() >= PAR_MIN_EVENTS {
                let vals: Vec<f64> = group.par_iter().map(eval).collect();
                for (e, v) in group.iter().zip(vals) {
                    self.out[e.obs] += v;
                }
            } else {
                for e in group {
                    self.out[e.obs] += eval(e);
                }
            }
            self.cursor = end;
            if deadline.is_some_and(|d| Instant::now() >= d) && !self.done() {
                return false;
            }
        }
        true
    }

    /// The observed values, in the order of the points (complete once `done()`).
    pub fn values(&self) -> &[f64] {
        &self.out
    }
}

/// Events ordered by step (stable), by counting sort: O(N + steps) instead of O(N log N), which
/// would otherwise be a fifth of an FD fit's solve on the paper's 2D problems.
/// (A comparison sort when the steps span far more slots than there are events.)
fn sort_by_step(mut events: Vec<Event>, first: u64) -> Vec<Event> {
    let last = events.iter().map(|e| e.step).max().unwrap_or(first);
    if last - first > 4 * events.len() as u64 + (1 << 20) {
        events.sort_by_key(|e| e.step);
        return events;
    }
    let mut start = vec![0usize; (last - first) as usize + 2];
    for e in &events {
        start[(e.step - first) as usize + 1] += 1;
    }
    for k in 1..start.len() {
        start[k] += start[k - 1];
    }
    let mut out = vec![Event::default(); events.len()];
    for e in events {
        let slot = &mut start[(e.step - first) as usize];
        out[*slot] = e;
        *slot += 1;
    }
    out
}

/// Advance `solver` to the last observation time and return u at every `(points[i], times[i])`.
pub fn observe(
    solver: &mut FisherKpp,
    points: ArrayView2<'_, f64>,
    times: &[f64],
) -> Result<Vec<f64>> {
    let mut obs = Observer::new(solver, points, times)?;
    obs.run(solver, None);
    Ok(obs.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fisher_kpp::FkOptions;
    use crate::grid::Grid;
    use ndarray::{Array2, Array3};

    /// A ball phase field, a white/gray D pattern and the paper's Gaussian at the centre.
    struct Problem {
        u0: Array3<f64>,
        d: Array3<f64>,
        phi: Array3<f64>,
        grid: Grid,
    }

    impl Problem {
        fn new(shape: [usize; 3], spacing: [f64; 3]) -> Self {
            let grid = Grid::new(shape, spacing).unwrap();
            let c: Vec<f64> = (0..3)
                .map(|a| (shape[a] as f64 - 1.0) / 2.0 * spacing[a])
                .collect();
            let r2 = |i: usize, j: usize, k: usize| {
                let p = [
                    i as f64 * spacing[0],
                    j as f64 * spacing[1],
                    k as f64 * spacing[2],
                ];
                (0..grid.ndim()).map(|a| (p[a] - c[a]).powi(2)).sum::<f64>()
            };
            let phi = Array3::from_shape_fn(shape, |(i, j, k)| {
                0.5 + 0.5 * ((9.0 - r2(i, j, k).sqrt()) / 1.2).tanh()
            });
            let d = Array3::from_shape_fn(
                shape,
                |(i, j, _)| if (i + j) % 3 == 0 { 0.013 } else { 0.13 },
            );
            let u0 = Array3::from_shape_fn(shape, |(i, j, k)| 0.1 * (-r2(i, j, k) / 10.0).exp());
            Self { u0, d, phi, grid }
        }

        fn solver(&self, rho: f64) -> FisherKpp {
            let (u, d, p) = (self.u0.view(), self.d.view(), self.phi.view());
            FisherKpp::new(u, d, p, &self.grid, rho, FkOptions::default()).unwrap()
        }
    }

    /// Deterministic points inside the box and times in [0, t_max].
    fn points(grid: &Grid, n: usize, t_max: f64) -> (Array2<f64>, Vec<f64>) {
        let d = grid.ndim();
        let mut x = 0.123_f64;
        let mut next = || {
            x = (x * 997.0 + 0.271).fract();
            x
        };
        let p = Array2::from_shape_fn((n, d), |(_, a)| {
            (grid.shape[a] - 1) as f64 * grid.spacing[a] * next()
        });
        let t = (0..n).map(|_| t_max * next()).collect();
        (p, t)
    }

    #[test]
    fn equals_interpolated_partial_step_2d_and_3d() {
        for (shape, spacing) in [
            ([26, 22, 1], [1.0, 0.8, 1.0]),
            ([18, 16, 14], [1.0, 1.1, 0.9]),
        ] {
            let pb = Problem::new(shape, spacing);
            let (p, t) = points(&pb.grid, 300, 40.0);
            let mut s = pb.solver(0.025);
            let got = observe(&mut s, p.view(), &t).unwrap();
            // Reference: for each observation, a fresh solver advanced to it and its partial step.
            for i in (0..t.len()).step_by(7) {
                let mut r = pb.solver(0.025);
                r.advance(r.steps_until(t[i]));
                let snap = r.state_at(t[i]).unwrap();
                let v = value_at(
                    snap.as_slice().unwrap(),
                    &pb.grid,
                    p.row(i).as_slice().unwrap(),
                );
                assert!((got[i] - v).abs() <= 1e-13, "obs {i}: {} vs {v}", got[i]);
            }
            // The solver ends at the step of the latest observation (+1 for its upper state).
            let tmax = t.iter().copied().fold(0.0, f64::max);
            assert!(s.t() >= tmax && s.t() <= tmax + s.dt() * (1.0 + 1e-12));
        }
    }

    #[test]
    fn strang_observations_interpolate_whole_steps_linearly() {
        use crate::fisher_kpp::Scheme;
        let pb = Problem::new([18, 16, 14], [1.0, 1.1, 0.9]);
        let o = FkOptions {
            scheme: Scheme::StrangRkl2,
            dt: Some(4.0),
            ..FkOptions::default()
        };
        let make = || FisherKpp::new(pb.u0.view(), pb.d.view(), pb.phi.view(), &pb.grid, 0.05, o);
        let (p, _) = points(&pb.grid, 40, 1.0);
        let t: Vec<f64> = (0..40).map(|i| [8.0, 9.0, 11.5][i % 3]).collect();
        let mut s = make().unwrap();
        let got = observe(&mut s, p.view(), &t).unwrap();
        let mut r = make().unwrap();
        r.advance(2);
        let u2 = r.state();
        r.advance(1);
        let u3 = r.state();
        for i in 0..t.len() {
            let x = p.row(i).to_vec();
            let at = |u: &Array3<f64>| value_at(u.as_slice().unwrap(), &pb.grid, &x);
            let w = (t[i] - 8.0) / 4.0;
            let want = (1.0 - w) * at(&u2) + w * at(&u3);
            assert!(
                (got[i] - want).abs() <= 1e-14,
                "obs {i}: {} vs {want}",
                got[i]
            );
        }
    }

    #[test]
    fn resumable_with_deadline_gives_the_same_values() {
        let pb = Problem::new([30, 28, 1], [1.0, 1.0, 1.0]);
        let (p, t) = points(&pb.grid, 500, 60.0);
        let mut a = pb.solver(0.03);
        let full = observe(&mut a, p.view(), &t).unwrap();
        let mut b = pb.solver(0.03);
        let mut o = Observer::new(&b, p.view(), &t).unwrap();
        let mut rounds = 0;
        while !o.run(&mut b, Some(Instant::now())) {
            rounds += 1;
        }
        assert!(rounds > 1);
        assert_eq!(o.values(), &full[..]);
    }

    #[test]
    fn rejects_bad_observations() {
        let pb = Problem::new([12, 12, 1], [1.0, 1.0, 1.0]);
        let mut s = pb.solver(0.03);
        let p = Array2::from_elem((2, 2), 3.0);
        assert!(Observer::new(&s, p.view(), &[1.0]).is_err()); // length mismatch
        assert!(Observer::new(&s, Array2::from_elem((2, 3), 3.0).view(), &[1.0, 2.0]).is_err());
        assert!(Observer::new(&s, p.view(), &[1.0, f64::NAN]).is_err());
        assert!(Observer::new(&s, p.view(), &[1.0, -1.0]).is_err());
        let mut bad = p.clone();
        bad[[1, 0]] = f64::INFINITY;
        assert!(Observer::new(&s, bad.view(), &[1.0, 2.0]).is_err());
        s.advance(10);
        let e = Observer::new(&s, p.view(), &[0.0, 50.0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("before the solver's current time"), "{e}");
    }
}
