//! Explicit finite-volume solver of the diffuse-domain Fisher–Kolmogorov (Fisher–KPP) equation.
//!
//! Equation (phi time-independent, so d(phi u)/dt = phi du/dt):
//!
//! ```text
//!     phi du/dt = div(D phi grad u) + phi rho u (1 - u)        u in [0, 1]
//! ```
//!
//! Units: mm, days; D in mm^2/day, rho in 1/day, phi and u dimensionless.
//!
//! Discretisation: cell-centred finite volumes on the `Grid` (2D = `nz == 1`), explicit Euler in
//! time. With a_i = D_i phi_i and the face coefficient
//!
//! ```text
//!     a_f = 2 a_i a_j / (a_i + a_j)        (harmonic mean; 0 if either cell is inactive)
//! ```
//!
//! one step of size tau is
//!
//! ```text
//!     u_i <- u_i + tau/phi_i * sum_f a_f (u_j - u_i) / h_f^2  +  tau rho u_i (1 - u_i).
//! ```
//!
//! Why the harmonic mean: it is the face value that makes the two half-cell fluxes equal (flux
//! continuity across a jump in D phi, the classical choice for layered media), and it never exceeds
//! twice the smaller neighbour, a_f <= 2 min(a_i, a_j). Hence a_f / phi_i <= 2 D_i, so a cell with
//! small phi next to a cell with phi ~ 1 cannot force a tiny time step: the stability bound stays
//! benign across the diffuse interface. The same a_f is used by both cells of a face, so
//! sum_i phi_i u_i V is conserved exactly up to floating-point round-off when rho = 0.
//!
//! Boundaries: cells with phi < phi_min (default 1e-3) are inactive; u = 0 there for all times
//! (values of `u0` there are dropped) and every face touching them carries no flux. This is the
//! diffuse-domain no-flux boundary. The edge of the box is no-flux too (no face leaves the box; no
//! periodic wrap).
//!
//! Time step: the scheme is monotone (u stays in [0, 1], discrete maximum principle) when
//! tau * (sum_f a_f / (phi_i h_f^2) + rho) <= 1 in every active cell: writing the update as
//! u_i (1 - tau sum_f c_f - tau rho (1 - u_i)) + tau sum_f c_f u_j, all weights are non-negative
//! for u_i in [0, 1] exactly under that bound, which also contains the von Neumann limit of the
//! diffusion part. So
//!
//! ```text
//!     dt_stable = min over active cells of 1 / (sum_f a_f / (phi_i h_f^2) + rho),
//!     dt        = safety * dt_stable  (safety 0.9)  or the caller's dt if <= dt_stable.
//! ```
//!
//! dt_stable is computed from the coefficients actually stored (after rounding to f32, see below)
//! and never from the run length: day 150 of a 300-day run is bit-identical to a 150-day run.
//! Snapshots: the main sequence only takes whole steps; the state at t in [t_n, t_n + dt] is one
//! partial Euler step of size t - t_n applied to a copy (`state_at`).
//!
//! Precision and memory traffic: the state u is f64 (two buffers, swapped); 1/phi_i is f64; the
//! three face coefficients a_f / h_f^2 towards +x, +y, +z are stored once per cell as f32. Rounding
//! a coefficient to f32 perturbs D phi by <= 6e-8 relative — a perturbation of the *model*, far below
//! any modelling or discretisation error — while both cells of a face still use the identical value,
//! so conservation holds to f64 round-off (~1e-15 relative per step). Storing them as f32 cuts the
//! traffic from 56 to 44 bytes per cell and step (read u 8 + write u 8 + its write-allocate 8 +
//! 3 coefficients 12 + 1/phi 8; the neighbours' u come from cache). An all-f32 state would save a
//! further 12 bytes/cell but costs 6e-8 relative error per step in u and makes small diffusive
//! increments vanish next to u ~ 1; we keep the state f64 for ground-truth quality.
//!
//! Denormals: values below `FLUSH` = 1e-200 are set to 0 after each step. The explicit stencil
//! spreads u by one cell per step, so a shell of ever tinier values runs ahead of the tumour; once
//! those reach the subnormal range (< 2.2e-308) x86 handles them in microcode, which can slow a step
//! many-fold. The mass removed is < 1e-200 per cell, i.e. nothing.
//!
//! Layout and speed: internally the array is viewed as planes x rows x contiguous lines
//! `(n0, n1, n2)`: `(nx, ny, nz)` in 3D and `(1, nx, ny)` in 2D (same memory), so the innermost,
//! vectorised loop always runs along the contiguous axis. Each line stores its active range
//! `[k0, k1)`; lines without active cells are skipped. The inner loop indexes equal-length slices
//! only (no bounds checks survive) and is compiled for AVX-512 / AVX2 / baseline SSE2, chosen at run
//! time. No fused multiply-add is used, so all three give bit-identical results.
//!
//! A plain step is memory-bound in 3D (44 bytes per cell from DRAM, see above). `advance` therefore
//! fuses `DEFAULT_FUSE` = 6 steps into one sweep over x (temporal blocking, `fused_steps`): the
//! intermediate levels live in small per-slab ring buffers that stay in cache, so DRAM sees about
//! 44/6 ~ 7 bytes per cell and step; slabs of planes (balanced by active cells) run in parallel
//! with rayon and recompute a halo of k - l planes at level l. Every cell value comes from the same
//! formula and the same inputs as a plain step, so fused and plain runs are bit-identical (tested).
//! 2D problems fit in cache and take plain steps (parallel over lines when large).
//!
//! Measured on the 2-core Zen 5 box (AVX-512, other jobs running), 300 days, Dw 0.13, Dg 0.013,
//! rho 0.025: synthetic ball 147x184x157 (1.78M cells in active lines), 264 steps: plain steps
//! 1.26 s (2.7 ns per updated cell), fused x6 0.72 s (1.5 ns, 0.64 ns per box cell) + 0.13 s set-up;
//! ICBM152 crop 153x190x160 with a Cahn-Hilliard phi (2.05M active), 268 steps: 1.15 s in total,
//! solver memory ~210 MB; a 153x190 axial slice: 2.6 ms including set-up.

