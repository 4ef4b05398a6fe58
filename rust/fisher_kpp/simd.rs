//! The cell update of the FV Fisher–KPP scheme and its compilations per instruction set.
//!
//! One cell i with neighbours j over its faces f (x-, x+, y-, y+, z+, z-) and A_f = a_f / h_f^2:
//!
//! ```text
//!     u_i <- u_i + tau (w_i sum_f A_f (u_j - u_i) + rho u_i (1 - u_i)),   w_i = 1/phi_i,
//!     then 0 if the result is below FLUSH (1e-200).
//! ```
//!
//! At the box edge the missing neighbour is the cell itself (u_j - u_i = 0: no flux); at an
//! inactive neighbour A_f = 0. `update_block` applies this to the active range of each line of a
//! block of lines; the same source is compiled three times, for the baseline target (`Scalar`:
//! SSE2 on x86-64, the only one elsewhere), AVX2 and AVX-512F, and `plane_kernel` picks one. The
//! formula has no fused multiply-add and a fixed order of operations, so every ISA gives
//! bit-identical results (tested below and in tests/test_simd_paths.py). The best ISA is detected
//! at run time (`Isa::detect`); `FkOptions::isa` forces one (refused if the CPU lacks it).

use super::coefs::Coefs;
use super::FLUSH;
use crate::error::{invalid, Result};

/// Instruction set the cell update runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// The baseline target features of the build (SSE2 on x86-64); always available.
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Every ISA name `Isa::parse` knows, best first (available or not on this CPU and build).
pub const ISA_NAMES: [&str; 3] = ["avx512", "avx2", "scalar"];

impl Isa {
    /// Lower-case name: "avx512", "avx2" or "scalar".
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this CPU runs it.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
        }
    }

    /// The ISAs this CPU supports, best first (always ends with `Scalar`).
    pub fn available() -> Vec<Isa> {
        let all = [
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2,
            Isa::Scalar,
        ];
        all.into_iter().filter(|i| i.is_supported()).collect()
    }

    /// The best ISA this CPU supports.
    pub fn detect() -> Isa {
        Isa::available().first().copied().unwrap_or(Isa::Scalar)
    }

    /// `self` if this CPU supports it, else an `InvalidInput` error naming it.
    pub fn checked(self) -> Result<Isa> {
        if self.is_supported() {
            Ok(self)
        } else {
            unsupported(self.name())
        }
    }

    /// Parse "auto" (`None`: detect), "avx512", "avx2" or "scalar"; an ISA this CPU (or this
    /// build's architecture) lacks, or an unknown name, is an `InvalidInput` error naming it.
    pub fn parse(name: &str) -> Result<Option<Isa>> {
        if name == "auto" {
            return Ok(None);
        }
        if let Some(isa) = Isa::available().into_iter().find(|i| i.name() == name) {
            return Ok(Some(isa));
        }
        if ISA_NAMES.contains(&name) {
            return unsupported(name);
        }
        invalid(format!(
            "isa must be one of 'auto', {}; got '{name}'",
            ISA_NAMES.map(|n| format!("'{n}'")).join(", ")
        ))
    }
}

fn unsupported<T>(name: &str) -> Result<T> {
    let have: Vec<&str> = Isa::available().into_iter().map(Isa::name).collect();
    invalid(format!(
        "isa '{name}' is not supported by this CPU (available: {})",
        have.join(", ")
    ))
}

/// The three planes of the source state that plane `i` of the next state reads: x-1, x, x+1.
/// At the box edge the missing plane is replaced by the centre plane (u_j - u_i = 0: no flux).
#[derive(Clone, Copy)]
pub(super) struct Src<'a> {
    pub xm: &'a [f64],
    pub c: &'a [f64],
    pub xp: &'a [f64],
}

