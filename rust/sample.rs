//! Seeded collocation-point sampling for the PINN: space-time points `(x, t)` inside the brain.
//!
//! Two samplers, both by rejection on the phase field `phi` (interpolated bilinearly/trilinearly
//! with `interpolate::value_at`):
//!
//! * **radial** (the paper: "sampling a radially-symmetric uniform distribution centered at
//!   x_ic"): `x = c + r * e` with `r ~ U(0, R)` and `e` uniform on the unit circle (2D: angle
//!   `~ U(0, 2 pi)`) or sphere (3D: `e_z ~ U(-1, 1)`, azimuth `~ U(0, 2 pi)`, Archimedes). The
//!   spatial density is `p(x) ∝ 1 / |x - c|^(d-1)` on the ball of radius `R`: points concentrate
//!   near the seed, where the tumour is, and the *distance* `|x - c|` is uniform on `[0, R)`.
//! * **uniform**: `x` uniform in the box.
//!
//! A candidate is kept when it lies in the closed box `[0, (nx-1)dx] x [0, (ny-1)dy]
//! (x [0, (nz-1)dz])` (the region where the interpolant is defined, voxel centres at `i*h`) and
//! `phi(x) >= phi_min`; the kept distribution is the proposal restricted to that set. Each kept
//! point gets a time `t ~ U(0, t_max)` (days). Coordinates are local mm.
//!
//! Reproducibility: the `n` requested points are split into blocks of `BLOCK` points; block `b`
//! draws from its own ChaCha8 stream (key from `seed` via `seed_from_u64`, stream id
//! `(sampler tag << 32) | b`) and runs its own rejection loop until it holds its quota. The
//! output therefore depends on `(seed, n, inputs)` only, bit for bit, not on the number of rayon
//! threads. Uniform variates are `(u64 >> 11) * 2^-53` in `[0, 1)`.
//!
//! Failure: before the real run a pilot of up to `PILOT` candidates (its own stream) estimates the
//! acceptance rate; below `MIN_ACCEPTANCE` the sampler returns an `InvalidInput` error instead of
//! spinning (e.g. a seed outside the brain, a radius far larger than the domain, `phi_min` above
//! almost every voxel). Each block also stops with an error after `quota / MIN_ACCEPTANCE`
//! (+ a floor) candidates, as a safety net.

use ndarray::{Array1, Array2, ArrayView3};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{invalid, GbmError, Result};
use crate::grid::Grid;
use crate::interpolate::value_at;

/// Points per independently seeded block.
const BLOCK: usize = 1024;
/// Candidates in the pilot run that estimates the acceptance rate.
const PILOT: usize = 100_000;
/// Lowest acceptance rate accepted before giving up.
const MIN_ACCEPTANCE: f64 = 1e-4;
/// Stream-id tags that keep the two samplers' random streams apart for the same seed.
const TAG_RADIAL: u64 = 1;
const TAG_UNIFORM: u64 = 2;
/// Block index used for the pilot stream (never a real block: n < 2^32 * BLOCK).
const PILOT_BLOCK: u64 = 0xFFFF_FFFF;

