"""Brain geometry: tissue maps, brain mask, the cropped box Omega_R, phase field and diffusivity.

Conventions
-----------
* Input maps are reoriented to RAS+ (:func:`gbm.io.load_nifti`); white/gray (and optional CSF) maps
  are probabilities in [0, 1] (uint8 0..255 maps are scaled by 1/255).
* Brain mask: ``wm + gm >= 0.5`` (and, when a CSF map is given, ``wm + gm > csf``), the binary
  segmentation of combined gray and white matter that the paper's Cahn-Hilliard solve starts from.
* The box Omega_R is the mask's bounding box grown by ``margin`` voxels (clipped to the image).
* *Local* coordinates (what the Rust core and the PINN use) are millimetres in the box: the centre of
  box voxel ``(i, j[, k])`` is at ``(i*dx, j*dy[, k*dz])``.  *World* coordinates are the image's
  scanner/MNI millimetres given by its affine.
* 2D problems are one axial slice (fixed index ``k`` of the RAS-reoriented image) with arrays of shape
  ``(nx, ny)``.
* Diffusivity ``D = pw*Dw + pg*Dg`` with ``Dg = Dw/ratio`` (``ratio = 10`` by default), mm^2/day.
* Initial condition (paper Eq. 2): ``IC(x) = 0.1 exp(-10 |x - x_ic|^2)`` with ``|x|`` in **cm**, i.e.
  ``0.1 exp(-|x - x_ic|^2 / (10 mm^2))``: it falls to 8 % of its peak at 5 mm, the "approximate radius of
  5 mm" the paper states.  (Read with the paper's figure unit of 10 cm the radius would be 3 cm; read
  in mm it would be 0.3 mm, below the voxel size.  Only the cm reading matches the stated radius.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gbm import _core, io
from gbm.errors import InputError, require
from gbm.model.phase_cache import PhaseFieldCache, default_cache

#: Default seed x_ic in world (MNI) mm: deep right frontal white matter (ICBM152 voxel (126, 152, 99),
#: wm = 1.0, mean wm over a 7 mm cube 0.99), the location the paper's Fig. 10 shows a tumour in.
DEFAULT_SEED_WORLD_MM: tuple[float, float, float] = (28.0, 18.0, 27.0)
#: Axial slice of the embedded atlas through the default seed (z = 27 mm).
DEFAULT_SLICE = 99
#: Paper Eq. 2: amplitude and Gaussian width (|x|^2 / IC_WIDTH_MM2 in the exponent).
IC_AMPLITUDE = 0.1
IC_WIDTH_MM2 = 10.0
#: Default Dg = Dw / DEFAULT_RATIO.
DEFAULT_RATIO = 10.0
#: Default Cahn-Hilliard interface parameter (mm); see gbm._core.phase_field.
DEFAULT_EPSILON_MM = 0.5


@dataclass(frozen=True, eq=False)
class Geometry:
    """A brain (or synthetic) domain on its cropped box.

    Attributes
    ----------
    wm, gm : ndarray, float64, shape (nx, ny) or (nx, ny, nz)
        White / gray matter fractions in [0, 1] on the box.
    csf : ndarray or None
        CSF fraction on the box, when given.
    spacing : tuple of float
        Voxel size in mm, one entry per dimension.
    input_affine : ndarray, shape (4, 4)
        Voxel -> world mm of the (RAS-reoriented) input grid.
    full_shape : tuple of int
        Shape of the 3D input grid.
    offset : tuple of int
        Input-grid voxel index of box voxel (0, 0[, 0]); for 2D the third entry is the slice index.
    phi : ndarray or None
        Phase field on the box (after :meth:`with_phase_field`), 1 inside, 0 outside.
    """

    wm: np.ndarray
    gm: np.ndarray
    spacing: tuple[float, ...]
    input_affine: np.ndarray
    full_shape: tuple[int, int, int]
    offset: tuple[int, int, int]
    csf: np.ndarray | None = None
    phi: np.ndarray | None = None
    source: str = "arrays"
    phase_field_info: dict[str, Any] = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return self.wm.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.wm.shape)

    @property
    def mask(self) -> np.ndarray:
        """Binary brain mask (bool, box shape): ``wm + gm >= 0.5`` (and ``> csf`` when given)."""
        return brain_mask(self.wm, self.gm, self.csf)

    @property
    def affine(self) -> np.ndarray:
        """Box voxel (i, j, k) -> world mm (for 2D, k = 0 is the slice)."""
        t = np.eye(4)
        t[:3, 3] = self.offset
        return self.input_affine @ t

    @property
    def voxel_volume(self) -> float:
        """Voxel volume in mm^3 (area in mm^2 for 2D)."""
        return float(np.prod(self.spacing))

    def tissue_factor(self, ratio: float = DEFAULT_RATIO) -> np.ndarray:
        """``k = pw + pg/ratio`` so that ``D = Dw * k`` (dimensionless, box shape)."""
        return self.wm + self.gm / ratio

    def diffusivity(self, dw: float, ratio: float = DEFAULT_RATIO) -> np.ndarray:
        """``D = pw*Dw + pg*Dw/ratio`` in mm^2/day on the box."""
        return dw * self.tissue_factor(ratio)

    def world_to_local(self, xyz: Any) -> np.ndarray:
        """World mm -> local box mm.

        Parameters
        ----------
        xyz : array_like, shape (3,) or (N, 3)

        Returns
        -------
        ndarray, shape (ndim,) or (N, ndim)

        Raises
        ------
        InputError
            For a 2D geometry, if a point is more than half a voxel off the slice.
        """
        p = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        require(p.shape[1] == 3, f"points must have 3 world coordinates, got shape {p.shape}")
        vox = (np.linalg.inv(self.input_affine) @ np.c_[p, np.ones(len(p))].T)[:3].T
        vox = vox - np.asarray(self.offset, dtype=np.float64)
        if self.ndim == 2:
            off = np.abs(vox[:, 2])
            if np.any(off > 0.5 + 1e-6):
                bad = tuple(round(float(c), 2) for c in p[int(np.argmax(off))])
                raise InputError(
                    f"point {bad} mm is not on axial slice {self.offset[2]} "
                    f"(it lies {off.max():.1f} voxels away)")
            vox = vox[:, :2]
        out = vox * np.asarray(self.spacing)
        return out[0] if np.ndim(xyz) == 1 else out

    def local_to_world(self, local: Any) -> np.ndarray:
        """Local box mm (shape (ndim,) or (N, ndim)) -> world mm (shape (3,) or (N, 3))."""
        q = np.atleast_2d(np.asarray(local, dtype=np.float64)) / np.asarray(self.spacing)
        if self.ndim == 2:
            q = np.c_[q, np.zeros(len(q))]
        w = (self.affine @ np.c_[q, np.ones(len(q))].T)[:3].T
        return w[0] if np.ndim(local) == 1 else w

    def to_full(self, array: np.ndarray) -> np.ndarray:
        """Place a box-shaped array into the 3D input grid (zeros elsewhere, float32)."""
        require(array.shape == self.shape,
                f"array shape {array.shape} does not match the box {self.shape}")
        full = np.zeros(self.full_shape, dtype=np.float32)
        i0, j0, k0 = self.offset
        if self.ndim == 2:
            full[i0:i0 + array.shape[0], j0:j0 + array.shape[1], k0] = array
        else:
            full[i0:i0 + array.shape[0], j0:j0 + array.shape[1], k0:k0 + array.shape[2]] = array
        return full

    def crop(self, full: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_full`: the box (for 2D, the slice's box) of a full-grid array.

        Parameters
        ----------
        full : ndarray, shape ``full_shape``
            An array on the 3D input grid (any dtype).

        Returns
        -------
        ndarray, box shape, same dtype, C-contiguous
        """
        require(tuple(full.shape) == tuple(self.full_shape),
                f"array shape {tuple(full.shape)} does not match the input grid {self.full_shape}")
        i0, j0, k0 = self.offset
        n = self.shape
        if self.ndim == 2:
            box = full[i0:i0 + n[0], j0:j0 + n[1], k0]
        else:
            box = full[i0:i0 + n[0], j0:j0 + n[1], k0:k0 + n[2]]
        return np.ascontiguousarray(box)

    def value_at(self, array: np.ndarray, local: Any) -> float:
        """Interpolated value of a box field at one local point (mm)."""

        vals, _ = _core.interpolate(np.ascontiguousarray(array, dtype=np.float64),
                                    list(self.spacing),
                                    np.asarray(local, dtype=np.float64).reshape(1, -1))
        return float(np.asarray(vals).reshape(-1)[0])

    def check_seed(self, seed_local: Any, phi_min: float = 0.5) -> np.ndarray:
        """Validate that a local seed lies inside the brain (phi >= phi_min); return it as array."""
        s = np.asarray(seed_local, dtype=np.float64)
        hi = (np.asarray(self.shape) - 1) * np.asarray(self.spacing)
        world = tuple(round(float(c), 1) for c in self.local_to_world(s))
        if np.any(s < 0) or np.any(s > hi):
            raise InputError(f"seed {world} mm is outside the brain (beyond the cropped box)")
        inside = self.phi if self.phi is not None else self.mask.astype(np.float64)
        v = self.value_at(inside, s)
        if v < phi_min:
            raise InputError(f"seed {world} mm is outside the brain (phi = {v:.2f} < {phi_min})")
        return s

    def with_phase_field(self, epsilon: float = DEFAULT_EPSILON_MM,
                         cache: bool | PhaseFieldCache | None = None,
                         **options: Any) -> Geometry:
        """Return a copy with ``phi`` from the Cahn-Hilliard solve on the binary mask (paper Eq. 4-5).

        Parameters
        ----------
        epsilon : float
            Interface parameter in mm.
        cache : bool or PhaseFieldCache, optional
            Reuse a phase field solved before for the same mask, spacing, epsilon and options
            (:mod:`gbm.model.phase_cache`; bit-identical): ``True`` = the user's cache
            (:func:`~gbm.model.phase_cache.default_cache`), a :class:`PhaseFieldCache` = that
            one; ``None``/``False`` (default) = always solve.
        **options
            Passed to :func:`gbm._core.phase_field` (``tol``, ``max_steps``, ``dt``).
        """

        mask = self.mask
        store = default_cache() if cache is True else (cache or None)

        def solve() -> tuple[np.ndarray, dict[str, Any]]:
            phi, info = _core.phase_field(mask.astype(np.float64), list(self.spacing),
                                          epsilon=epsilon, **options)
            return np.ascontiguousarray(phi), dict(info)

        if store is None:
            phi, info = solve()
        else:
            phi, info = store.solve(mask, self.spacing, epsilon, options, solve)
        return dataclasses.replace(self, phi=np.ascontiguousarray(phi),
                                   phase_field_info=dict(info))

    def initial_condition(self, seed_local: Any) -> np.ndarray:
        """Paper Eq. 2 on the box: ``0.1 exp(-|x - x_ic|^2 / 10 mm^2)`` (float64, box shape)."""
        axes = [np.arange(n) * h for n, h in zip(self.shape, self.spacing)]
        grids = np.meshgrid(*axes, indexing="ij")
        r2 = sum((g - c) ** 2 for g, c in zip(grids, np.asarray(seed_local, dtype=np.float64)))
        return IC_AMPLITUDE * np.exp(-r2 / IC_WIDTH_MM2)