/// Update lines `j0 .. j0 + out.len() / n2` of plane `i` from `src` with the given ISA, which
/// must be supported by this CPU (`FisherKpp::new` checks it).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn plane_kernel(
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
        Isa::Scalar => update_block(c, src, out, i, j0, tau, rho),
        // SAFETY: the solver only holds an ISA that `Isa::is_supported` confirmed at run time.
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
    let n2 = c.n[2];
    for (jj, orow) in out.chunks_exact_mut(n2).enumerate() {
        let Some((lines, k0, k1)) = Lines::of(c, src, i, j0 + jj) else {
            continue;
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
pub(super) struct Lines<'a> {
    pub uc: &'a [f64],
    pub uxm: &'a [f64],
    pub uxp: &'a [f64],
    pub uym: &'a [f64],
    pub uyp: &'a [f64],
    pub axm: &'a [f32],
    pub axp: &'a [f32],
    pub aym: &'a [f32],
    pub ayp: &'a [f32],
    /// a_f/h^2 towards +z; the -z face of k is az[k - 1].
    pub az: &'a [f32],
    pub w: &'a [f64],
}

/// sum_f A_f (u_j - u_i) of one cell, in a fixed order (no FMA): the same bits on every ISA.
#[inline(always)]
pub(super) fn flux(uc: f64, nb: [f64; 6], a: [f32; 6]) -> f64 {
    a[0] as f64 * (nb[0] - uc)
        + a[1] as f64 * (nb[1] - uc)
        + a[2] as f64 * (nb[2] - uc)
        + a[3] as f64 * (nb[3] - uc)
        + a[4] as f64 * (nb[4] - uc)
        + a[5] as f64 * (nb[5] - uc)
}

/// The update formula of one cell (shared by the vector loop and the edge cells).
#[inline(always)]
fn formula(uc: f64, nb: [f64; 6], a: [f32; 6], w: f64, tau: f64, rho: f64) -> f64 {
    let v = uc + tau * (w * flux(uc, nb, a) + rho * uc * (1.0 - uc));
    if v < FLUSH {
        0.0
    } else {
        v
    }
}

impl<'a> Lines<'a> {
    /// The slices of line `j` of plane `i` and its active range `[k0, k1)`; `None` if the line
    /// has no active cell. Missing neighbours (box edge): the source line is the centre line
    /// itself, so u_j - u_i is exactly 0 whatever coefficient is paired with it.
    #[inline(always)]
    pub(super) fn of(
        c: &'a Coefs,
        src: Src<'a>,
        i: usize,
        j: usize,
    ) -> Option<(Self, usize, usize)> {
        let [n0, n1, n2] = c.n;
        let (s0, s1) = (n1 * n2, n2);
        let (k0, k1) = c.lines[i * n1 + j];
        let (k0, k1) = (k0 as usize, k1 as usize);
        if k0 == k1 {
            return None;
        }
        let l = j * s1; // start of line j within a plane
        let q = i * s0 + l; // start of line (i, j) in the whole array
        let uc = &src.c[l..l + n2];
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
        let lines = Lines {
            uc,
            uxm: &src.xm[l..l + n2],
            uxp: &src.xp[l..l + n2],
            uym,
            uyp,
            axm,
            axp,
            aym,
            ayp: &c.ay[q..q + n2],
            az: &c.az[q..q + n2],
            w: &c.inv_phi[q..q + n2],
        };
        Some((lines, k0, k1))
    }

    /// w_i sum_f A_f (u_j - u_i) of cell `k` with z-neighbours `kp` (+z) and `km` (-z) (equal to
    /// `k` at the box edge).
    #[inline(always)]
    pub(super) fn wflux(&self, k: usize, kp: usize, km: usize) -> f64 {
        let azm = if km < k { self.az[km] } else { 0.0 };
        let azp = if kp > k { self.az[k] } else { 0.0 };
        let nb = [
            self.uxm[k],
            self.uxp[k],
            self.uym[k],
            self.uyp[k],
            self.uc[kp],
            self.uc[km],
        ];
        let a = [self.axm[k], self.axp[k], self.aym[k], self.ayp[k], azp, azm];
        self.w[k] * flux(self.uc[k], nb, a)
    }

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
    use super::super::testutil::{solver, synthetic};
    use super::super::{FisherKpp, FkOptions};
    use super::*;
    use crate::error::GbmError;
    use crate::grid::Grid;

    /// Plain and fused runs with every ISA this CPU has are bit-identical to plain scalar steps.
    #[test]
    fn every_isa_matches_the_scalar_path() {
        for shape in [[19usize, 13, 21], [33, 29, 1]] {
            let (u0, d, mut phi) = synthetic(shape, 7.0);
            // Holes of inactive cells, one against the box edge.
            phi[[shape[0] / 2, 6, 0]] = 0.0;
            phi[[0, 5, 0]] = 1e-4;
            let opts = |isa| FkOptions {
                isa: Some(isa),
                ..FkOptions::default()
            };
            let mut reference = solver(shape, &d, &phi, &u0, 0.3, opts(Isa::Scalar));
            reference.set_fused_steps(1);
            reference.advance(29);
            let partial = reference
                .state_at(reference.t() + 0.4 * reference.dt())
                .unwrap();
            for isa in Isa::available() {
                for fuse in [1, 3] {
                    let mut s = solver(shape, &d, &phi, &u0, 0.3, opts(isa));
                    assert_eq!(s.isa(), isa);
                    if fuse > 1 && shape[2] > 1 {
                        s.configure_fusion(fuse, 2);
                    }
                    s.advance(29);
                    assert_eq!(
                        s.state(),
                        reference.state(),
                        "{shape:?} {isa:?} fuse {fuse}"
                    );
                    let p = s.state_at(s.t() + 0.4 * s.dt()).unwrap();
                    assert_eq!(p, partial, "{shape:?} {isa:?} fuse {fuse}");
                }
            }
        }
    }

    #[test]
    fn isa_names_parse_and_unsupported_ones_are_refused() {
        assert_eq!(Isa::parse("auto").unwrap(), None);
        assert_eq!(Isa::parse("scalar").unwrap(), Some(Isa::Scalar));
        assert_eq!(Isa::available().last(), Some(&Isa::Scalar));
        assert_eq!(Isa::detect(), Isa::available()[0]);
        for isa in Isa::available() {
            assert_eq!(Isa::parse(isa.name()).unwrap(), Some(isa));
        }
        let msg = |r: Result<Option<Isa>>| match r {
            Err(GbmError::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        };
        assert!(msg(Isa::parse("neon")).contains("got 'neon'"));
        for name in ISA_NAMES {
            if !Isa::available().iter().any(|i| i.name() == name) {
                assert!(msg(Isa::parse(name)).starts_with(&format!("isa '{name}' is not")));
            }
        }
        // The solver holds the ISA it was given, or the best one by default.
        let shape = [5usize, 4, 3];
        let (u0, d, phi) = synthetic(shape, 2.0);
        let grid = Grid::new(shape, [1.0; 3]).unwrap();
        let s = FisherKpp::new(
            u0.view(),
            d.view(),
            phi.view(),
            &grid,
            0.1,
            FkOptions::default(),
        );
        assert_eq!(s.unwrap().isa(), Isa::detect());
    }

    #[test]
    fn formula_flushes_tiny_values() {
        let a = [1.0f32; 6];
        assert_eq!(formula(0.5, [0.5; 6], a, 1.0, 0.1, 0.0), 0.5);
        assert_eq!(formula(1e-250, [0.0; 6], [0.0; 6], 1.0, 0.1, 0.0), 0.0);
        // Reaction only: u + tau rho u (1 - u).
        assert_eq!(
            formula(0.5, [0.5; 6], a, 1.0, 0.1, 2.0),
            0.5 + 0.1 * (2.0 * 0.5 * 0.5)
        );
    }
}
