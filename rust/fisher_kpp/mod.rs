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
//! time by default (`Scheme::Euler`, below); `Scheme::StrangRkl2` (opt-in, `rkl.rs`) integrates
//! the same semi-discrete system to second order: exact logistic half steps around a
//! Runge–Kutta–Legendre super-time-step of the diffusion, any step size, s stencil sweeps per step
//! with s ~ sqrt(4 dt / dt_diffusion); its default step is rho dt = 0.5 (`STRANG_RHO_DT`). On the
//! atlas (300 days, Dw 0.13, rho 0.025) Euler's time error moves the u = 0.25 front by -0.37 mm
//! (safety 0.9) / -0.20 mm (0.5) at 1 mm and -1.3 / -0.76 mm at 2 mm; Strang–RKL2 at its default
//! by -0.011 mm / -0.013 mm with 120 / 60 sweeps instead of Euler 0.5's 483 / 131
//! (benches/RESULTS.md, "Time integration"). With a_i = D_i phi_i and the face coefficient
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
//! `FkOptions::face_mean` = `FaceMean::Arithmetic` takes a_f = (a_i + a_j) / 2 instead (0 if
//! either cell is inactive), as some peer solvers do; conservation holds the same way.
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
//! `stable_time_step` gives the same number without building a solver.
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
//! time (or forced with `FkOptions::isa`, see `simd.rs`). No fused multiply-add is used, so all
//! three give bit-identical results (tested).
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
//! solver memory ~210 MB; a 153x190 axial slice: 2.6 ms including set-up. Timing runs:
//! `cargo bench --bench fk_step` (benches/fk_step.rs).
//!
//! Files: `mod.rs` (options, the `FisherKpp` type, its constructor and read-outs), `coefs.rs`
//! (input checks, face coefficients, dt_stable, dt_diffusion), `step.rs` (plain Euler steps,
//! `advance`, `state_at`), `blocking.rs` (temporal blocking), `simd.rs` (the cell update and its
//! per-ISA compilations), `rkl.rs` (the Strang–RKL2 scheme: stage coefficients, stage kernel,
//! plain step), `rkl_blocking.rs` (its stages fused by temporal blocking in 3D), `fv.rs`
//! (finite-volume helpers shared with `radial.rs`/`observe.rs`).

mod blocking;
mod coefs;
mod fv;
mod rkl;
mod rkl_blocking;
mod simd;
mod step;
#[cfg(test)]
mod testutil;

use ndarray::{Array3, ArrayView3};

use crate::error::{invalid, GbmError, Result};
use crate::grid::Grid;

use coefs::{check_values, Coefs, Medium};
pub use fv::FaceMean;
pub(crate) use fv::{harmonic, shape_str, whole_steps};
pub use rkl::{rkl2_reach, rkl2_stages, MAX_STAGES};
pub use simd::Isa;

/// Values of u below this are flushed to zero after each step (see the module header).
pub const FLUSH: f64 = 1e-200;

/// Tolerance on phi outside [0, 1] (values are clamped into [0, 1] after the check).
const PHI_TOL: f64 = 1e-9;

/// Steps fused per memory sweep in 3D by default (measured best on the 2-core Zen 5 box).
const DEFAULT_FUSE: usize = 6;

/// Below this many cells a step runs on one thread (the fork/join costs more than it saves).
const PAR_MIN_CELLS: usize = 200_000;

/// Default step of `Scheme::StrangRkl2` when no `dt` is given: rho dt = STRANG_RHO_DT (see
/// `FisherKpp::new`).
pub const STRANG_RHO_DT: f64 = 0.5;

/// Without reaction (rho = 0) the default Strang–RKL2 step is this many explicit Euler bounds.
const STRANG_NO_RHO_STEPS: f64 = 16.0;

/// Time integrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// Explicit Euler on the whole right-hand side (first order; dt <= dt_stable). The default.
    #[default]
    Euler,
    /// Strang splitting: exact logistic half steps around an RKL2 super-time-step of the
    /// diffusion (second order; any dt, the stage count grows like sqrt(dt); see `rkl.rs`).
    StrangRkl2,
}

impl Scheme {
    /// Every name `Scheme::parse` knows.
    pub const NAMES: [&'static str; 2] = ["euler", "strang-rkl2"];

    /// "euler" or "strang-rkl2".
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Euler => "euler",
            Scheme::StrangRkl2 => "strang-rkl2",
        }
    }

    /// Parse a name of `Scheme::NAMES`; anything else is an `InvalidInput` error naming it.
    pub fn parse(name: &str) -> Result<Scheme> {
        match name {
            "euler" => Ok(Scheme::Euler),
            "strang-rkl2" => Ok(Scheme::StrangRkl2),
            _ => invalid(format!(
                "scheme must be 'euler' or 'strang-rkl2', got '{name}'"
            )),
        }
    }
}