def brain_mask(wm: np.ndarray, gm: np.ndarray, csf: np.ndarray | None = None) -> np.ndarray:
    """Binary brain mask: ``wm + gm >= 0.5``, and ``wm + gm > csf`` where a CSF map is given."""
    tissue = wm + gm
    m = tissue >= 0.5
    if csf is not None:
        m &= tissue > csf
    return m


def _check_fraction(name: str, a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    require(lo >= -1e-6 and hi <= 1 + 1e-6,
            f"{name}: values must be tissue fractions in [0, 1] (or uint8 0..255), "
            f"found range [{lo:.4g}, {hi:.4g}]")
    return np.clip(a, 0.0, 1.0)


def from_maps(wm: np.ndarray, gm: np.ndarray, affine: np.ndarray, csf: np.ndarray | None = None,
              slice_index: int | None = None, margin: int = 5, source: str = "arrays",
              names: tuple[str, str, str] = ("wm", "gm", "csf"),
              mask: np.ndarray | None = None) -> Geometry:
    """Build a :class:`Geometry` from full-size RAS maps: validate, mask, crop (and slice).

    Parameters
    ----------
    wm, gm : ndarray, shape (nx, ny, nz)
        Tissue fractions in [0, 1] on the input grid.
    affine : ndarray, shape (4, 4)
        Voxel -> world mm of the input grid.
    csf : ndarray, optional
        CSF fraction, same grid.
    slice_index : int, optional
        Axial slice (index along the RAS z axis) for a 2D problem; None for 3D.
    margin : int
        Voxels added around the mask's bounding box (the paper's Omega_R).
    mask : ndarray, bool, shape (nx, ny, nz), optional
        :func:`brain_mask` of these (clipped) maps on the full grid, when the caller already built
        it (:class:`gbm.problem.segmentation.patient.PatientData` does); None builds it here.
    """
    for name, a in zip(names, (wm, gm, csf)):
        if a is None:
            continue
        require(a.ndim == 3, f"{name}: expected a 3D map, got shape {a.shape}")
        require(bool(np.all(np.isfinite(a))), f"{name}: contains NaN or Inf values")
        require(a.shape == wm.shape, f"{name}: shape {a.shape} differs from {names[0]} shape "
                f"{wm.shape}")
    wm = _check_fraction(names[0], wm)
    gm = _check_fraction(names[1], gm)
    csf = _check_fraction(names[2], csf) if csf is not None else None
    require(margin >= 0, f"margin must be >= 0, got {margin}")
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    require(bool(np.all(zooms > 0)), "affine has a zero voxel size")
    full_shape = tuple(int(n) for n in wm.shape)
    if slice_index is not None:
        require(0 <= slice_index < wm.shape[2],
                f"slice index {slice_index} is out of range 0..{wm.shape[2] - 1}")
        wm, gm = wm[:, :, slice_index], gm[:, :, slice_index]
        csf = csf[:, :, slice_index] if csf is not None else None
        zooms = zooms[:2]
    if mask is None:
        mask = brain_mask(wm, gm, csf)
    else:
        mask = np.asarray(mask, dtype=bool)
        require(mask.shape == full_shape, f"mask has shape {mask.shape}, expected the maps' "
                f"{full_shape}")
        if slice_index is not None:
            mask = mask[:, :, slice_index]
    where = "" if slice_index is None else f" on slice {slice_index}"
    require(bool(mask.any()), f"brain mask is empty{where}: wm + gm >= 0.5 nowhere")
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, np.asarray(mask.shape))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    def crop(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a[box], dtype=np.float64)

    offset = tuple(int(v) for v in lo) + ((int(slice_index),) if slice_index is not None else ())
    return Geometry(wm=crop(wm), gm=crop(gm), csf=crop(csf),  # type: ignore[arg-type]
                    spacing=tuple(float(z) for z in zooms), input_affine=np.asarray(affine),
                    full_shape=full_shape, offset=offset,  # type: ignore[arg-type]
                    source=source)