use ndarray::{Array3, ArrayView3};
use rayon::prelude::*;

use crate::error::{invalid, GbmError, Result};
use crate::grid::Grid;

/// Values of u below this are flushed to zero after each step (see the module header).
pub const FLUSH: f64 = 1e-200;

/// Tolerance on phi outside [0, 1] (values are clamped into [0, 1] after the check).
const PHI_TOL: f64 = 1e-9;

/// Steps fused per memory sweep in 3D by default (measured best on the 2-core Zen 5 box).
const DEFAULT_FUSE: usize = 6;

/// Below this many cells a step runs on one thread (the fork/join costs more than it saves).
const PAR_MIN_CELLS: usize = 200_000;

/// Options of the solver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FkOptions {
    /// Cells with phi < phi_min are inactive (u = 0, no flux). In (0, 1].
    pub phi_min: f64,
    /// dt = safety * dt_stable when `dt` is `None`. In (0, 1].
    pub safety: f64,
    /// Explicit time step in days; must be positive and <= dt_stable.
    pub dt: Option<f64>,
}

impl Default for FkOptions {
    fn default() -> Self {
        Self {
            phi_min: 1e-3,
            safety: 0.9,
            dt: None,
        }
    }
}

/// Harmonic mean of two non-negative face weights; 0 if either is 0.
#[inline]
pub(crate) fn harmonic(a: f64, b: f64) -> f64 {
    if a > 0.0 && b > 0.0 {
        2.0 * a * b / (a + b)
    } else {
        0.0
    }
}

/// Shape of an array as a Python-style tuple, for messages.
pub(crate) fn shape_str(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(|n| n.to_string()).collect();
    format!("({})", parts.join(", "))
}

