//! Bilinear (2D) / trilinear (3D) interpolation of grid fields at arbitrary points, with the
//! exact gradient of the interpolant.
//!
//! Interpolant: the grid value `f[i,j,k]` sits at the voxel centre `x = (i*dx, j*dy, k*dz)` mm
//! (local coordinates, see `grid.rs`). Inside the cell `[i, i+1] x [j, j+1] (x [k, k+1])` with
//! local coordinates `tx = x/dx - i`, `ty = y/dy - j`, `tz = z/dz - k` in `[0, 1]`
//!
//! ```text
//!   I(x) = sum_{a,b,c in {0,1}} wx_a wy_b wz_c f[i+a, j+b, k+c],   w_0 = 1 - t, w_1 = t
//! ```
//!
//! (2D: `nz == 1`, the `z` factor is dropped). The gradient is the exact derivative of this
//! polynomial inside the cell, e.g.
//! `dI/dx = (1/dx) sum_{b,c} wy_b wz_c (f[i+1,j+b,k+c] - f[i,j+b,k+c])`.
//! On a cell face the interpolant is continuous but its derivative is not; there the cell on
//! the *upper* side is used (`i = floor(x/dx)`), except on the last grid plane `x = (nx-1) dx`,
//! which belongs to the last cell. Affine fields are reproduced exactly (to round-off), values
//! and gradients, and so is any field that is bilinear (trilinear) in the coordinates.
//!
//! Boundary: the interpolant lives on the box `[0, (nx-1)dx] x [0, (ny-1)dy] (x [0, (nz-1)dz])`.
//! A point outside the box along an axis is *clamped* to the box edge along that axis: it gets
//! the value of the nearest edge point and a zero derivative along that axis (the derivatives
//! along the other axes are those of the edge point). An axis with a single voxel (`n == 1`)
//! is constant along that axis (zero derivative). Points on the box faces are inside, and so are
//! points within `1e-9` voxel of a face (round-off in `(n-1)*h`); they are projected onto it.
//!
//! Units: points in mm; gradients in (field unit)/mm. Points are processed in parallel (rayon)
//! in fixed-size chunks; each output depends on its point only, so the result is independent of
//! the thread count.

use ndarray::{Array2, Array3, ArrayView2, ArrayView4};
use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::grid::Grid;

/// Points per rayon task.
const CHUNK: usize = 512;
/// Tolerance (in voxels) within which a point just outside a box face counts as on the face, so
/// that `x = (n-1)*h` computed in floating point (where `x/h` may exceed `n-1` by one ulp) keeps
/// the derivative of the last cell instead of being clamped.
const EDGE_TOL: f64 = 1e-9;

/// How many points ahead the corners of a cell are prefetched (random points on a 3D atlas miss
/// the caches: the loads, not the arithmetic, set the speed).
const PREFETCH_AHEAD: usize = 8;
/// Field stacks smaller than this (bytes) are served from the caches without prefetching.
const PREFETCH_MIN_BYTES: usize = 8 << 20;