def load_geometry(wm: str | None = None, gm: str | None = None, csf: str | None = None,
                  slice_index: int | None = None, margin: int = 5) -> Geometry:
    """Load tissue maps (or the embedded ICBM152 2009a atlas) into a cropped :class:`Geometry`.

    Parameters
    ----------
    wm, gm : path, optional
        White / gray matter NIfTI maps (probabilities, or uint8 0..255).  Both or neither; neither
        means the embedded ICBM152 atlas shipped with nilearn.
    csf : path, optional
        CSF map; voxels where CSF dominates are excluded from the mask (ventricles).
    slice_index : int, optional
        Axial slice for a 2D problem.
    margin : int
        Voxels of margin around the mask's bounding box.
    """
    require((wm is None) == (gm is None), "give both --wm and --gm, or neither (embedded atlas)")
    if wm is None:
        require(csf is None, "--csf needs --wm and --gm")
        with io.atlas_path("wm") as pw, io.atlas_path("gm") as pg:
            w, aff = io.load_nifti(pw, "embedded wm")
            g, _ = io.load_nifti(pg, "embedded gm")
        return from_maps(w, g, aff, None, slice_index, margin, source="ICBM152 2009a (nilearn)")
    w, aff = io.load_nifti(wm, "--wm")
    g, aff_g = io.load_nifti(gm, "--gm")
    require(w.shape == g.shape, f"--gm: shape {g.shape} differs from --wm shape {w.shape}")
    require(np.allclose(aff, aff_g, atol=1e-3), "--gm: affine differs from --wm affine "
            "(maps must be on the same grid)")
    c = None
    if csf is not None:
        c, aff_c = io.load_nifti(csf, "--csf")
        require(c.shape == w.shape, f"--csf: shape {c.shape} differs from --wm shape {w.shape}")
        require(np.allclose(aff, aff_c, atol=1e-3), "--csf: affine differs from --wm affine")
    return from_maps(w, g, aff, c, slice_index, margin, source=f"{wm}, {gm}",
                     names=("--wm", "--gm", "--csf"))