/// Per-cell coefficients, in the internal `(n0, n1, n2)` layout (see the module header).
#[derive(Debug, Clone)]
struct Coefs {
    /// Internal shape (n0 planes, n1 lines per plane, n2 cells per line).
    n: [usize; 3],
    /// a_f / h^2 (1/day) of the face towards +axis; 0 on the box edge and at inactive cells.
    /// `ax` is empty when n0 == 1 (2D).
    ax: Vec<f32>,
    ay: Vec<f32>,
    az: Vec<f32>,
    /// 1/phi in active cells, 0 in inactive ones.
    inv_phi: Vec<f64>,
    /// Active range `[k0, k1)` of each line `(i, j)`; `k0 == k1` if the line has no active cell.
    lines: Vec<(u32, u32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Base,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

fn detect_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    Isa::Base
}

/// Explicit FV Fisher–KPP solver (see the module header for the scheme).
#[derive(Debug, Clone)]
pub struct FisherKpp {
    grid: Grid,
    coefs: Coefs,
    /// Current state (internal layout = C order of the user's array).
    u: Vec<f64>,
    /// Scratch buffer for the next state; equal to `u` outside active lines.
    next: Vec<f64>,
    rho: f64,
    dt: f64,
    dt_stable: f64,
    steps: u64,
    active: usize,
    isa: Isa,
    /// Steps fused per sweep in 3D (temporal blocking); 1 = plain steps.
    fuse: usize,
    /// Plane ranges of the slabs swept in parallel by `fused_steps`, and their ring buffers.
    slabs: Vec<(usize, usize)>,
    rings: Vec<Vec<f64>>,
}

impl FisherKpp {
    /// Set up the solver: validate inputs, precompute the coefficients, pick the time step.
    ///
    /// * `u0`: initial density, shape `grid.shape`, values in [0, 1] (set to 0 in inactive cells);
    /// * `diffusivity`: D (mm^2/day) per cell, >= 0;
    /// * `phi`: phase field per cell, in [0, 1];
    /// * `rho`: proliferation rate (1/day), >= 0.
    pub fn new(
        u0: ArrayView3<f64>,
        diffusivity: ArrayView3<f64>,
        phi: ArrayView3<f64>,
        grid: &Grid,
        rho: f64,
        opts: FkOptions,
    ) -> Result<Self> {
        let gshape = grid.shape;
        for (name, a) in [("u0", &u0), ("diffusivity", &diffusivity), ("phi", &phi)] {
            if a.shape() != gshape {
                return invalid(format!(
                    "{name} has shape {} but the grid has shape {}",
                    shape_str(a.shape()),
                    shape_str(&gshape)
                ));
            }
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
        let u0 = u0.as_standard_layout();
        let d = diffusivity.as_standard_layout();
        let ph = phi.as_standard_layout();
        let (u0s, ds, phs) = match (u0.as_slice(), d.as_slice(), ph.as_slice()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => {
                return Err(GbmError::Numerical(
                    "internal: non-contiguous standard layout".into(),
                ))
            }
        };
        check_values("u0", u0s, 0.0, 1.0, 0.0)?;
        check_values("diffusivity", ds, 0.0, f64::INFINITY, 0.0)?;
        check_values("phi", phs, 0.0, 1.0, PHI_TOL)?;

        let n = if grid.ndim() == 2 {
            [1, gshape[0], gshape[1]]
        } else {
            gshape
        };
        let h = if grid.ndim() == 2 {
            [1.0, grid.spacing[0], grid.spacing[1]]
        } else {
            grid.spacing
        };
        let coefs = build_coefs(n, h, ds, phs, opts.phi_min);
        let active = coefs.inv_phi.iter().filter(|&&w| w > 0.0).count();
        if active == 0 {
            return invalid(format!(
                "phi has no cell above phi_min={}: empty domain",
                opts.phi_min
            ));
        }
        let dt_stable = stable_dt(&coefs, rho);
        if !(dt_stable > 0.0) {
            return invalid(format!(
                "diffusivity is too large: a face coefficient D phi / h^2 overflows (max D = {:.3e})",
                ds.iter().copied().fold(0.0, f64::max)
            ));
        }
        let dt = match opts.dt {
            Some(dt) if dt > dt_stable => {
                return invalid(format!(
                    "dt={dt} exceeds the stability bound dt_stable={dt_stable} (days)"
                ))
            }
            Some(dt) => dt,
            None if dt_stable.is_finite() => opts.safety * dt_stable,
            // No diffusion and no reaction: nothing evolves, any step is exact.
            None => 1.0,
        };
        let u: Vec<f64> = u0s
            .iter()
            .zip(coefs.inv_phi.iter())
            .map(|(&v, &w)| if w > 0.0 && v >= FLUSH { v } else { 0.0 })
            .collect();
        let next = u.clone();
        let mut s = Self {
            grid: *grid,
            coefs,
            u,
            next,
            rho,
            dt,
            dt_stable,
            steps: 0,
            active,
            isa: detect_isa(),
            fuse: 1,
            slabs: Vec::new(),
            rings: Vec::new(),
        };
        s.set_fused_steps(DEFAULT_FUSE);
        Ok(s)
    }

    /// Number of steps fused into one sweep over memory in 3D (temporal blocking, see
    /// `fused_steps`); 1 disables it. Results are bit-identical for every value; only speed
    /// changes. 2D problems (which fit in cache) always take plain steps.
    pub fn set_fused_steps(&mut self, k: usize) {
        let [n0, n1, n2] = self.coefs.n;
        let k = k.max(1);
        if n0 == 1 || k == 1 {
            self.fuse = 1;
            self.slabs.clear();
            self.rings.clear();
            return;
        }
        let cells = n0 * n1 * n2;
        let n_slabs = if cells >= PAR_MIN_CELLS {
            2 * rayon::current_num_threads()
        } else {
            1
        };
        // Keep slabs much thicker than their recomputed halo (k - 1 planes per side).
        self.configure_fusion(k, n_slabs.min(n0 / (4 * k)).max(1));
    }

    fn configure_fusion(&mut self, k: usize, n_slabs: usize) {
        let [_, n1, n2] = self.coefs.n;
        self.fuse = k;
        self.slabs = balanced_slabs(&self.coefs, n_slabs);
        self.rings = vec![vec![0.0; (k - 1) * 3 * n1 * n2]; self.slabs.len()];
    }

    /// Time step (days).
    pub fn dt(&self) -> f64 {
        self.dt
    }

    /// Largest stable (monotone) time step for these coefficients (days; +inf if D = rho = 0).
    pub fn dt_stable(&self) -> f64 {
        self.dt_stable
    }

    /// Current time of the main sequence, `steps * dt` (days).
    pub fn t(&self) -> f64 {
        self.steps as f64 * self.dt
    }

    /// Whole steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Number of active cells (phi >= phi_min).
    pub fn active_cells(&self) -> usize {
        self.active
    }

    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Whole steps the main sequence can still take without passing time `t` (0 if t <= now).
    pub fn steps_until(&self, t: f64) -> u64 {
        whole_steps(t, self.dt).saturating_sub(self.steps)
    }

    /// Take `n_steps` whole time steps.
    pub fn advance(&mut self, n_steps: u64) {
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

    /// Current state as a C-ordered slice of the grid's length (no copy).
    pub fn values(&self) -> &[f64] {
        &self.u
    }

    /// Current state as an array of the grid's shape.
    pub fn state(&self) -> Array3<f64> {
        self.to_array(self.u.clone())
    }

    /// State at time `t` in `[t(), t() + dt]`: one partial Euler step of size `t - t()` applied to
    /// a copy of the current state (the main sequence is not touched).
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
        step(&self.coefs, &self.u, &mut out, tau, self.rho, self.isa);
        Ok(self.to_array(out))
    }

    fn to_array(&self, v: Vec<f64>) -> Array3<f64> {
        let s = self.grid.shape;
        // The length always equals the grid size (both come from the same grid).
        Array3::from_shape_vec((s[0], s[1], s[2]), v)
            .unwrap_or_else(|_| Array3::zeros((s[0], s[1], s[2])))
    }
}

/// Largest n with n * dt <= t (0 for t <= 0 or non-finite t), exact in floating point.
pub(crate) fn whole_steps(t: f64, dt: f64) -> u64 {
    if !(t.is_finite() && t > 0.0 && dt > 0.0) {
        return 0;
    }
    let mut n = (t / dt).floor() as u64;
    while (n + 1) as f64 * dt <= t {
        n += 1;
    }
    while n > 0 && n as f64 * dt > t {
        n -= 1;
    }
    n
}

/// Check finiteness and range `[lo - tol, hi + tol]`, naming the array.
fn check_values(name: &str, v: &[f64], lo: f64, hi: f64, tol: f64) -> Result<()> {
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

/// Precompute face coefficients, 1/phi and the active line ranges.
fn build_coefs(n: [usize; 3], h: [f64; 3], d: &[f64], phi: &[f64], phi_min: f64) -> Coefs {
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
    let face =
        |c: usize, off: usize, inv_h2: f64| -> f32 { (harmonic(a(c), a(c + off)) * inv_h2) as f32 };
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
fn stable_dt(c: &Coefs, rho: f64) -> f64 {
    let [n0, n1, n2] = c.n;
    let (s0, s1) = (n1 * n2, n2);
    let worst = (0..n0 * n1 * n2)
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
            w * s + rho
        })
        .reduce(|| 0.0, f64::max);
    if worst > 0.0 {
        1.0 / worst
    } else {
        f64::INFINITY
    }
}

/// The three planes of the source state that plane `i` of the next state reads: x-1, x, x+1.
/// At the box edge the missing plane is replaced by the centre plane (u_j - u_i = 0: no flux).
#[derive(Clone, Copy)]
struct Src<'a> {
    xm: &'a [f64],
    c: &'a [f64],
    xp: &'a [f64],
}

/// Source planes of plane `i` taken from a whole state array `u`.
fn src_of(u: &[f64], i: usize, n0: usize, plane: usize) -> Src<'_> {
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
/// outside them, as `u` does).
fn step(c: &Coefs, u: &[f64], out: &mut [f64], tau: f64, rho: f64, isa: Isa) {
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

/// Planes `[i0, i1)` of each slab, chosen so that every slab has about the same number of cells
/// in active line ranges (the work), for `n_slabs` slabs.
fn balanced_slabs(c: &Coefs, n_slabs: usize) -> Vec<(usize, usize)> {
    let [n0, n1, _] = c.n;
    let work: Vec<u64> = (0..n0)
        .map(|i| {
            c.lines[i * n1..(i + 1) * n1]
                .iter()
                .map(|&(a, b)| (b - a) as u64 + 1)
                .sum()
        })
        .collect();
    let total: u64 = work.iter().sum();
    let mut out = Vec::with_capacity(n_slabs);
    let (mut start, mut acc) = (0usize, 0u64);
    for (i, &w) in work.iter().enumerate() {
        acc += w;
        let k = out.len() as u64 + 1; // slab being filled
        if (acc * n_slabs as u64 >= k * total || i + 1 == n0) && out.len() < n_slabs {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    out.retain(|&(a, b)| b > a);
    out
}

/// `k` fused steps of size `dt` from `u` into `out` (temporal blocking; 3D only).
///
/// Each slab of planes sweeps x once: at wave `p` it computes level 1 (after one step) of plane
/// `p`, level 2 of plane `p - 1`, ..., level k of plane `p - k + 1` (written to `out`). Levels
/// 1..k-1 live in a ring of three planes per level (`ring`, pre-allocated per slab), so the state
/// and coefficients stream from memory once per k steps instead of once per step. Level l is
/// computed on the slab widened by k - l planes on each side (recomputed halo), so slabs are
/// independent. Every cell value is produced by the same formula from the same inputs as in `step`,
/// so the result is bit-identical to k single steps. Stale values in a ring (cells outside the
/// active lines of the plane currently stored there) are only ever multiplied by zero face
/// coefficients.
#[allow(clippy::too_many_arguments)]
fn fused_steps(
    c: &Coefs,
    u: &[f64],
    out: &mut [f64],
    rings: &mut [Vec<f64>],
    slabs: &[(usize, usize)],
    k: usize,
    dt: f64,
    rho: f64,
    isa: Isa,
) {
    let [n0, n1, n2] = c.n;
    let plane = n1 * n2;
    // Split `out` into the slabs' plane ranges (contiguous, in order).
    #[allow(clippy::type_complexity)]
    let mut chunks: Vec<(&mut [f64], &mut Vec<f64>, (usize, usize))> =
        Vec::with_capacity(slabs.len());
    let mut rest = out;
    let mut at = 0usize;
    for (&(i0, i1), ring) in slabs.iter().zip(rings.iter_mut()) {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut((i0 - at) * plane);
        let (mine, tail) = tail.split_at_mut((i1 - i0) * plane);
        chunks.push((mine, ring, (i0, i1)));
        rest = tail;
        at = i1;
    }
    chunks.into_par_iter().for_each(|(o, ring, (i0, i1))| {
        let level = 3 * plane; // ring segment of one level (three planes)
        let (i0s, i1s) = (i0 as isize, i1 as isize);
        let (ks, n0s) = (k as isize, n0 as isize);
        for p in (i0s - ks + 1)..(i1s + ks - 1) {
            for l in 1..=k {
                let q = p - (l as isize - 1);
                let halo = ks - l as isize;
                if q < (i0s - halo).max(0) || q >= (i1s + halo).min(n0s) {
                    continue;
                }
                let q = q as usize;
                // Source planes: level l - 1 (level 0 is `u`, level m >= 1 is ring segment m - 1).
                let (before, after) = ring.split_at_mut((l - 1) * level);
                let src = if l == 1 {
                    src_of(u, q, n0, plane)
                } else {
                    let seg = &before[(l - 2) * level..];
                    let pl = |qq: usize| &seg[(qq % 3) * plane..(qq % 3 + 1) * plane];
                    let cc = pl(q);
                    Src {
                        xm: if q > 0 { pl(q - 1) } else { cc },
                        c: cc,
                        xp: if q + 1 < n0 { pl(q + 1) } else { cc },
                    }
                };
                if l == k {
                    let off = (q - i0) * plane;
                    plane_kernel(isa, c, src, &mut o[off..off + plane], q, 0, dt, rho);
                } else {
                    let dst = &mut after[(q % 3) * plane..(q % 3 + 1) * plane];
                    plane_kernel(isa, c, src, dst, q, 0, dt, rho);
                }
            }
        }
    });
}

/// Update lines `j0 .. j0 + out.len() / n2` of plane `i` from `src`, with the ISA chosen at start.
#[allow(clippy::too_many_arguments)]
#[inline]
fn plane_kernel(
    isa: Isa,
    c: &Coefs,
    src: Src,
    out: &mut [f64],
    i: usize,
    j0: usize,
    tau: f64,
    rho: f64,
) {
    match isa {
        Isa::Base => update_block(c, src, out, i, j0, tau, rho),
        // SAFETY: the CPU feature was detected at run time in `detect_isa`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { update_block_avx2(c, src, out, i, j0, tau, rho) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { update_block_avx512(c, src, out, i, j0, tau, rho) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_block_avx2(
    c: &Coefs,
    src: Src,
    out: &mut [f64],
    i: usize,
    j0: usize,
    tau: f64,
    rho: f64,
) {
    update_block(c, src, out, i, j0, tau, rho)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn update_block_avx512(
    c: &Coefs,
    src: Src,
    out: &mut [f64],
    i: usize,
    j0: usize,
    tau: f64,
    rho: f64,
) {
    update_block(c, src, out, i, j0, tau, rho)
}

/// Update lines `j0 .. j0 + out.len() / n2` of plane `i`; `out` holds exactly those lines and
/// `src` the source planes x-1, x, x+1 of plane `i` (whole planes).
#[inline(always)]
fn update_block(c: &Coefs, src: Src, out: &mut [f64], i: usize, j0: usize, tau: f64, rho: f64) {
    let [n0, n1, n2] = c.n;
    let (s0, s1) = (n1 * n2, n2);
    for (jj, orow) in out.chunks_exact_mut(n2).enumerate() {
        let j = j0 + jj;
        let (k0, k1) = c.lines[i * n1 + j];
        let (k0, k1) = (k0 as usize, k1 as usize);
        if k0 == k1 {
            continue;
        }
        let l = j * s1; // start of line j within a plane
        let q = i * s0 + l; // start of line (i, j) in the whole array
        let uc = &src.c[l..l + n2];
        let uxm = &src.xm[l..l + n2];
        let uxp = &src.xp[l..l + n2];
        // Missing neighbours (box edge): the source line is the centre line itself, so u_j - u_i
        // is exactly 0 whatever coefficient is paired with it.
        let axm = if i > 0 {
            &c.ax[q - s0..q - s0 + n2]
        } else {
            &c.az[q..q + n2]
        };
        let axp = if i + 1 < n0 {
            &c.ax[q..q + n2]
        } else {
            &c.az[q..q + n2]
        };
        let (uym, aym) = if j > 0 {
            (&src.c[l - s1..l], &c.ay[q - s1..q])
        } else {
            (uc, &c.ay[q..q + n2])
        };
        let uyp = if j + 1 < n1 {
            &src.c[l + s1..l + s1 + n2]
        } else {
            uc
        };
        let ayp = &c.ay[q..q + n2];
        let az = &c.az[q..q + n2];
        let w = &c.inv_phi[q..q + n2];
        let lines = Lines {
            uc,
            uxm,
            uxp,
            uym,
            uyp,
            axm,
            axp,
            aym,
            ayp,
            az,
            w,
        };

        // Interior of the active range (both z-neighbours exist): vectorised.
        let lo = k0.max(1);
        let hi = k1.min(n2 - 1);
        if lo < hi {
            lines.interior(&mut orow[lo..hi], lo, tau, rho);
        }
        // Ends touching the box edge (k = 0 or k = n2 - 1): the missing neighbour is the cell itself.
        if k0 == 0 {
            orow[0] = lines.cell(0, if n2 > 1 { 1 } else { 0 }, 0, tau, rho);
        }
        if k1 == n2 && n2 > 1 {
            orow[n2 - 1] = lines.cell(n2 - 1, n2 - 1, n2 - 2, tau, rho);
        }
    }
}

/// The slices one line update reads (all of length n2).
struct Lines<'a> {
    uc: &'a [f64],
    uxm: &'a [f64],
    uxp: &'a [f64],
    uym: &'a [f64],
    uyp: &'a [f64],
    axm: &'a [f32],
    axp: &'a [f32],
    aym: &'a [f32],
    ayp: &'a [f32],
    /// a_f/h^2 towards +z; the -z face of k is az[k - 1].
    az: &'a [f32],
    w: &'a [f64],
}

/// The update formula of one cell (shared by the vector loop and the edge cells).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn formula(uc: f64, nb: [f64; 6], a: [f32; 6], w: f64, tau: f64, rho: f64) -> f64 {
    let flux = a[0] as f64 * (nb[0] - uc)
        + a[1] as f64 * (nb[1] - uc)
        + a[2] as f64 * (nb[2] - uc)
        + a[3] as f64 * (nb[3] - uc)
        + a[4] as f64 * (nb[4] - uc)
        + a[5] as f64 * (nb[5] - uc);
    let v = uc + tau * (w * flux + rho * uc * (1.0 - uc));
    if v < FLUSH {
        0.0
    } else {
        v
    }
}

impl Lines<'_> {
    /// One cell `k` with z-neighbours `kp` (+z) and `km` (-z) (equal to `k` at the box edge).
    #[inline(always)]
    fn cell(&self, k: usize, kp: usize, km: usize, tau: f64, rho: f64) -> f64 {
        let azm = if km < k { self.az[km] } else { 0.0 };
        let azp = if kp > k { self.az[k] } else { 0.0 };
        formula(
            self.uc[k],
            [
                self.uxm[k],
                self.uxp[k],
                self.uym[k],
                self.uyp[k],
                self.uc[kp],
                self.uc[km],
            ],
            [self.axm[k], self.axp[k], self.aym[k], self.ayp[k], azp, azm],
            self.w[k],
            tau,
            rho,
        )
    }

    /// Cells `lo .. lo + out.len()` (all with both z-neighbours inside the line).
    #[inline(always)]
    fn interior(&self, out: &mut [f64], lo: usize, tau: f64, rho: f64) {
        let m = out.len();
        let hi = lo + m;
        // Equal-length sub-slices: the compiler drops every bounds check in the loop.
        let uc = &self.uc[lo..hi];
        let uzm = &self.uc[lo - 1..hi - 1];
        let uzp = &self.uc[lo + 1..hi + 1];
        let uxm = &self.uxm[lo..hi];
        let uxp = &self.uxp[lo..hi];
        let uym = &self.uym[lo..hi];
        let uyp = &self.uyp[lo..hi];
        let axm = &self.axm[lo..hi];
        let axp = &self.axp[lo..hi];
        let aym = &self.aym[lo..hi];
        let ayp = &self.ayp[lo..hi];
        let azp = &self.az[lo..hi];
        let azm = &self.az[lo - 1..hi - 1];
        let w = &self.w[lo..hi];
        for k in 0..m {
            out[k] = formula(
                uc[k],
                [uxm[k], uxp[k], uym[k], uyp[k], uzp[k], uzm[k]],
                [axm[k], axp[k], aym[k], ayp[k], azp[k], azm[k]],
                w[k],
                tau,
                rho,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;
    use std::time::Instant;

    /// Synthetic brain-like box: a ball phase field (tanh profile) and a white/gray D mix.
    fn synthetic(shape: [usize; 3], r_ball: f64) -> (Array3<f64>, Array3<f64>, Array3<f64>) {
        let c = [
            (shape[0] as f64 - 1.0) / 2.0,
            (shape[1] as f64 - 1.0) / 2.0,
            (shape[2] as f64 - 1.0) / 2.0,
        ];
        let phi = Array3::from_shape_fn(shape, |(i, j, k)| {
            let r =
                ((i as f64 - c[0]).powi(2) + (j as f64 - c[1]).powi(2) + (k as f64 - c[2]).powi(2))
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
            let r2 =
                (i as f64 - c[0]).powi(2) + (j as f64 - c[1]).powi(2) + (k as f64 - c[2]).powi(2);
            0.1 * (-r2 / 10.0).exp()
        });
        (u0, d, phi)
    }

    fn solver(
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

    fn mass(s: &FisherKpp, phi: &Array3<f64>, u: &Array3<f64>) -> f64 {
        phi.iter().zip(u.iter()).map(|(p, v)| p * v).sum::<f64>() * s.grid().cell_volume()
    }

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
            let mut s = FisherKpp::new(
                u0.view(),
                dd.view(),
                phi.view(),
                &grid,
                rho,
                FkOptions {
                    dt: Some(dt),
                    ..FkOptions::default()
                },
            )
            .unwrap();
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

    #[test]
    fn snapshots_do_not_depend_on_run_length() {
        let shape = [16usize, 14, 12];
        let (u0, d, phi) = synthetic(shape, 6.0);
        let mut a = solver(shape, &d, &phi, &u0, 0.025, FkOptions::default());
        let mut b = solver(shape, &d, &phi, &u0, 0.025, FkOptions::default());
        assert_eq!(a.dt(), b.dt());
        a.advance(a.steps_until(15.0));
        let ua = a.state_at(15.0).unwrap();
        b.advance(b.steps_until(30.0) / 2); // run toward 30 days, look at day 15 on the way
        b.advance(b.steps_until(15.0));
        let ub = b.state_at(15.0).unwrap();
        assert_eq!(ua, ub);
        // The partial step of a full dt equals the next whole step; t_now gives the current state.
        let t = a.t();
        let full = a.state_at(t + a.dt()).unwrap();
        assert_eq!(a.state_at(t).unwrap(), a.state());
        a.advance(1);
        assert_eq!(full, a.state());
        assert!(a.state_at(a.t() + 1.5 * a.dt()).is_err());
        assert!(a.state_at(a.t() - 0.5 * a.dt()).is_err());
    }

    #[test]
    fn fused_steps_are_bit_identical_to_single_steps() {
        // Temporal blocking must not change a single bit: odd step counts, several slabs (with
        // recomputed halos), tissue against the box edge, inactive holes.
        for shape in [[23usize, 9, 11], [7, 5, 40], [40, 6, 3]] {
            let (u0, d, mut phi) = synthetic(shape, 6.0);
            phi[[0, 2, 2]] = 0.9; // tissue at the x = 0 face
            phi[[shape[0] / 2, 4, 1]] = 0.0; // a hole inside
            let mut plain = solver(shape, &d, &phi, &u0, 0.2, FkOptions::default());
            plain.set_fused_steps(1);
            for _ in 0..37 {
                plain.advance(1);
            }
            for k in 2..=4 {
                for n_slabs in [1, 2, 3, 5] {
                    let mut f = solver(shape, &d, &phi, &u0, 0.2, FkOptions::default());
                    f.configure_fusion(k, n_slabs.min(shape[0]));
                    assert_eq!(f.fuse, k);
                    assert!(f.slabs.len() + 1 >= n_slabs.min(shape[0]), "{:?}", f.slabs);
                    assert_eq!(f.slabs.first().map(|s| s.0), Some(0));
                    assert_eq!(f.slabs.last().map(|s| s.1), Some(shape[0]));
                    assert!(f.slabs.windows(2).all(|w| w[0].1 == w[1].0));
                    f.advance(37);
                    assert_eq!(f.steps(), 37);
                    assert_eq!(f.state(), plain.state(), "{shape:?} k {k} slabs {n_slabs}");
                }
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        let shape = [4usize, 5, 3];
        let grid = Grid::new(shape, [1.0; 3]).unwrap();
        let ones = Array3::from_elem(shape, 1.0);
        let half = Array3::from_elem(shape, 0.5);
        let msg = |r: Result<FisherKpp>| match r {
            Err(GbmError::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        };
        let o = FkOptions::default();
        let small = Array3::from_elem([4, 5, 2], 0.5);
        assert!(msg(FisherKpp::new(
            small.view(),
            ones.view(),
            ones.view(),
            &grid,
            0.1,
            o
        ))
        .contains("u0 has shape (4, 5, 2)"));
        assert_eq!(
            msg(FisherKpp::new(
                half.view(),
                ones.view(),
                ones.view(),
                &grid,
                -1.0,
                o
            )),
            "rho must be >= 0, got -1"
        );
        let zeros = Array3::zeros(shape);
        assert_eq!(
            msg(FisherKpp::new(
                half.view(),
                ones.view(),
                zeros.view(),
                &grid,
                0.1,
                o
            )),
            "phi has no cell above phi_min=0.001: empty domain"
        );
        let mut bad = half.clone();
        bad[[1, 1, 1]] = f64::NAN;
        assert!(msg(FisherKpp::new(
            bad.view(),
            ones.view(),
            ones.view(),
            &grid,
            0.1,
            o
        ))
        .contains("u0 contains NaN"));
        bad[[1, 1, 1]] = 1.5;
        assert!(msg(FisherKpp::new(
            bad.view(),
            ones.view(),
            ones.view(),
            &grid,
            0.1,
            o
        ))
        .starts_with("u0 values must be [0, 1]"));
        assert!(msg(FisherKpp::new(
            half.view(),
            half.view().mapv(|v| -v).view(),
            ones.view(),
            &grid,
            0.1,
            o
        ))
        .starts_with("diffusivity values"));
        assert!(msg(FisherKpp::new(
            half.view(),
            ones.view(),
            ones.view().mapv(|v| v * 1.01).view(),
            &grid,
            0.1,
            o
        ))
        .starts_with("phi values"));
        assert!(msg(FisherKpp::new(
            half.view(),
            ones.view(),
            ones.view(),
            &grid,
            0.1,
            FkOptions {
                dt: Some(10.0),
                ..o
            }
        ))
        .contains("exceeds the stability bound"));
        assert!(msg(FisherKpp::new(
            half.view(),
            ones.view(),
            ones.view(),
            &grid,
            0.1,
            FkOptions { safety: 0.0, ..o }
        ))
        .contains("safety"));
    }

    #[test]
    #[ignore]
    fn bench_synthetic_box() {
        let shapes: Vec<[usize; 3]> = match std::env::var("FK_BENCH_SHAPE") {
            Ok(v) => vec![{
                let n: Vec<usize> = v.split(',').map(|x| x.parse().unwrap()).collect();
                [n[0], n[1], n[2]]
            }],
            Err(_) => vec![[147, 184, 157], [150, 185, 1]],
        };
        for shape in shapes {
            let r_ball = std::env::var("FK_BENCH_R")
                .map(|v| v.parse().unwrap())
                .unwrap_or(70.0);
            let (u0, d, phi) = synthetic(shape, r_ball);
            let grid = Grid::new(shape, [1.0; 3]).unwrap();
            let fuses: Vec<usize> = match std::env::var("FK_BENCH_FUSE") {
                Ok(v) => v.split(',').map(|x| x.parse().unwrap()).collect(),
                Err(_) => vec![DEFAULT_FUSE],
            };
            let mut reference: Option<Array3<f64>> = None;
            for fuse in fuses {
                let t0 = Instant::now();
                let mut s = FisherKpp::new(
                    u0.view(),
                    d.view(),
                    phi.view(),
                    &grid,
                    0.025,
                    FkOptions::default(),
                )
                .unwrap();
                s.set_fused_steps(fuse);
                let setup = t0.elapsed().as_secs_f64();
                let n = s.steps_until(300.0);
                let t1 = Instant::now();
                s.advance(n);
                let u = s.state_at(300.0).unwrap();
                let run = t1.elapsed().as_secs_f64();
                let updates: f64 = s
                    .coefs
                    .lines
                    .iter()
                    .map(|&(a, b)| (b - a) as f64)
                    .sum::<f64>()
                    * n as f64;
                println!(
                    "shape {shape:?} fuse {fuse} isa {:?} dt {:.4} steps {n} active {} setup {:.3}s run {:.3}s  {:.2} ns/updated-cell ({:.2} ns/box-cell)",
                    s.isa, s.dt, s.active, setup, run, run * 1e9 / updates, run * 1e9 / (n as f64 * grid.len() as f64)
                );
                if let Some(r) = &reference {
                    assert_eq!(r, &u);
                }
                reference = Some(u);
            }
        }
    }
}