/// Hint the CPU to pull `f[i]` (and, in 3D, its z-neighbour on the same line) into the cache.
/// A hint only: no effect on results; out-of-range indices are skipped.
#[inline(always)]
fn prefetch(f: &[f64], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = f.get(i) {
        // SAFETY: `x` is a valid reference; prefetching has no architectural effect.
        #[allow(unused_unsafe)]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (x as *const f64).cast::<i8>(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (f, i);
}

/// Position of a coordinate along one axis: lower voxel index, offset to the upper neighbour (in
/// elements; 0 on a single-voxel axis), weight of the upper neighbour and derivative factor
/// (1/h inside the box, 0 when clamped or on a single-voxel axis).
#[derive(Clone, Copy, Debug)]
struct AxisPos {
    base: usize,
    step: usize,
    t: f64,
    dfac: f64,
}

#[inline(always)]
fn locate(x: f64, n: usize, h: f64, stride: usize) -> AxisPos {
    if n == 1 {
        return AxisPos {
            base: 0,
            step: 0,
            t: 0.0,
            dfac: 0.0,
        };
    }
    let s = x / h;
    let last = (n - 1) as f64;
    if s < -EDGE_TOL {
        AxisPos {
            base: 0,
            step: stride,
            t: 0.0,
            dfac: 0.0,
        }
    } else if s > last + EDGE_TOL {
        AxisPos {
            base: (n - 2) * stride,
            step: stride,
            t: 1.0,
            dfac: 0.0,
        }
    } else {
        // 0 <= s <= n-1 after the clamp, so the cast is exact and in range.
        let s = s.clamp(0.0, last);
        let i = (s.floor() as usize).min(n - 2);
        AxisPos {
            base: i * stride,
            step: stride,
            t: s - i as f64,
            dfac: 1.0 / h,
        }
    }
}

/// Value and gradient of one field (a C-ordered slice of the grid's length) at one point.
/// `grad` receives `d = grid.ndim()` components.
#[inline(always)]
fn eval_one(f: &[f64], px: &AxisPos, py: &AxisPos, pz: Option<&AxisPos>, grad: &mut [f64]) -> f64 {
    match pz {
        None => {
            let b = px.base + py.base;
            let f00 = f[b];
            let f10 = f[b + px.step];
            let f01 = f[b + py.step];
            let f11 = f[b + px.step + py.step];
            let (tx, ty) = (px.t, py.t);
            // Interpolate along x on the two y-rows, then along y.
            let a0 = f00 + tx * (f10 - f00);
            let a1 = f01 + tx * (f11 - f01);
            grad[0] = px.dfac * ((1.0 - ty) * (f10 - f00) + ty * (f11 - f01));
            grad[1] = py.dfac * (a1 - a0);
            a0 + ty * (a1 - a0)
        }
        Some(pz) => {
            let b = px.base + py.base + pz.base;
            let (sx, sy, sz) = (px.step, py.step, pz.step);
            let f000 = f[b];
            let f100 = f[b + sx];
            let f010 = f[b + sy];
            let f110 = f[b + sx + sy];
            let f001 = f[b + sz];
            let f101 = f[b + sx + sz];
            let f011 = f[b + sy + sz];
            let f111 = f[b + sx + sy + sz];
            let (tx, ty, tz) = (px.t, py.t, pz.t);
            // Along x on the four (y, z) edges.
            let d00 = f100 - f000;
            let d10 = f110 - f010;
            let d01 = f101 - f001;
            let d11 = f111 - f011;
            let a00 = f000 + tx * d00;
            let a10 = f010 + tx * d10;
            let a01 = f001 + tx * d01;
            let a11 = f011 + tx * d11;
            // Along y on the two z faces.
            let b0 = a00 + ty * (a10 - a00);
            let b1 = a01 + ty * (a11 - a01);
            let dx0 = d00 + ty * (d10 - d00);
            let dx1 = d01 + ty * (d11 - d01);
            grad[0] = px.dfac * (dx0 + tz * (dx1 - dx0));
            grad[1] = py.dfac * ((a10 - a00) + tz * ((a11 - a01) - (a10 - a00)));
            grad[2] = pz.dfac * (b1 - b0);
            b0 + tz * (b1 - b0)
        }
    }
}

/// Locate a point (`d` coordinates in mm) on the grid.
#[inline(always)]
fn locate_point(grid: &Grid, p: &[f64]) -> (AxisPos, AxisPos, Option<AxisPos>) {
    let st = grid.strides();
    let px = locate(p[0], grid.shape[0], grid.spacing[0], st[0]);
    let py = locate(p[1], grid.shape[1], grid.spacing[1], st[1]);
    let pz = if grid.ndim() == 3 {
        Some(locate(p[2], grid.shape[2], grid.spacing[2], st[2]))
    } else {
        None
    };
    (px, py, pz)
}

/// Value of one field (C-ordered slice of length `grid.len()`) at one point `p` (`grid.ndim()`
/// coordinates, mm), with the clamping described in the module header. Used by the samplers.
#[inline]
pub fn value_at(f: &[f64], grid: &Grid, p: &[f64]) -> f64 {
    let (px, py, pz) = locate_point(grid, p);
    let mut g = [0.0; 3];
    eval_one(f, &px, &py, pz.as_ref(), &mut g)
}

/// Interpolate a stack of `C` fields at `N` points.
///
/// * `fields`: `(C, nx, ny, nz)` (`nz == 1` for 2D), any layout (copied once if not C-contiguous);
/// * `points`: `(N, d)` local mm, `d = grid.ndim()`, finite.
///
/// Returns `values (N, C)` and `grads (N, C, d)` (field unit per mm).
pub fn interpolate(
    fields: ArrayView4<'_, f64>,
    grid: &Grid,
    points: ArrayView2<'_, f64>,
) -> Result<(Array2<f64>, Array3<f64>)> {
    let d = grid.ndim();
    let sh = fields.shape();
    if sh[1..] != grid.shape[..] {
        return invalid(format!(
            "fields has grid shape {:?} but the grid is {:?}",
            &sh[1..],
            grid.shape
        ));
    }
    if points.ncols() != d {
        return invalid(format!(
            "points must have shape (N, {d}) for a {d}D grid, got (N, {})",
            points.ncols()
        ));
    }
    if !points.iter().all(|v| v.is_finite()) {
        return invalid("points contains NaN or Inf values");
    }
    let nc = sh[0];
    let n = points.nrows();
    let fields = fields.as_standard_layout();
    let flat: &[f64] = match fields.as_slice() {
        Some(s) => s,
        None => return invalid("fields could not be made contiguous"),
    };
    let len = grid.len();
    let points = points.as_standard_layout();
    let pts: &[f64] = match points.as_slice() {
        Some(s) => s,
        None => return invalid("points could not be made contiguous"),
    };

    // Prefetching only pays off when the stack does not fit in the caches (a 2D slice does).
    let use_prefetch = std::mem::size_of_val(flat) > PREFETCH_MIN_BYTES;
    let mut values = vec![0.0; n * nc];
    let mut grads = vec![0.0; n * nc * d];
    if n > 0 && nc > 0 {
        values
            .par_chunks_mut(CHUNK * nc)
            .zip(grads.par_chunks_mut(CHUNK * nc * d))
            .zip(pts.par_chunks(CHUNK * d))
            .for_each(|((vals, grs), ps)| {
                let np = ps.len() / d;
                for (q, p) in ps.chunks_exact(d).enumerate() {
                    if use_prefetch && q + PREFETCH_AHEAD < np {
                        let ahead = &ps[(q + PREFETCH_AHEAD) * d..(q + PREFETCH_AHEAD + 1) * d];
                        let (ax, ay, az) = locate_point(grid, ahead);
                        let b = ax.base + ay.base + az.map_or(0, |a| a.base);
                        for c in 0..nc {
                            let o = c * len + b;
                            prefetch(flat, o);
                            prefetch(flat, o + ax.step);
                            prefetch(flat, o + ay.step);
                            prefetch(flat, o + ax.step + ay.step);
                        }
                    }
                    let (px, py, pz) = locate_point(grid, p);
                    for c in 0..nc {
                        let f = &flat[c * len..(c + 1) * len];
                        let g = &mut grs[(q * nc + c) * d..(q * nc + c + 1) * d];
                        vals[q * nc + c] = eval_one(f, &px, &py, pz.as_ref(), g);
                    }
                }
            });
    }
    // A NaN/Inf anywhere in the cells actually used shows up in the outputs: checking them costs
    // O(N) instead of a pass over the whole (possibly 10^7-voxel) stack on every call.
    if let Some(q) = values
        .par_chunks(nc.max(1))
        .zip(grads.par_chunks((nc * d).max(1)))
        .position_first(|(v, g)| !v.iter().chain(g).all(|x| x.is_finite()))
    {
        return invalid(format!(
            "fields contains NaN or Inf values (or values too large) in the cell of point {q}"
        ));
    }
    let values = Array2::from_shape_vec((n, nc), values)
        .map_err(|e| crate::error::GbmError::Numerical(format!("internal shape error: {e}")))?;
    let grads = Array3::from_shape_vec((n, nc, d), grads)
        .map_err(|e| crate::error::GbmError::Numerical(format!("internal shape error: {e}")))?;
    Ok((values, grads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array4};

    /// Small deterministic generator for test points (SplitMix64).
    struct Sm(u64);
    impl Sm {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
        }
    }

    /// Fill a `(C, nx, ny, nz)` stack with `f_c(x, y, z)` evaluated at voxel centres.
    fn stack(grid: &Grid, fs: &[&dyn Fn(f64, f64, f64) -> f64]) -> Array4<f64> {
        let [nx, ny, nz] = grid.shape;
        let [dx, dy, dz] = grid.spacing;
        Array4::from_shape_fn((fs.len(), nx, ny, nz), |(c, i, j, k)| {
            fs[c](i as f64 * dx, j as f64 * dy, k as f64 * dz)
        })
    }

    fn random_points(grid: &Grid, n: usize, seed: u64, margin: f64) -> Array2<f64> {
        let d = grid.ndim();
        let mut r = Sm(seed);
        Array2::from_shape_fn((n, d), |(_, a)| {
            let l = (grid.shape[a] - 1) as f64 * grid.spacing[a];
            -margin + (l + 2.0 * margin) * r.next()
        })
    }

    #[test]
    fn affine_exact_2d_and_3d_anisotropic() {
        // 2D: two affine fields
        let g2 = Grid::new([7, 11, 1], [0.7, 1.3, 1.0]).unwrap();
        let f1 = |x: f64, y: f64, _z: f64| 0.3 + 1.7 * x - 0.4 * y;
        let f2 = |x: f64, y: f64, _z: f64| -2.0 * x + 5.0 * y + 1.0;
        let s = stack(&g2, &[&f1, &f2]);
        let p = random_points(&g2, 500, 1, 0.0);
        let (v, gr) = interpolate(s.view(), &g2, p.view()).unwrap();
        for q in 0..p.nrows() {
            let (x, y) = (p[[q, 0]], p[[q, 1]]);
            assert!((v[[q, 0]] - f1(x, y, 0.0)).abs() < 1e-12);
            assert!((v[[q, 1]] - f2(x, y, 0.0)).abs() < 1e-12);
            assert!((gr[[q, 0, 0]] - 1.7).abs() < 1e-12 && (gr[[q, 0, 1]] + 0.4).abs() < 1e-12);
            assert!((gr[[q, 1, 0]] + 2.0).abs() < 1e-12 && (gr[[q, 1, 1]] - 5.0).abs() < 1e-12);
        }
        // 3D
        let g3 = Grid::new([5, 6, 9], [0.9, 1.2, 0.5]).unwrap();
        let f3 = |x: f64, y: f64, z: f64| 1.0 + 0.5 * x - 1.5 * y + 2.5 * z;
        let s = stack(&g3, &[&f3]);
        let p = random_points(&g3, 500, 2, 0.0);
        let (v, gr) = interpolate(s.view(), &g3, p.view()).unwrap();
        for q in 0..p.nrows() {
            let (x, y, z) = (p[[q, 0]], p[[q, 1]], p[[q, 2]]);
            assert!((v[[q, 0]] - f3(x, y, z)).abs() < 1e-12);
            for (a, e) in [0.5, -1.5, 2.5].iter().enumerate() {
                assert!(
                    (gr[[q, 0, a]] - e).abs() < 1e-12,
                    "{:?}",
                    gr.index_axis(ndarray::Axis(0), q)
                );
            }
        }
    }

    #[test]
    fn prefetch_path_large_stack_affine_exact() {
        // 2 x 90^3 doubles = 11.7 MB > PREFETCH_MIN_BYTES: exercises the prefetching loop.
        let g = Grid::new([90, 90, 90], [0.9, 1.1, 1.0]).unwrap();
        let f1 = |x: f64, y: f64, z: f64| 2.0 - 0.3 * x + 0.7 * y + 0.1 * z;
        let f2 = |x: f64, y: f64, z: f64| x - y - z;
        let s = stack(&g, &[&f1, &f2]);
        assert!(s.len() * 8 > PREFETCH_MIN_BYTES);
        let p = random_points(&g, 5000, 5, 3.0);
        let (v, gr) = interpolate(s.view(), &g, p.view()).unwrap();
        let hi = [89.0 * 0.9, 89.0 * 1.1, 89.0];
        for q in 0..p.nrows() {
            // clamp to the box as documented, and zero slope along clamped axes
            let x: Vec<f64> = (0..3).map(|a| p[[q, a]].clamp(0.0, hi[a])).collect();
            let inside: Vec<f64> = (0..3)
                .map(|a| {
                    if (0.0..=hi[a]).contains(&p[[q, a]]) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            assert!((v[[q, 0]] - f1(x[0], x[1], x[2])).abs() < 1e-12);
            assert!((v[[q, 1]] - f2(x[0], x[1], x[2])).abs() < 1e-12);
            for (a, (e1, e2)) in [(-0.3, 1.0), (0.7, -1.0), (0.1, -1.0)].iter().enumerate() {
                assert!((gr[[q, 0, a]] - e1 * inside[a]).abs() < 1e-12);
                assert!((gr[[q, 1, a]] - e2 * inside[a]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn trilinear_monomial_exact() {
        // xyz is trilinear: reproduced exactly with gradient (yz, xz, xy).
        let g = Grid::new([4, 5, 6], [1.1, 0.6, 0.8]).unwrap();
        let s = stack(&g, &[&|x, y, z| x * y * z]);
        let p = random_points(&g, 300, 3, 0.0);
        let (v, gr) = interpolate(s.view(), &g, p.view()).unwrap();
        for q in 0..p.nrows() {
            let (x, y, z) = (p[[q, 0]], p[[q, 1]], p[[q, 2]]);
            assert!((v[[q, 0]] - x * y * z).abs() < 1e-12);
            assert!((gr[[q, 0, 0]] - y * z).abs() < 1e-12);
            assert!((gr[[q, 0, 1]] - x * z).abs() < 1e-12);
            assert!((gr[[q, 0, 2]] - x * y).abs() < 1e-12);
        }
    }

    #[test]
    fn grid_values_and_clamping() {
        let g = Grid::new([4, 3, 1], [2.0, 0.5, 1.0]).unwrap();
        let s = stack(&g, &[&|x, y, _| (x * 3.1).sin() + y * y]);
        // voxel centres reproduce the data
        let mut pts = Vec::new();
        for i in 0..4 {
            for j in 0..3 {
                pts.extend([i as f64 * 2.0, j as f64 * 0.5]);
            }
        }
        let p = Array2::from_shape_vec((12, 2), pts).unwrap();
        let (v, _) = interpolate(s.view(), &g, p.view()).unwrap();
        for q in 0..12 {
            assert_eq!(v[[q, 0]], s[[0, q / 3, q % 3, 0]]);
        }
        // outside along x (left) and y (above): value of the edge point, derivative 0 there
        let p = Array2::from_shape_vec((2, 2), vec![-5.0, 0.7, 3.0, 9.0]).unwrap();
        let edge = Array2::from_shape_vec((2, 2), vec![0.0, 0.7, 3.0, 1.0]).unwrap();
        let (v, gr) = interpolate(s.view(), &g, p.view()).unwrap();
        let (ve, ge) = interpolate(s.view(), &g, edge.view()).unwrap();
        assert_eq!(v, ve);
        assert_eq!(gr[[0, 0, 0]], 0.0);
        assert_eq!(gr[[0, 0, 1]], ge[[0, 0, 1]]);
        assert_eq!(gr[[1, 0, 1]], 0.0);
        assert_eq!(gr[[1, 0, 0]], ge[[1, 0, 0]]);
        assert!(ge[[0, 0, 0]] != 0.0 && ge[[1, 0, 1]] != 0.0);
    }

    #[test]
    fn thread_count_independent_and_rejects_bad_points() {
        let g = Grid::new([9, 8, 7], [1.0, 1.0, 1.0]).unwrap();
        let s = stack(&g, &[&|x, y, z| (x * y).cos() + z]);
        let p = random_points(&g, 3000, 4, 2.0);
        let a = interpolate(s.view(), &g, p.view()).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| interpolate(s.view(), &g, p.view()).unwrap());
        assert_eq!(a, b);
        let bad = Array2::from_shape_vec((1, 3), vec![0.0, f64::NAN, 0.0]).unwrap();
        assert!(interpolate(s.view(), &g, bad.view()).is_err());
        let wrong_d = Array2::<f64>::zeros((1, 2));
        assert!(interpolate(s.view(), &g, wrong_d.view()).is_err());
    }
}