def disk(radius_mm: float = 50.0, spacing_mm: float = 1.0, half_width_mm: float = 60.0,
         interface_mm: float = 1.0) -> Geometry:
    """The paper's simple domain (Sec. 3.1): a disk, ``phi = 0.5 + 0.5 tanh((R - r)/w)``, pure WM.

    With the defaults (R = 50 mm, w = 1 mm) this is the paper's ``phi = 0.5 + 0.5 tanh(50 - r)``.
    The disk is centred in a square box of side ``2*half_width_mm``; D = Dw everywhere (wm = 1).
    """
    n = int(round(2 * half_width_mm / spacing_mm)) + 1
    x = np.arange(n) * spacing_mm
    c = x[-1] / 2
    xx, yy = np.meshgrid(x, x, indexing="ij")
    r = np.hypot(xx - c, yy - c)
    phi = 0.5 + 0.5 * np.tanh((radius_mm - r) / interface_mm)
    ones = np.ones((n, n))
    aff = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    aff[:3, 3] = (-c, -c, 0.0)  # world origin at the disk centre
    return Geometry(wm=ones, gm=np.zeros((n, n)), spacing=(spacing_mm, spacing_mm),
                    input_affine=aff, full_shape=(n, n, 1), offset=(0, 0, 0), phi=phi,
                    source=f"disk R={radius_mm} mm")


def grid_points(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """Voxel centres of a box, local mm, shape (prod(shape), d), C order."""
    axes = [np.arange(n) * h for n, h in zip(shape, spacing)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(shape))
