//! Temporal blocking of the explicit FV Fisher–KPP steps in 3D (see `mod.rs`).
//!
//! k steps are fused into one sweep over x: at wave p a slab computes level 1 (after one step) of
//! plane p, level 2 of plane p - 1, ..., level k of plane p - k + 1. The intermediate levels live
//! in per-slab ring buffers of three planes per level, so the state and the coefficients stream
//! from memory once per k steps instead of once per step (~44/k instead of 44 bytes per cell and
//! step). Slabs of planes, balanced by active cells, run in parallel; level l is computed on the
//! slab widened by k - l planes on each side (a recomputed halo), so slabs are independent. Every
//! cell value comes from the same formula (`simd.rs`) and the same inputs as in a plain step
//! (`step.rs`), so fused and plain runs are bit-identical.

use rayon::prelude::*;

use super::coefs::Coefs;
use super::rkl::Buffers;
use super::rkl_blocking::ring_planes;
use super::simd::{plane_kernel, Isa, Src};
use super::step::src_of;
use super::{FisherKpp, Scheme, PAR_MIN_CELLS};

impl FisherKpp {
    /// Number of steps fused into one sweep over memory in 3D (temporal blocking, see
    /// `fused_steps`); 1 disables it. Results are bit-identical for every value; only speed
    /// changes. 2D problems (which fit in cache) always take plain steps. Strang–RKL2: any k > 1
    /// fuses the stages of each step (`rkl_blocking.rs`), 1 runs them as plain sweeps.
    pub fn set_fused_steps(&mut self, k: usize) {
        let [n0, n1, n2] = self.coefs.n;
        let k = k.max(1);
        if n0 == 1 || k == 1 {
            self.fuse = 1;
            self.slabs.clear();
            self.rings.clear();
            if self.scheme == Scheme::StrangRkl2 && self.work.is_empty() {
                self.work = Buffers::new(self.u.len());
            }
            return;
        }
        let cells = n0 * n1 * n2;
        if self.scheme == Scheme::StrangRkl2 {
            // One slab per thread: a slab's rings hold ~3 s planes, the L3 holds few of them.
            let n_slabs = if cells >= PAR_MIN_CELLS {
                rayon::current_num_threads()
            } else {
                1
            };
            self.configure_strang_fusion(n_slabs.min(n0 / (4 * self.stages)).max(1));
            return;
        }
        let n_slabs = if cells >= PAR_MIN_CELLS {
            2 * rayon::current_num_threads()
        } else {
            1
        };
        // Keep slabs much thicker than their recomputed halo (k - 1 planes per side).
        self.configure_fusion(k, n_slabs.min(n0 / (4 * k)).max(1));
    }

    /// Strang–RKL2 steps by temporal blocking over `n_slabs` slabs (3D only; `rkl_blocking.rs`).
    pub(super) fn configure_strang_fusion(&mut self, n_slabs: usize) {
        let [_, n1, n2] = self.coefs.n;
        self.fuse = self.stages + 1;
        self.slabs = balanced_slabs(&self.coefs, n_slabs);
        self.rings = vec![vec![0.0; ring_planes(self.stages) * n1 * n2]; self.slabs.len()];
        self.work = Buffers::default();
    }

    /// Fuse `k` >= 2 steps per sweep over `n_slabs` slabs (3D only).
    pub(super) fn configure_fusion(&mut self, k: usize, n_slabs: usize) {
        let [_, n1, n2] = self.coefs.n;
        self.fuse = k;
        self.slabs = balanced_slabs(&self.coefs, n_slabs);
        self.rings = vec![vec![0.0; (k - 1) * 3 * n1 * n2]; self.slabs.len()];
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
/// coefficients. `isa` must be supported by this CPU.
#[allow(clippy::too_many_arguments)]
pub(super) fn fused_steps(
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
    let chunks = slab_chunks(out, rings, slabs, plane);
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

/// `out` split into the slabs' plane ranges (contiguous, in order), each with its ring buffer
/// and its plane range, ready for a parallel iterator.
#[allow(clippy::type_complexity)]
pub(super) fn slab_chunks<'a>(
    out: &'a mut [f64],
    rings: &'a mut [Vec<f64>],
    slabs: &[(usize, usize)],
    plane: usize,
) -> Vec<(&'a mut [f64], &'a mut Vec<f64>, (usize, usize))> {
    let mut chunks = Vec::with_capacity(slabs.len());
    let mut rest = out;
    let mut at = 0usize;
    for (&(i0, i1), ring) in slabs.iter().zip(rings.iter_mut()) {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut((i0 - at) * plane);
        let (mine, tail) = tail.split_at_mut((i1 - i0) * plane);
        chunks.push((mine, ring, (i0, i1)));
        rest = tail;
        at = i1;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{solver, synthetic};
    use super::super::FkOptions;

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
}
