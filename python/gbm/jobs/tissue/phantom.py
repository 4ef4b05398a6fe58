"""Known-warp BraTS phantoms: test patients for atlas registration, made without any registration
engine (``gbm synth --brats``).

The atlas (:mod:`gbm.jobs.tissue.atlas`) is pulled into a BraTS-like grid (240 x 240 x 155 at 1 mm,
or that field of view at ``downsample`` mm; LPS-stored header ``diag(-s, -s, s)`` as BraTS ships)
through a known map from patient world x (mm) to atlas world y (mm)::

    y = M (x - c + m(x)) + b + d(x),     M = Rz Ry Rx diag(scale)

with ``c`` the patient's brain centre (grid centre + ``shift_mm``), ``b`` the atlas brain's centroid,
``d`` a smooth random displacement (white noise, Gaussian-smoothed with ``warp_sigma_mm``, scaled
to a largest length of ``warp_mm``) and ``m`` a mass effect around the tumour,
``m(x) = -k (x - x0) exp(-|x - x0|^2 / (2 s^2))`` with the largest pull ``mass_mm`` at distance
``s = mass_sigma_mm`` (sample points drawn towards the tumour: the tumour and the tissue round it
appear expanded).  Every atlas field is sampled at y(x) with linear interpolation.

The tumour is gbm's own forward model (:func:`gbm.model.simulation.simulate`, as ``gbm synth``)
grown on the (downsampled) atlas from ``SynthConfig.origin_mm`` (atlas world) for ``age_days``,
pulled through the same map, and thresholded there with ``gbm synth``'s rule
(:func:`gbm.jobs.synth.threshold_labels`).  The true tissue maps are the atlas WM and GM pulled
through the map (healthy atlas tissue stays under the tumour, as registered maps have it), times
the patient's brain (the atlas brain pulled, > 0.5), and CSF = clip(1 - wm - gm) inside it
(:func:`gbm.jobs.tissue.atlas.csf_inside`).

MR-like images (relative intensities; white matter of the T1 ~0.87 x 1000):

* T1 (``t1n`` / ``t1``): the atlas T1 pulled; T1c (``t1c`` / ``t1ce``) the same, with the
  enhancing rim bright (1.25), necrosis dark (0.25), edema dim (0.65);
* T2 (``t2w`` / ``t2``) and FLAIR (``t2f`` / ``flair``): tissue fractions x intensities
  (WM 0.35 / 0.45, GM 0.55 / 0.65, CSF 1.0 / 0.12), edema bright (0.8 / 0.95), necrosis 0.9 / 0.35,
  enhancing 0.55 / 0.75;
* lesion classes blend in with 0.7-voxel Gaussian-smoothed weights (edema at 0.7: infiltrated
  tissue keeps some of its structure);
* a multiplicative bias field ``exp(bias * p(x))`` per image (``p`` a random quadratic, scaled
  to [-1, 1] over the field of view), Rician noise of ``noise`` x the white-matter intensity,
  and 0 outside the brain (skull-stripped, as BraTS is).

Output folder (a BraTS case, ``naming`` 2023 ``<id>-{t1n,t1c,t2w,t2f,seg}.nii.gz`` or 2021
``<id>_{t1,t1ce,t2,flair,seg}.nii.gz``, labels in that release's convention) with ``truth/``:
``{wm,gm,csf}_pbmap.nii.gz`` (the true maps), ``u.nii.gz`` (the true density) and ``truth.json``
(the map's parameters, the tumour's origin in patient world mm, lambda, rho*T).  Units: mm, days.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gbm import io
from gbm.errors import InputError, require
from gbm.jobs.synth import SynthConfig, threshold_labels
from gbm.jobs.tissue.atlas import ATLAS_NAME, Atlas, csf_inside, load_atlas
from gbm.model.coarse import coarse_affine
from gbm.model.geometry import DEFAULT_SEED_WORLD_MM, from_maps
from gbm.model.simulation import simulate
from gbm.problem.segmentation.brats import NAMINGS
from gbm.provenance import __version__

#: BraTS's 1 mm grid and its stored (LPS) affine.
BRATS_SHAPE = (240, 240, 155)
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
#: Relative intensities per modality: (wm, gm, csf) of the healthy tissue model (T2, FLAIR) and
#: (necrosis, enhancing, edema) of the lesion classes (all four).
HEALTHY = {"t2": (0.35, 0.55, 1.0), "flair": (0.45, 0.65, 0.12)}
LESION = {"t1": (0.25, 0.55, 0.65), "t1c": (0.25, 1.25, 0.65), "t2": (0.9, 0.55, 0.8),
          "flair": (0.35, 0.75, 0.95)}
#: Weight of the lesion intensity in the edema (the rest is the healthy tissue's).
EDEMA_WEIGHT = 0.7
#: Intensity scale of the written images.
SCALE = 1000.0
#: The phantom's default tumour: ``gbm synth``'s, necrosis from u >= 0.9 (the default 400-day
#: tumour peaks at u ~0.95, so ``gbm synth``'s 0.95 would leave it without a necrotic centre).
PHANTOM_TUMOUR = SynthConfig(theta_n=0.9, recurrence_after=None)


@dataclass(frozen=True)
class PhantomConfig:
    """The known map and the image model of a phantom (units: mm, degrees).

    ``tumour`` sets the tumour (origin in atlas world mm, Dw, rho, age, thresholds, labels are
    replaced by the naming's convention) and ``tumour.downsample`` the grid (1: 1 mm BraTS grid,
    2: 2 mm, ...); ``tumour.seed`` seeds the random displacement, bias fields and noise.
    """

    tumour: SynthConfig = PHANTOM_TUMOUR
    rotation_deg: tuple[float, float, float] = (6.0, -4.0, 3.0)
    scale: tuple[float, float, float] = (1.04, 0.97, 1.06)
    shift_mm: tuple[float, float, float] = (3.0, -4.0, 2.0)
    warp_mm: float = 8.0
    warp_sigma_mm: float = 12.0
    mass_mm: float = 4.0
    mass_sigma_mm: float = 15.0
    bias: float = 0.15
    noise: float = 0.03
    naming: str = "brats2023"
    case_id: str = "BraTS-GLI-90000-000"

    def validate(self) -> None:
        """Raise :class:`InputError` for a bad setting."""
        t = self.tumour
        require(isinstance(t.downsample, int) and 1 <= t.downsample <= 8,
                f"--downsample must be an integer in 1..8, got {t.downsample}")
        require(len(t.scan_days) == 1, "--brats writes one scan (no --scan-days)")
        require(self.naming in NAMINGS, f"--brats must be 2021 or 2023, got {self.naming}")
        for name, v in (("warp_mm", self.warp_mm), ("warp_sigma_mm", self.warp_sigma_mm),
                        ("mass_mm", self.mass_mm), ("mass_sigma_mm", self.mass_sigma_mm),
                        ("bias", self.bias), ("noise", self.noise)):
            require(math.isfinite(v) and v >= 0, f"{name} must be >= 0, got {v}")
        require(self.warp_sigma_mm > 0 and self.mass_sigma_mm > 0, "sigmas must be > 0")
        require(self.mass_mm < 0.5 * self.mass_sigma_mm,
                "mass_mm must be below half of mass_sigma_mm (the map must stay invertible)")
        require(all(0.7 <= s <= 1.4 for s in self.scale), f"scale must lie in [0.7, 1.4], got "
                f"{self.scale}")
        require(bool(self.case_id) and "/" not in self.case_id, "case id must be a file name")

    @property
    def labels(self) -> str:
        """The naming's label convention."""
        return "brats2021" if self.naming == "brats2021" else "brats2023"


