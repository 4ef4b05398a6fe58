//! A regular Cartesian grid shared by every kernel.
//!
//! Arrays are C-contiguous `(nx, ny, nz)`; a 2D problem is stored with `nz == 1` and has no
//! z-neighbours (no z-flux, zero z-gradient). Coordinates used by the kernels are *local*
//! millimetres: the centre of voxel `(i, j, k)` sits at `(i*dx, j*dy, k*dz)`. Mapping to scanner
//! (world) coordinates through the NIfTI affine is done in Python.

use crate::error::{invalid, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Number of voxels along x, y, z (`shape[2] == 1` for 2D).
    pub shape: [usize; 3],
    /// Voxel size along x, y, z in mm (`spacing[2]` is ignored for 2D).
    pub spacing: [f64; 3],
}

impl Grid {
    pub fn new(shape: [usize; 3], spacing: [f64; 3]) -> Result<Self> {
        if shape.contains(&0) {
            return invalid(format!("grid shape {shape:?} has an empty axis"));
        }
        if spacing.iter().any(|&h| !(h.is_finite() && h > 0.0)) {
            return invalid(format!(
                "grid spacing {spacing:?} must be finite and positive (mm)"
            ));
        }
        Ok(Self { shape, spacing })
    }

    /// Spatial dimension: 2 when `nz == 1`, else 3.
    pub fn ndim(&self) -> usize {
        if self.shape[2] == 1 {
            2
        } else {
            3
        }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Linear index of voxel `(i, j, k)` in C order.
    #[inline(always)]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        (i * self.shape[1] + j) * self.shape[2] + k
    }

    /// Strides (in elements) of the C-ordered array along x, y, z.
    pub fn strides(&self) -> [usize; 3] {
        [self.shape[1] * self.shape[2], self.shape[2], 1]
    }

    /// Volume of one voxel (area in 2D), in mm^3 (mm^2).
    pub fn cell_volume(&self) -> f64 {
        if self.ndim() == 2 {
            self.spacing[0] * self.spacing[1]
        } else {
            self.spacing[0] * self.spacing[1] * self.spacing[2]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_grids() {
        assert!(Grid::new([0, 2, 2], [1.0; 3]).is_err());
        assert!(Grid::new([2, 2, 2], [1.0, -1.0, 1.0]).is_err());
        assert!(Grid::new([2, 2, 2], [1.0, f64::NAN, 1.0]).is_err());
    }

    #[test]
    fn index_matches_c_order() {
        let g = Grid::new([3, 4, 5], [1.0; 3]).unwrap();
        assert_eq!(g.index(2, 3, 4), 3 * 4 * 5 - 1);
        assert_eq!(g.strides(), [20, 5, 1]);
        assert_eq!(Grid::new([3, 4, 1], [1.0; 3]).unwrap().ndim(), 2);
    }
}