/// Options of the solver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FkOptions {
    /// Cells with phi < phi_min are inactive (u = 0, no flux). In (0, 1].
    pub phi_min: f64,
    /// Euler: dt = safety * dt_stable when `dt` is `None`. Strang–RKL2: the stages are the fewest
    /// with dt <= safety * dt_diffusion * (s^2 + s - 2) / 4. In (0, 1].
    pub safety: f64,
    /// Time step in days; must be positive (and <= dt_stable for Euler). Strang–RKL2's default
    /// is `STRANG_RHO_DT / rho`.
    pub dt: Option<f64>,
    /// Time integrator (default: explicit Euler).
    pub scheme: Scheme,
    /// Strang–RKL2 only: RKL2 stages per step (>= 2; refused if unstable for dt). `None`: the
    /// fewest stable ones at `safety`. Fixing it keeps the scheme the same over a family of
    /// media (a fit).
    pub stages: Option<usize>,
    /// Instruction set of the cell update; `None` = the best this CPU supports. Results are
    /// bit-identical for every choice (only speed changes); one the CPU lacks is refused.
    pub isa: Option<Isa>,
    /// Mean of the two cells' D phi on a face (harmonic by default; see the module header).
    pub face_mean: FaceMean,
}

impl Default for FkOptions {
    fn default() -> Self {
        Self {
            phi_min: 1e-3,
            safety: 0.9,
            dt: None,
            isa: None,
            face_mean: FaceMean::Harmonic,
            scheme: Scheme::Euler,
            stages: None,
        }
    }
}

/// Explicit FV Fisher–KPP solver (see the module header for the scheme).
///
/// Methods by area: construction and read-outs here, `advance`/`state_at` in `step.rs`,
/// `set_fused_steps` in `blocking.rs`.
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
    /// The forward-Euler bound of the diffusion alone (rho = 0), which sizes the RKL2 stages.
    dt_diffusion: f64,
    scheme: Scheme,
    /// RKL2 stages per step (1 for Euler) and their coefficients.
    stages: usize,
    stage_coefs: Vec<rkl::StageCoef>,
    /// Work buffers of Strang–RKL2 steps (empty for Euler).
    work: rkl::Buffers,
    steps: u64,
    active: usize,
    /// Supported by this CPU (checked in `new`): the kernels rely on it.
    isa: Isa,
    /// Steps fused per sweep in 3D (temporal blocking); 1 = plain steps.
    fuse: usize,
    /// Plane ranges of the slabs swept in parallel by `fused_steps`, and their ring buffers.
    slabs: Vec<(usize, usize)>,
    rings: Vec<Vec<f64>>,
}

/// Euler's step: the caller's (at most dt_stable) or safety * dt_stable.
fn euler_dt(opts: FkOptions, dt_stable: f64) -> Result<f64> {
    match opts.dt {
        Some(dt) if dt > dt_stable => invalid(format!(
            "dt={dt} exceeds the stability bound dt_stable={dt_stable} (days)"
        )),
        Some(dt) => Ok(dt),
        None if dt_stable.is_finite() => Ok(opts.safety * dt_stable),
        // No diffusion and no reaction: nothing evolves, any step is exact.
        None => Ok(1.0),
    }
}

/// Strang–RKL2's step: the caller's, or rho dt = STRANG_RHO_DT (an accuracy choice, see the
/// module header; without reaction STRANG_NO_RHO_STEPS explicit bounds).
fn strang_dt(opts: FkOptions, rho: f64, dt_stable: f64) -> f64 {
    match opts.dt {
        Some(dt) => dt,
        None if rho > 0.0 => STRANG_RHO_DT / rho,
        None if dt_stable.is_finite() => STRANG_NO_RHO_STEPS * dt_stable,
        None => 1.0,
    }
}