#[inline(always)]
fn unif(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn stream(seed: u64, tag: u64, block: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((tag << 32) | block);
    rng
}

/// Upper corner of the sampling box, `(n_a - 1) h_a` mm per axis.
fn box_hi(grid: &Grid) -> [f64; 3] {
    let mut hi = [0.0; 3];
    for (a, h) in hi.iter_mut().enumerate().take(grid.ndim()) {
        *h = (grid.shape[a] - 1) as f64 * grid.spacing[a];
    }
    hi
}

/// Up to 4 decimals, trailing zeros trimmed: 12.5, 30, 0.0312.
fn fmt_num(v: f64) -> String {
    let s = format!("{v:.4}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s // NaN, inf
    }
}

fn fmt_point(p: &[f64]) -> String {
    let s: Vec<String> = p.iter().map(|&v| fmt_num(v)).collect();
    format!("({})", s.join(", "))
}

/// Maximum of `f` and whether every entry is finite, in one parallel, vectorisable pass (this scan
/// is most of the cost of sampling on a 3D atlas: ~4e6 voxels for 2e4 points).
fn max_and_finite(f: &[f64]) -> (f64, bool) {
    const L: usize = 8;
    f.par_chunks(1 << 16)
        .map(|c| {
            let mut m = [f64::NEG_INFINITY; L];
            // x * 0 is 0 for finite x and NaN for NaN/Inf: the lane sums stay 0 iff all finite.
            let mut z = [0.0f64; L];
            let mut it = c.chunks_exact(L);
            for q in &mut it {
                for l in 0..L {
                    m[l] = if q[l] > m[l] { q[l] } else { m[l] };
                    z[l] += q[l] * 0.0;
                }
            }
            for &v in it.remainder() {
                m[0] = if v > m[0] { v } else { m[0] };
                z[0] += v * 0.0;
            }
            let mx = m.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            (mx, z.iter().all(|v| *v == 0.0))
        })
        .reduce(
            || (f64::NEG_INFINITY, true),
            |a, b| (a.0.max(b.0), a.1 && b.1),
        )
}

/// Common argument checks and a C-contiguous copy/borrow of phi.
fn check_common(
    phi: &ArrayView3<'_, f64>,
    grid: &Grid,
    n: usize,
    t_max: f64,
    phi_min: f64,
) -> Result<()> {
    if phi.shape() != grid.shape {
        return invalid(format!(
            "phi has shape {:?} but the grid is {:?}",
            phi.shape(),
            grid.shape
        ));
    }
    if n == 0 {
        return invalid("n must be > 0");
    }
    if n as u64 >= (PILOT_BLOCK - 1) * BLOCK as u64 {
        return invalid(format!("n = {n} is too large"));
    }
    if !(t_max.is_finite() && t_max > 0.0) {
        return invalid(format!("t_max must be finite and > 0 (days), got {t_max}"));
    }
    if !phi_min.is_finite() {
        return invalid(format!("phi_min must be finite, got {phi_min}"));
    }
    let (max, finite) = match phi.as_slice() {
        Some(f) => max_and_finite(f),
        None => max_and_finite(&phi.iter().cloned().collect::<Vec<f64>>()),
    };
    if !finite {
        return invalid("phi contains NaN or Inf values");
    }
    if max < phi_min {
        // The interpolant is a convex combination of voxel values: nothing can be accepted.
        return invalid(format!(
            "phi has no voxel with phi >= phi_min={phi_min} (max phi = {max:.4})"
        ));
    }
    Ok(())
}

/// Run the blocked rejection sampler. `propose` writes a candidate (d coordinates) and returns
/// whether it is accepted.
fn run_blocks<F>(
    n: usize,
    d: usize,
    seed: u64,
    tag: u64,
    t_max: f64,
    what: &str,
    propose: F,
) -> Result<(Array2<f64>, Array1<f64>)>
where
    F: Fn(&mut ChaCha8Rng, &mut [f64]) -> bool + Sync,
{
    // Pilot: estimate the acceptance rate on a separate stream; stop early once it is clearly fine.
    let mut rng = stream(seed, tag, PILOT_BLOCK);
    let mut p = [0.0; 3];
    let (mut tries, mut acc) = (0usize, 0usize);
    while tries < PILOT && acc < 200 {
        tries += 1;
        if propose(&mut rng, &mut p[..d]) {
            acc += 1;
        }
    }
    if (acc as f64) < MIN_ACCEPTANCE * tries as f64 || acc == 0 {
        return invalid(format!(
            "{what}: only {acc} of {tries} trial points fell inside the box with phi >= phi_min \
             (acceptance rate {:.1e} < {MIN_ACCEPTANCE:.0e})",
            acc as f64 / tries as f64
        ));
    }

    let nblocks = n.div_ceil(BLOCK);
    let blocks: Result<Vec<(Vec<f64>, Vec<f64>)>> = (0..nblocks)
        .into_par_iter()
        .map(|b| {
            let quota = BLOCK.min(n - b * BLOCK);
            let cap = (quota as f64 / MIN_ACCEPTANCE) as usize + 10 * PILOT;
            let mut rng = stream(seed, tag, b as u64);
            let mut pts = Vec::with_capacity(quota * d);
            let mut ts = Vec::with_capacity(quota);
            let mut p = [0.0; 3];
            let mut tries = 0usize;
            while ts.len() < quota {
                tries += 1;
                if tries > cap {
                    return Err(GbmError::InvalidInput(format!(
                        "{what}: acceptance rate below {MIN_ACCEPTANCE:.0e} \
                         ({} of {tries} trial points kept)",
                        ts.len()
                    )));
                }
                if propose(&mut rng, &mut p[..d]) {
                    pts.extend_from_slice(&p[..d]);
                    ts.push(t_max * unif(&mut rng));
                }
            }
            Ok((pts, ts))
        })
        .collect();
    let blocks = blocks?;
    let mut pts = Vec::with_capacity(n * d);
    let mut ts = Vec::with_capacity(n);
    for (p, t) in blocks {
        pts.extend(p);
        ts.extend(t);
    }
    let pts = Array2::from_shape_vec((n, d), pts)
        .map_err(|e| GbmError::Numerical(format!("internal shape error: {e}")))?;
    Ok((pts, Array1::from(ts)))
}

#[inline(always)]
fn in_box(p: &[f64], hi: &[f64; 3]) -> bool {
    p.iter().zip(hi).all(|(&x, &h)| (0.0..=h).contains(&x))
}

/// Radially-symmetric sampling around `center` (local mm, `d` entries): `n` points with
/// `|x - center| ~ U(0, radius)` and uniform direction, kept where inside the box and
/// `phi >= phi_min`; times `t ~ U(0, t_max)` days.
///
/// Returns `points (n, d)` mm and `t (n,)` days. Errors (`InvalidInput`) on bad arguments, on a
/// center outside the box or with `phi(center) < phi_min`, and on an acceptance rate below 1e-4.
#[allow(clippy::too_many_arguments)]
pub fn sample_radial(
    phi: ArrayView3<'_, f64>,
    grid: &Grid,
    center: &[f64],
    radius: f64,
    n: usize,
    t_max: f64,
    seed: u64,
    phi_min: f64,
) -> Result<(Array2<f64>, Array1<f64>)> {
    let d = grid.ndim();
    check_common(&phi, grid, n, t_max, phi_min)?;
    if center.len() != d {
        return invalid(format!(
            "center must have {d} coordinates for a {d}D grid, got {}",
            center.len()
        ));
    }
    if !center.iter().all(|v| v.is_finite()) {
        return invalid(format!("center {} contains NaN or Inf", fmt_point(center)));
    }
    if !(radius.is_finite() && radius > 0.0) {
        return invalid(format!("radius must be finite and > 0 (mm), got {radius}"));
    }
    let hi = box_hi(grid);
    if !in_box(center, &hi) {
        let ext: Vec<String> = hi[..d].iter().map(|h| format!("[0, {h:.4}]")).collect();
        return invalid(format!(
            "center {} mm is outside the box {} mm",
            fmt_point(center),
            ext.join(" x ")
        ));
    }
    let phi = phi.as_standard_layout();
    let f: &[f64] = match phi.as_slice() {
        Some(s) => s,
        None => return invalid("phi could not be made contiguous"),
    };
    let pc = value_at(f, grid, center);
    if pc < phi_min {
        return invalid(format!(
            "center {} mm is outside the domain (phi={} < phi_min={phi_min})",
            fmt_point(center),
            fmt_num(pc)
        ));
    }
    let c = [center[0], center[1], if d == 3 { center[2] } else { 0.0 }];
    let two_pi = std::f64::consts::TAU;
    let propose = |rng: &mut ChaCha8Rng, p: &mut [f64]| -> bool {
        let r = radius * unif(rng);
        if d == 2 {
            let (s, co) = (two_pi * unif(rng)).sin_cos();
            p[0] = c[0] + r * co;
            p[1] = c[1] + r * s;
        } else {
            let ez = 2.0 * unif(rng) - 1.0;
            let (s, co) = (two_pi * unif(rng)).sin_cos();
            let rho = (1.0 - ez * ez).max(0.0).sqrt();
            p[0] = c[0] + r * rho * co;
            p[1] = c[1] + r * rho * s;
            p[2] = c[2] + r * ez;
        }
        in_box(p, &hi) && value_at(f, grid, p) >= phi_min
    };
    run_blocks(n, d, seed, TAG_RADIAL, t_max, "sample_radial", propose)
}

/// Uniform sampling in the box, kept where `phi >= phi_min`; times `t ~ U(0, t_max)` days.
///
/// Returns `points (n, d)` mm and `t (n,)` days. Errors (`InvalidInput`) on bad arguments, when
/// no voxel reaches `phi_min`, and on an acceptance rate below 1e-4.
pub fn sample_uniform(
    phi: ArrayView3<'_, f64>,
    grid: &Grid,
    n: usize,
    t_max: f64,
    seed: u64,
    phi_min: f64,
) -> Result<(Array2<f64>, Array1<f64>)> {
    let d = grid.ndim();
    check_common(&phi, grid, n, t_max, phi_min)?;
    let hi = box_hi(grid);
    let phi = phi.as_standard_layout();
    let f: &[f64] = match phi.as_slice() {
        Some(s) => s,
        None => return invalid("phi could not be made contiguous"),
    };
    let propose = |rng: &mut ChaCha8Rng, p: &mut [f64]| -> bool {
        for (a, x) in p.iter_mut().enumerate() {
            *x = hi[a] * unif(rng);
        }
        value_at(f, grid, p) >= phi_min
    };
    run_blocks(n, d, seed, TAG_UNIFORM, t_max, "sample_uniform", propose)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// A disc/ball of radius `rad` mm (phi = 1 inside, 0 outside) centred at `c`.
    fn ball(grid: &Grid, c: [f64; 3], rad: f64) -> Array3<f64> {
        let [dx, dy, dz] = grid.spacing;
        Array3::from_shape_fn(
            (grid.shape[0], grid.shape[1], grid.shape[2]),
            |(i, j, k)| {
                let r2 = (i as f64 * dx - c[0]).powi(2)
                    + (j as f64 * dy - c[1]).powi(2)
                    + if grid.ndim() == 3 {
                        (k as f64 * dz - c[2]).powi(2)
                    } else {
                        0.0
                    };
                if r2.sqrt() <= rad {
                    1.0
                } else {
                    0.0
                }
            },
        )
    }

    /// Kolmogorov–Smirnov statistic of a sample against U(0, 1).
    fn ks_uniform(mut u: Vec<f64>) -> f64 {
        u.sort_by(|a, b| a.total_cmp(b));
        let n = u.len() as f64;
        u.iter()
            .enumerate()
            .map(|(i, &x)| (x - i as f64 / n).abs().max(((i + 1) as f64 / n - x).abs()))
            .fold(0.0, f64::max)
    }

    #[test]
    fn accepted_points_respect_box_and_phi_2d_3d() {
        for g in [
            Grid::new([40, 30, 1], [1.0, 0.8, 1.0]).unwrap(),
            Grid::new([20, 18, 16], [1.0, 1.2, 0.9]).unwrap(),
        ] {
            let d = g.ndim();
            let c = [15.0, 11.0, 7.0];
            let phi = ball(&g, c, 8.0);
            let f = phi.as_slice().unwrap();
            let hi = box_hi(&g);
            let (p, t) = sample_radial(phi.view(), &g, &c[..d], 12.0, 3000, 300.0, 7, 0.5).unwrap();
            let (q, s) = sample_uniform(phi.view(), &g, 3000, 300.0, 7, 0.5).unwrap();
            for (pts, ts) in [(&p, &t), (&q, &s)] {
                assert_eq!(pts.dim(), (3000, d));
                for row in pts.rows() {
                    let x = row.to_vec();
                    assert!(in_box(&x, &hi) && value_at(f, &g, &x) >= 0.5, "{x:?}");
                }
                assert!(ts.iter().all(|&t| (0.0..300.0).contains(&t)));
            }
        }
    }

    #[test]
    fn radius_and_time_are_uniform() {
        // phi = 1 everywhere, ball inside the box: |x - c| ~ U(0, R), t ~ U(0, T).
        // KS critical value at alpha = 0.001 for n = 20000: 1.95 / sqrt(n) = 0.0138.
        let g = Grid::new([30, 30, 30], [1.0, 1.0, 1.0]).unwrap();
        let phi = Array3::from_elem((30, 30, 30), 1.0);
        let c = [14.0, 15.0, 13.0];
        let n = 20_000;
        let (p, t) = sample_radial(phi.view(), &g, &c, 10.0, n, 50.0, 11, 0.5).unwrap();
        let r: Vec<f64> = p
            .rows()
            .into_iter()
            .map(|x| {
                ((x[0] - c[0]).powi(2) + (x[1] - c[1]).powi(2) + (x[2] - c[2]).powi(2)).sqrt()
                    / 10.0
            })
            .collect();
        let crit = 1.95 / (n as f64).sqrt();
        assert!(ks_uniform(r) < crit);
        assert!(ks_uniform(t.iter().map(|v| v / 50.0).collect()) < crit);
        // direction: cos(polar angle) ~ U(-1, 1) for a uniform direction on the sphere
        let ez: Vec<f64> = p
            .rows()
            .into_iter()
            .map(|x| {
                let v = [x[0] - c[0], x[1] - c[1], x[2] - c[2]];
                let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                0.5 * (v[2] / r + 1.0)
            })
            .collect();
        assert!(ks_uniform(ez) < crit);
    }

    #[test]
    fn reproducible_and_thread_independent() {
        let g = Grid::new([40, 30, 1], [1.0, 0.8, 1.0]).unwrap();
        let phi = ball(&g, [20.0, 12.0, 0.0], 10.0);
        let run = |seed| {
            sample_radial(phi.view(), &g, &[20.0, 12.0], 15.0, 5000, 100.0, seed, 0.5).unwrap()
        };
        let a = run(3);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| run(3));
        let pool3 = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let c = pool3.install(|| run(3));
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_ne!(a.0, run(4).0);
        let u = |seed| sample_uniform(phi.view(), &g, 5000, 100.0, seed, 0.5).unwrap();
        assert_eq!(u(3), pool.install(|| u(3)));
        assert_ne!(u(3).0, u(4).0);
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let g = Grid::new([20, 20, 1], [1.0, 1.0, 1.0]).unwrap();
        let phi = ball(&g, [10.0, 10.0, 0.0], 5.0);
        let err = |r: Result<(Array2<f64>, Array1<f64>)>| match r {
            Err(GbmError::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        };
        let m = err(sample_radial(
            phi.view(),
            &g,
            &[1.0, 1.0],
            3.0,
            10,
            1.0,
            0,
            0.5,
        ));
        assert!(
            m.contains("outside the domain") && m.contains("phi=0 < phi_min=0.5"),
            "{m}"
        );
        let m = err(sample_radial(
            phi.view(),
            &g,
            &[-1.0, 1.0],
            3.0,
            10,
            1.0,
            0,
            0.5,
        ));
        assert!(m.contains("outside the box"), "{m}");
        assert!(err(sample_radial(
            phi.view(),
            &g,
            &[10.0, 10.0],
            0.0,
            10,
            1.0,
            0,
            0.5
        ))
        .contains("radius"));
        assert!(err(sample_radial(
            phi.view(),
            &g,
            &[10.0, 10.0],
            3.0,
            0,
            1.0,
            0,
            0.5
        ))
        .contains("n must"));
        assert!(err(sample_uniform(phi.view(), &g, 10, -1.0, 0, 0.5)).contains("t_max"));
        assert!(err(sample_uniform(phi.view(), &g, 10, 1.0, 0, 2.0)).contains("no voxel"));
        // A single voxel of brain in a big box: acceptance far below 1e-4 -> error, not a hang.
        let g = Grid::new([400, 400, 1], [1.0, 1.0, 1.0]).unwrap();
        let mut phi = Array3::zeros((400, 400, 1));
        phi[[200, 200, 0]] = 1.0;
        assert!(err(sample_uniform(phi.view(), &g, 10, 1.0, 0, 0.99)).contains("acceptance rate"));
    }
}
