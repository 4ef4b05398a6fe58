//! Temporal blocking of the Strang–RKL2 step in 3D (see `rkl.rs` for the scheme, `blocking.rs`
//! for the same idea applied to Euler steps).
//!
//! The s + 1 levels of one step (level 0 = Y0 = R(tau/2) u, pointwise; level j = stage j; level s
//! written to `out`) are computed in one sweep over x: at wave p a slab computes level l of plane
//! p - l. A stage reads the stencil of level j - 1, the centre of level j - 2, and the centres of
//! levels 0 and 1, so levels 2..s-1 live in rings of three planes and levels 0 and 1 in rings of
//! s + 2 planes (their plane q is read until level s reaches it, s waves later). Level l is
//! computed on the slab widened by s - l planes on each side (a recomputed halo), so slabs are
//! independent and run in parallel. Every cell value comes from the same formula and the same
//! inputs as in the plain step `rkl::strang_step`, so the two are bit-identical (tested).
//!
//! Memory traffic per step: u read once, the result written once, the coefficients once per
//! wave window; the plain step streams 4-5 arrays per stage instead.

use rayon::prelude::*;

use super::coefs::Coefs;
use super::rkl::{react, stage_kernel, Centre, StageCoef};
use super::simd::{Isa, Src};

/// Planes of the ring buffer of one slab for s stages (levels 0 and 1: s + 2 planes each; levels
/// 2..s-1: three each).
pub(super) fn ring_planes(s: usize) -> usize {
    2 * (s + 2) + 3 * s.saturating_sub(2)
}

/// Offset (in planes) of plane `q` of level `m` (0 <= m < s) in a slab's ring.
#[inline]
fn slot(m: usize, q: usize, s: usize) -> usize {
    let deep = s + 2;
    match m {
        0 => q % deep,
        1 => deep + q % deep,
        _ => 2 * deep + 3 * (m - 2) + q % 3,
    }
}

/// One Strang–RKL2 step from `u` into `out` by temporal blocking (3D only). `sc` are the stages
/// (`rkl::rkl2_coefs`), `r` the half-reaction factors, `rings[i]` holds `ring_planes(s)` planes
/// for slab `slabs[i]`. `isa` must be supported by this CPU.
#[allow(clippy::too_many_arguments)]
pub(super) fn fused_strang_step(
    c: &Coefs,
    u: &[f64],
    out: &mut [f64],
    rings: &mut [Vec<f64>],
    slabs: &[(usize, usize)],
    sc: &[StageCoef],
    r: Option<(f64, f64)>,
    isa: Isa,
) {
    let [_, n1, n2] = c.n;
    let plane = n1 * n2;
    let chunks = super::blocking::slab_chunks(out, rings, slabs, plane);
    chunks
        .into_par_iter()
        .for_each(|(o, ring, range)| slab(c, u, o, ring, range, sc, r, isa));
}

/// The sweep of one slab `[i0, i1)` (see `fused_strang_step`).
#[allow(clippy::too_many_arguments)]
fn slab(
    c: &Coefs,
    u: &[f64],
    o: &mut [f64],
    ring: &mut [f64],
    (i0, i1): (usize, usize),
    sc: &[StageCoef],
    r: Option<(f64, f64)>,
    isa: Isa,
) {
    let [n0, n1, n2] = c.n;
    let plane = n1 * n2;
    let s = sc.len();
    let (i0s, i1s, ss, n0s) = (i0 as isize, i1 as isize, s as isize, n0 as isize);
    for p in (i0s - ss)..(i1s + ss) {
        for l in 0..=s {
            let q = p - l as isize;
            let halo = ss - l as isize;
            if q < (i0s - halo).max(0) || q >= (i1s + halo).min(n0s) {
                continue;
            }
            let q = q as usize;
            if l == 0 {
                let d = slot(0, q, s) * plane;
                let dst = &mut ring[d..d + plane];
                let src = &u[q * plane..(q + 1) * plane];
                match r {
                    Some(r) => dst.iter_mut().zip(src).for_each(|(a, &b)| *a = react(b, r)),
                    None => dst.copy_from_slice(src),
                }
                continue;
            }
            // Sources lie before the destination in the ring (levels 0, 1, then 2..): split there.
            let dest = if l < s {
                slot(l, q, s) * plane
            } else {
                ring.len()
            };
            let (before, after) = ring.split_at_mut(dest);
            let before: &[f64] = before;
            let pl = |m: usize, qq: usize| {
                let a = slot(m, qq, s) * plane;
                &before[a..a + plane]
            };
            let cc = pl(l - 1, q);
            let src = Src {
                xm: if q > 0 { pl(l - 1, q - 1) } else { cc },
                c: cc,
                xp: if q + 1 < n0 { pl(l - 1, q + 1) } else { cc },
            };
            let y0 = pl(0, q);
            let ctr = if l == 1 {
                Centre {
                    y2: Some(y0),
                    y0,
                    y1: y0,
                }
            } else {
                Centre {
                    y2: Some(pl(l - 2, q)),
                    y0,
                    y1: pl(1, q),
                }
            };
            let dst = if l < s {
                &mut after[..plane]
            } else {
                &mut o[(q - i0) * plane..(q - i0 + 1) * plane]
            };
            stage_kernel(isa, c, src, ctr, dst, q, 0, &sc[l - 1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{solver, synthetic};
    use super::super::{FkOptions, Scheme};

    #[test]
    fn fused_strang_steps_are_bit_identical_to_plain_ones() {
        // Stage counts 2, 3, 4 and 7 (dt), several slabs with recomputed halos, tissue against the
        // box edge, an inactive hole, with and without reaction.
        for shape in [[31usize, 9, 11], [40, 6, 3], [9, 5, 40]] {
            let (u0, d, mut phi) = synthetic(shape, 6.0);
            phi[[0, 2, 2]] = 0.9;
            phi[[shape[0] / 2, 4, 1]] = 0.0;
            for (dt, rho) in [(0.9, 0.2), (2.5, 0.2), (3.5, 0.0), (14.0, 0.2)] {
                let o = FkOptions {
                    scheme: Scheme::StrangRkl2,
                    dt: Some(dt),
                    ..FkOptions::default()
                };
                let mut plain = solver(shape, &d, &phi, &u0, rho, o);
                plain.set_fused_steps(1);
                plain.advance(5);
                for n_slabs in [1, 2, 3] {
                    let mut f = solver(shape, &d, &phi, &u0, rho, o);
                    f.configure_strang_fusion(n_slabs);
                    assert!(f.fuse > 1 && f.work.is_empty());
                    f.advance(5);
                    let msg = format!("{shape:?} dt {dt} s {} slabs {:?}", f.stages(), f.slabs);
                    assert_eq!(f.state(), plain.state(), "{msg}");
                    // state_at runs plain steps on a copy: the same bits as the fused next step.
                    let next = f.state_at(f.t() + f.dt()).unwrap();
                    f.advance(1);
                    assert_eq!(next, f.state(), "{msg}");
                }
            }
        }
    }
}