/// RKL2 stages of a Strang step of size dt: the caller's (checked) or the fewest stable ones.
fn strang_stages(opts: FkOptions, dt: f64, dt_diffusion: f64) -> Result<usize> {
    match opts.stages {
        Some(s) if !(2..=MAX_STAGES).contains(&s) => invalid(format!(
            "stages must be in [2, {MAX_STAGES}], got {s}"
        )),
        Some(s) if dt > dt_diffusion * rkl2_reach(s) => invalid(format!(
            "dt={dt} exceeds the stability bound of {s} RKL2 stages, {} days (dt_diffusion={dt_diffusion})",
            dt_diffusion * rkl2_reach(s)
        )),
        Some(s) => Ok(s),
        None => rkl2_stages(dt, dt_diffusion, opts.safety).ok_or_else(|| {
            GbmError::InvalidInput(format!(
                "dt={dt} needs more than {MAX_STAGES} RKL2 stages (dt_diffusion={dt_diffusion}); take a smaller dt"
            ))
        }),
    }
}

/// Largest stable (monotone) time step in days (+inf if D = rho = 0) of the solver that
/// `FisherKpp::new` would build from these inputs, without building it: the same checks and the
/// same number, bit for bit. `diffusivity` (mm^2/day) and `phi` have the grid's shape; `rho` is in
/// 1/day; `phi_min` as in `FkOptions`.
pub fn stable_time_step(
    diffusivity: ArrayView3<f64>,
    phi: ArrayView3<f64>,
    grid: &Grid,
    rho: f64,
    phi_min: f64,
) -> Result<f64> {
    stable_time_step_with(diffusivity, phi, grid, rho, phi_min, FaceMean::Harmonic)
}