def rotation(deg: tuple[float, float, float]) -> np.ndarray:
    """``Rz(c) Ry(b) Rx(a)`` for ``deg = (a, b, c)`` degrees."""
    a, b, c = (math.radians(float(v)) for v in deg)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True, eq=False)
class KnownMap:
    """The map from patient world x to atlas world y (module header), on a patient grid.

    ``field_mm`` is the random displacement d on the patient grid, shape (3, nx, ny, nz), float32,
    atlas-world mm.
    """

    matrix: np.ndarray
    centre: np.ndarray
    target: np.ndarray
    field_mm: np.ndarray
    affine: np.ndarray
    mass_centre: np.ndarray
    mass_k: float
    mass_sigma: float

    def _displacement(self, x: np.ndarray, vox: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        d = np.stack([ndimage.map_coordinates(self.field_mm[a], vox.T, order=1, mode="nearest")
                      for a in range(3)], axis=1)
        r = x - self.mass_centre
        w = np.exp(-(r ** 2).sum(axis=1) / (2 * self.mass_sigma ** 2))
        m = -self.mass_k * r * w[:, None]
        return (self.matrix @ (x - self.centre + m).T).T + self.target + d

    def atlas_points(self, x: np.ndarray) -> np.ndarray:
        """y(x) for patient world points ``x`` (N, 3) -> (N, 3)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        vox = (np.linalg.inv(self.affine) @ np.c_[x, np.ones(len(x))].T)[:3].T
        return self._displacement(x, vox)

    def patient_point(self, y: np.ndarray, iterations: int = 50) -> np.ndarray:
        """The patient world point x with y(x) = ``y`` (fixed-point iteration with M^-1)."""
        y = np.asarray(y, dtype=np.float64)
        inv = np.linalg.inv(self.matrix)
        x = self.centre + inv @ (y - self.target)
        for _ in range(iterations):
            x = x - inv @ (self.atlas_points(x[None])[0] - y)
        return x

    def pull(self, volume: np.ndarray, affine: np.ndarray, shape: tuple[int, ...],
             order: int = 1) -> np.ndarray:
        """``volume`` (on the grid ``affine``) sampled at y(x) of every voxel of the patient grid
        (``shape``), 0 outside; float32, patient shape."""
        from scipy import ndimage

        inv = np.linalg.inv(affine)
        out = np.empty(shape, dtype=np.float32)
        jk = np.indices(shape[1:]).reshape(2, -1).T
        for i in range(shape[0]):  # one slab at a time keeps the point arrays small
            vox = np.c_[np.full(len(jk), i), jk].astype(np.float64)
            x = (self.affine @ np.c_[vox, np.ones(len(vox))].T)[:3].T
            y = self._displacement(x, vox)
            src = (inv @ np.c_[y, np.ones(len(y))].T)[:3]
            out[i] = ndimage.map_coordinates(volume, src, order=order, mode="constant",
                                             cval=0.0).reshape(shape[1:])
        return out


def brats_grid(downsample: int) -> tuple[tuple[int, int, int], np.ndarray]:
    """The BraTS field of view at ``downsample`` mm: shape and LPS-stored affine."""
    f = (downsample,) * 3
    shape = tuple(-(-n // downsample) for n in BRATS_SHAPE)
    return shape, coarse_affine(BRATS_AFFINE, f)  # type: ignore[return-value]


def random_field(shape: tuple[int, ...], spacing: float, sigma_mm: float, amplitude: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Three smooth random components (Gaussian-smoothed white noise), scaled so that the longest
    vector has length ``amplitude`` mm; float32, shape (3, *shape)."""
    from scipy import ndimage

    coarse = max(1, int(sigma_mm / spacing / 2))  # smooth on a coarser grid, then zoom back
    cshape = tuple(-(-n // coarse) for n in shape)
    comps = []
    for _ in range(3):
        g = ndimage.gaussian_filter(rng.standard_normal(cshape), sigma_mm / spacing / coarse,
                                    mode="wrap")
        comps.append(ndimage.zoom(g, coarse, order=1)[tuple(slice(0, n) for n in shape)])
    f = np.stack(comps)
    top = float(np.sqrt((f ** 2).sum(axis=0)).max())
    return (f * (amplitude / top if top > 0 else 0.0)).astype(np.float32)


def known_map(cfg: PhantomConfig, atlas: Atlas, shape: tuple[int, ...], affine: np.ndarray,
              rng: np.random.Generator) -> KnownMap:
    """The phantom's :class:`KnownMap` (module header)."""
    spacing = float(np.linalg.norm(affine[:3, 0]))
    centre_vox = (np.asarray(shape) - 1) / 2.0
    centre = affine[:3, :3] @ centre_vox + affine[:3, 3] + np.asarray(cfg.shift_mm, dtype=float)
    target = atlas.affine[:3, :3] @ np.argwhere(atlas.brain).mean(axis=0) + atlas.affine[:3, 3]
    matrix = rotation(cfg.rotation_deg) @ np.diag(cfg.scale)
    origin = np.asarray(cfg.tumour.origin_mm if cfg.tumour.origin_mm is not None
                        else DEFAULT_SEED_WORLD_MM, dtype=np.float64)
    mass_centre = centre + np.linalg.solve(matrix, origin - target)
    s = cfg.mass_sigma_mm
    k = cfg.mass_mm / (s * math.exp(-0.5))
    d = random_field(shape, spacing, cfg.warp_sigma_mm, cfg.warp_mm, rng)
    return KnownMap(matrix, centre, target, d, affine, mass_centre, k, s)


def _tumour(cfg: PhantomConfig, atlas: Atlas) -> tuple[np.ndarray, dict[str, Any]]:
    """The true density on the atlas grid and its truth (atlas world)."""
    t = cfg.tumour
    geom = from_maps(atlas.wm, atlas.gm, atlas.affine, atlas.csf, margin=5,
                     source="ICBM152 2009a").with_phase_field()
    origin = tuple(float(v) for v in (t.origin_mm if t.origin_mm is not None
                                      else DEFAULT_SEED_WORLD_MM))
    local = geom.check_seed(geom.world_to_local(np.asarray(origin)))
    res = simulate(geom, t.dw, t.rho, [t.age_days], seed_local=local, ratio=t.ratio,
                   safety=t.safety)
    truth = {"origin_atlas_mm": list(origin), "dw": t.dw, "rho": t.rho, "ratio": t.ratio,
             "age_days": t.age_days, "lambda_mm": math.sqrt(t.dw / t.rho),
             "rho_T": t.rho * t.age_days,
             "thresholds": {"theta_c": t.theta_c, "theta_e": t.theta_e, "theta_n": t.theta_n}}
    return geom.to_full(res.u[-1]).astype(np.float64), truth


def _bias(shape: tuple[int, ...], strength: float, rng: np.random.Generator) -> np.ndarray:
    """``exp(strength * p)``, p a random quadratic in the voxel coordinates scaled to [-1, 1]."""
    axes = [np.linspace(-1.0, 1.0, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    c = rng.uniform(-1.0, 1.0, size=9)
    p = (c[0] * x + c[1] * y + c[2] * z + c[3] * x * y + c[4] * y * z + c[5] * x * z
         + c[6] * x * x + c[7] * y * y + c[8] * z * z)
    p = p / max(float(np.abs(p).max()), 1e-12)
    return np.exp(strength * p)


def _images(cfg: PhantomConfig, t1: np.ndarray, maps: dict[str, np.ndarray], labels: np.ndarray,
            brain: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The four MR images (role -> float32 array, module header)."""
    from scipy import ndimage

    conv_vals = cfg_labels(cfg)
    weights = [ndimage.gaussian_filter(np.isin(labels, v).astype(np.float64), 0.7)
               for v in conv_vals]
    weights[2] = weights[2] * EDEMA_WEIGHT
    lesion = sum(weights)
    healthy = {"t1": t1.astype(np.float64), "t1c": t1.astype(np.float64)}
    for role, (w_i, g_i, c_i) in HEALTHY.items():
        healthy[role] = w_i * maps["wm"] + g_i * maps["gm"] + c_i * maps["csf"]
    wm_level = 0.87
    out = {}
    for role in ("t1", "t1c", "t2", "flair"):
        img = healthy[role] * (1.0 - lesion)
        for w, v in zip(weights, LESION[role]):
            img = img + w * v
        img = img * _bias(labels.shape, cfg.bias, rng)
        sd = cfg.noise * wm_level
        img = np.hypot(img + sd * rng.standard_normal(img.shape), sd * rng.standard_normal(img.shape))
        out[role] = (np.where(brain, img, 0.0) * SCALE).astype(np.float32)
    return out


def cfg_labels(cfg: PhantomConfig) -> tuple[list[int], list[int], list[int]]:
    """Label values of (necrosis, enhancing, edema) in the phantom's convention."""
    return ([1], [4], [2]) if cfg.naming == "brats2021" else ([1], [3], [2])


def _file(cfg: PhantomConfig, role: str) -> str:
    sep, suffixes = NAMINGS[cfg.naming]
    suffix = next(s for s, r in suffixes.items() if r == role)
    return f"{cfg.case_id}{sep}{suffix}.nii.gz"


def make_phantom(cfg: PhantomConfig) -> dict[str, Any]:
    """Build a phantom in memory: ``{"images": {role: array}, "labels", "maps": {wm, gm, csf},
    "u", "affine", "truth"}`` (arrays on the LPS-stored patient grid)."""
    cfg.validate()
    t = cfg.tumour
    atlas = load_atlas(t.downsample)
    shape, affine = brats_grid(t.downsample)
    rng = np.random.default_rng([t.seed, 17])
    kmap = known_map(cfg, atlas, shape, affine, rng)
    u_atlas, truth = _tumour(cfg, atlas)
    pulled = {name: kmap.pull(a, atlas.affine, shape) for name, a in
              (("t1", atlas.t1), ("wm", atlas.wm), ("gm", atlas.gm),
               ("brain", atlas.brain.astype(np.float64)), ("u", u_atlas))}
    brain = pulled["brain"] > 0.5
    require(bool(brain.any()), "the phantom's brain left the field of view")
    wm = np.where(brain, np.clip(pulled["wm"], 0, 1), 0.0)
    gm = np.where(brain, np.clip(pulled["gm"], 0, 1), 0.0)
    maps = {"wm": wm, "gm": gm, "csf": csf_inside(wm, gm, brain)}
    conv = SynthConfig(labels=cfg.labels).convention
    u = np.clip(pulled["u"].astype(np.float64), 0.0, 1.0)
    labels = np.where(brain, threshold_labels(u, conv, t.theta_e, t.theta_c, t.theta_n), 0)
    if not (labels > 0).any():
        raise InputError("the phantom's tumour is below theta_e everywhere (a longer --age-days?)")
    images = _images(cfg, pulled["t1"], maps, labels, brain, rng)
    origin = kmap.patient_point(np.asarray(truth["origin_atlas_mm"]))
    truth.update({"origin_world_mm": origin.tolist(), "labels": conv.name,
                  "map": {"matrix": kmap.matrix.tolist(), "centre_mm": kmap.centre.tolist(),
                          "target_mm": kmap.target.tolist(),
                          "mass_centre_mm": kmap.mass_centre.tolist()}})
    return {"images": images, "labels": labels.astype(np.uint8), "maps": maps,
            "u": u, "affine": affine, "truth": truth}


def write_phantom(cfg: PhantomConfig, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Write a phantom case folder (module header); returns ``truth.json``'s content."""
    cfg.validate()
    io.check_output(out, force)
    ph = make_phantom(cfg)
    aff = ph["affine"]
    truth = dict(ph["truth"])
    truth.update({"atlas": ATLAS_NAME, "naming": cfg.naming, "case_id": cfg.case_id,
                  "grid": {"shape": list(ph["labels"].shape), "affine": aff.tolist()},
                  "phantom": asdict(cfg), "gbm_version": __version__,
                  "files": {role: _file(cfg, role) for role in ("t1", "t1c", "t2", "flair",
                                                                "seg")},
                  "units": {"length": "mm", "time": "days", "Dw": "mm^2/day", "rho": "1/day"}})
    with io.staged_outdir(out, force) as tmp:
        for role, img in ph["images"].items():
            io.save_nifti_atomic(tmp / _file(cfg, role), img, aff,
                                 description=f"gbm phantom {role}")
        io.save_labels_atomic(tmp / _file(cfg, "seg"), ph["labels"], aff)
        for name, a in ph["maps"].items():
            io.save_nifti_atomic(tmp / "truth" / f"{name}_pbmap.nii.gz", a, aff,
                                 description=f"gbm phantom true {name}")
        io.save_nifti_atomic(tmp / "truth" / "u.nii.gz", ph["u"], aff,
                             description="gbm phantom true u")
        io.write_json_atomic(tmp / "truth" / "truth.json", truth)
    return truth