/// `stable_time_step` for a solver whose `FkOptions::face_mean` is `mean`.
pub fn stable_time_step_with(
    diffusivity: ArrayView3<f64>,
    phi: ArrayView3<f64>,
    grid: &Grid,
    rho: f64,
    phi_min: f64,
    mean: FaceMean,
) -> Result<f64> {
    Ok(Medium::new(diffusivity, phi, grid, rho, phi_min, mean)?.dt_stable)
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
        // The order of the checks fixes which message a caller sees first.
        let gshape = grid.shape;
        for (name, a) in [("u0", &u0), ("diffusivity", &diffusivity), ("phi", &phi)] {
            coefs::check_shape(name, a.shape(), &gshape)?;
        }
        coefs::check_rate_and_threshold(rho, opts.phi_min)?;
        if !(opts.safety > 0.0 && opts.safety <= 1.0) {
            return invalid(format!("safety must be in (0, 1], got {}", opts.safety));
        }
        if let Some(dt) = opts.dt {
            if !(dt.is_finite() && dt > 0.0) {
                return invalid(format!("dt must be finite and > 0, got {dt}"));
            }
        }
        let isa = match opts.isa {
            Some(isa) => isa.checked()?,
            None => Isa::detect(),
        };
        let u0 = u0.as_standard_layout();
        let u0s = u0.as_slice().ok_or_else(|| {
            GbmError::Numerical("internal: non-contiguous standard layout".into())
        })?;
        check_values("u0", u0s, 0.0, 1.0, 0.0)?;
        let Medium {
            coefs,
            active,
            dt_stable,
            dt_diffusion,
        } = Medium::new(diffusivity, phi, grid, rho, opts.phi_min, opts.face_mean)?;
        let dt = match opts.scheme {
            Scheme::Euler => euler_dt(opts, dt_stable)?,
            Scheme::StrangRkl2 => strang_dt(opts, rho, dt_stable),
        };
        let stages = match opts.scheme {
            Scheme::Euler => 1,
            Scheme::StrangRkl2 => strang_stages(opts, dt, dt_diffusion)?,
        };
        let stage_coefs = match opts.scheme {
            Scheme::Euler => Vec::new(),
            Scheme::StrangRkl2 => rkl::rkl2_coefs(stages, dt, rho),
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
            dt_diffusion,
            scheme: opts.scheme,
            stages,
            stage_coefs,
            work: rkl::Buffers::default(),
            steps: 0,
            active,
            isa,
            fuse: 1,
            slabs: Vec::new(),
            rings: Vec::new(),
        };
        s.set_fused_steps(DEFAULT_FUSE);
        Ok(s)
    }

    /// Time integrator.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// RKL2 stages per step (stencil sweeps per step; 1 for Euler).
    pub fn stages(&self) -> usize {
        self.stages
    }

    /// Forward-Euler bound of the diffusion alone, 1 / max_i sum_f A_f / phi_i (days; +inf
    /// without diffusion): `dt_stable` at rho = 0. RKL2 stages are counted in it.
    pub fn dt_diffusion(&self) -> f64 {
        self.dt_diffusion
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

    /// Cells a step updates: the sum of the lengths of the active line ranges (>= active cells).
    pub fn updated_cells(&self) -> usize {
        self.coefs
            .lines
            .iter()
            .map(|&(a, b)| (b - a) as usize)
            .sum()
    }

    /// Instruction set the cell update runs with.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Whole steps the main sequence can still take without passing time `t` (0 if t <= now).
    pub fn steps_until(&self, t: f64) -> u64 {
        whole_steps(t, self.dt).saturating_sub(self.steps)
    }

    /// Current state as a C-ordered slice of the grid's length (no copy).
    pub fn values(&self) -> &[f64] {
        &self.u
    }

    /// Current state as an array of the grid's shape.
    pub fn state(&self) -> Array3<f64> {
        self.to_array(self.u.clone())
    }

    fn to_array(&self, v: Vec<f64>) -> Array3<f64> {
        let s = self.grid.shape;
        // The length always equals the grid size (both come from the same grid).
        Array3::from_shape_vec((s[0], s[1], s[2]), v)
            .unwrap_or_else(|_| Array3::zeros((s[0], s[1], s[2])))
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{solver, synthetic};
    use super::*;

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
    fn stable_time_step_is_the_solvers_bound() {
        for (shape, rho) in [
            ([13usize, 11, 9], 0.3),
            ([21, 17, 1], 0.0),
            ([8, 9, 7], 2.5),
        ] {
            let (u0, d, mut phi) = synthetic(shape, 5.0);
            phi[[1, 1, 0]] = 0.0;
            let grid = Grid::new(shape, [1.0, 0.8, 1.25]).unwrap();
            for phi_min in [1e-3, 0.2] {
                let opts = FkOptions {
                    phi_min,
                    ..FkOptions::default()
                };
                let s = FisherKpp::new(u0.view(), d.view(), phi.view(), &grid, rho, opts).unwrap();
                let dt = stable_time_step(d.view(), phi.view(), &grid, rho, phi_min).unwrap();
                assert_eq!(dt.to_bits(), s.dt_stable().to_bits(), "{shape:?} {phi_min}");
            }
        }
        let zeros = Array3::zeros([4, 4, 4]);
        let grid = Grid::new([4, 4, 4], [1.0; 3]).unwrap();
        let ones = zeros.mapv(|v: f64| v + 1.0);
        let dt = stable_time_step(zeros.view(), ones.view(), &grid, 0.0, 1e-3);
        assert_eq!(dt.unwrap(), f64::INFINITY);
        assert!(stable_time_step(zeros.view(), zeros.view(), &grid, 0.1, 1e-3).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        let shape = [4usize, 5, 3];
        let grid = Grid::new(shape, [1.0; 3]).unwrap();
        let ones = Array3::from_elem(shape, 1.0);
        let half = Array3::from_elem(shape, 0.5);
        let o = FkOptions::default();
        type A = Array3<f64>;
        let msg = |u0: &A, d: &A, phi: &A, rho, opts| {
            let r = FisherKpp::new(u0.view(), d.view(), phi.view(), &grid, rho, opts);
            match r {
                Err(GbmError::InvalidInput(m)) => m,
                other => panic!("expected InvalidInput, got {other:?}"),
            }
        };
        let small = Array3::from_elem([4, 5, 2], 0.5);
        assert!(msg(&small, &ones, &ones, 0.1, o).contains("u0 has shape (4, 5, 2)"));
        assert_eq!(
            msg(&half, &ones, &ones, -1.0, o),
            "rho must be >= 0, got -1"
        );
        let zeros = Array3::zeros(shape);
        assert_eq!(
            msg(&half, &ones, &zeros, 0.1, o),
            "phi has no cell above phi_min=0.001: empty domain"
        );
        let mut bad = half.clone();
        bad[[1, 1, 1]] = f64::NAN;
        assert!(msg(&bad, &ones, &ones, 0.1, o).contains("u0 contains NaN"));
        bad[[1, 1, 1]] = 1.5;
        assert!(msg(&bad, &ones, &ones, 0.1, o).starts_with("u0 values must be [0, 1]"));
        let neg = half.mapv(|v| -v);
        assert!(msg(&half, &neg, &ones, 0.1, o).starts_with("diffusivity values"));
        let over = ones.mapv(|v| v * 1.01);
        assert!(msg(&half, &ones, &over, 0.1, o).starts_with("phi values"));
        let big_dt = FkOptions {
            dt: Some(10.0),
            ..o
        };
        assert!(msg(&half, &ones, &ones, 0.1, big_dt).contains("exceeds the stability bound"));
        let no_safety = FkOptions { safety: 0.0, ..o };
        assert!(msg(&half, &ones, &ones, 0.1, no_safety).contains("safety"));
    }
}
