"""Synthetic patients with known truth (``python -m gbm synth``).

A synthetic patient is gbm's own forward model run from a known origin with known Dw, rho and age,
and thresholded into a tumour segmentation the way the fit reads one (:mod:`gbm.problem.segmentation.labels`):

* the diffuse-domain Fisher-Kolmogorov model (:func:`gbm.model.simulation.simulate`) on the maps' phase field,
  from the paper's Gaussian at ``origin_mm`` (or another start, below), snapshots at
  ``age_days + d`` for each scan day ``d``
  (days since the first scan) and at the recurrence day (``recurrence_after`` days after the last
  scan); time stepping ``scheme``: Strang-RKL2 at rho dt = :data:`SYNTH_RHO_DT` (default; four times
  finer than a fit's 0.5, front error < 0.005 mm at 1 mm, so a fit with gbm's solver is not an exact
  inverse crime) or explicit Euler at ``safety`` x the stability bound (the default before
  gbm 0.2, 0.25);
* labels per voxel from u (optionally Gaussian-blurred by ``blur_mm`` first): necrosis where
  ``u >= theta_n``, enhancing where ``theta_c <= u < theta_n`` (core = ``u >= theta_c``), edema where
  ``theta_e <= u < theta_c``, background below ``theta_e``; thresholds act on u rounded to float32
  (the values written to ``truth/``), everywhere on the grid (no brain masking).  With
  ``label_noise = p`` each voxel that has a 6-neighbour with another label takes, with probability p,
  the label of one of those neighbours (chosen uniformly; all from the clean labels at once).

Model variants (the truth made the way another solver would make it; gbm's fit keeps its own model):

* the start (:class:`GaussianStart`): ``u0(x) = peak exp(-|x - origin|^2 / R^2)``, set to 0 where
  it is below ``start_cutoff`` (and in inactive cells); R is the e-folding radius (u0 = peak / e at
  r = R), the support radius ``R sqrt(ln(peak / cutoff))`` when a cutoff is set.  Default: the
  paper's start, peak 0.1 and R = sqrt(10) mm (``0.1 exp(-r^2 / 10 mm^2)``).  The independent
  solver of issue 18 (a peer's Gaussian ``250 (20 pi)^-3/2 exp(-r^2 / 20 mm^2)``, cut below 0.1):
  peak 0.5, R = sqrt(20) = 4.47 mm, cutoff 0.1, so zero beyond 5.67 mm.  It starts at age 0, i.e.
  ``age_days`` before the first scan; ``truth/u_start.nii.gz`` holds it as the solver starts from it;
* ``closed_below = c``: no phase field; the domain is the cells with ``wm + gm >= c`` (phi = 1 there,
  0 elsewhere), so every face with a cell below c is closed and the equation in the domain is
  ``du/dt = div(D grad u) + rho u (1 - u)`` (the rule of peer solvers without a phase field; they
  also let u grow in closed cells where their start put some, which this does not);
* ``face_mean = "arithmetic"``: the solver's face coefficient is the arithmetic mean of the two
  cells' D phi instead of the harmonic one (``gbm._core.FisherKpp(face_mean=...)``).

Maps: the embedded ICBM152 2009a atlas (1 mm; nilearn ships only its wm, gm and T1 maps, so csf is
*derived*: ``clip(1 - wm - gm, 0, 1)`` inside the hole-filled tissue mask ``wm + gm >= 0.1`` dilated by
2 voxels, 0 elsewhere) or user maps (csf derived the same way when not given).  ``downsample = f``
block-averages the maps over f^3 voxels and scales the affine, e.g. 2 -> a 2 mm grid for fast tests,
with the coarse grids of the fit (:func:`gbm.model.coarse.block_average`,
:func:`gbm.model.coarse.coarse_affine`): an image whose size is not a multiple of f is zero-padded to
whole blocks, so the last coarse voxel along such an axis is the sum of its real voxels / f^3.

Output folder (PredictGBM layout, everything on the (downsampled) input grid with its RAS affine;
maps and densities float32, labels uint8): ``tissue_segmentation/{wm,gm,csf}_pbmap.nii.gz``,
``tumor_segmentation/tumor_seg.nii.gz`` (first scan), ``tumor_segmentation/tumor_seg_day<D>.nii.gz``
(later scans), ``scans.json`` (gbm's extension listing all scans, the recurrence and the labels),
``longitudinal/recurrence_preop.nii.gz``, ``truth/u_day<D>.nii.gz`` (true density at each scan and
at the recurrence day; D = days since the first scan), ``truth/u_start.nii.gz`` (the start, at age
0) and ``truth.json`` (its ``start`` and ``model`` say which start and variants made the truth).  Units: mm, days, Dw in
mm^2/day, rho in 1/day.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gbm import io
from gbm.errors import InputError, positive, require
from gbm.model.coarse import block_average, coarse_affine
from gbm.model.geometry import (
    DEFAULT_RATIO,
    DEFAULT_SEED_WORLD_MM,
    IC_AMPLITUDE,
    IC_WIDTH_MM2,
    Geometry,
    from_maps,
)
from gbm.model.simulation import simulate
from gbm.problem.segmentation.labels import LabelConvention, parse_convention
from gbm.problem.segmentation.levels import STAGE_SAFETY
from gbm.provenance import __version__

CSF_NOTE = ("csf derived as clip(1 - wm - gm, 0, 1) inside the hole-filled tissue mask "
            "(wm + gm >= 0.1) dilated by 2 voxels, 0 elsewhere")
TRUTH_NOTE = ("synthetic patient from gbm's own FD solver (diffuse-domain Fisher-Kolmogorov), "
              "{stepping}; labels are thresholds of u")
#: rho dt of synth's Strang-RKL2 steps (a fit's is 0.5).
SYNTH_RHO_DT = 0.125
#: Time integrators of synth (``--scheme``).
SCHEMES = ("strang-rkl2", "euler")
FACE_MEANS = ("harmonic", "arithmetic")


@dataclass(frozen=True)
class GaussianStart:
    """The start u0(x) = peak exp(-|x - x0|^2 / width_mm2), 0 where below ``cutoff`` (module header).

    ``width_mm2`` = R^2 with R the e-folding radius in mm; the paper's start is
    ``GaussianStart(0.1, 10.0, 0.0)``."""

    peak: float = IC_AMPLITUDE
    width_mm2: float = IC_WIDTH_MM2
    cutoff: float = 0.0

    @property
    def radius_mm(self) -> float:
        """The e-folding radius R (mm): u0 = peak / e at |x - x0| = R."""
        return math.sqrt(self.width_mm2)

    @property
    def support_radius_mm(self) -> float | None:
        """Where u0 falls to ``cutoff`` (mm) and is cut to 0 beyond; None without a cutoff."""
        if self.cutoff <= 0:
            return None
        return math.sqrt(self.width_mm2 * math.log(self.peak / self.cutoff))

    def density(self, geom: Geometry, origin_local: np.ndarray) -> np.ndarray:
        """u0 on ``geom``'s box (float64); the default start equals
        :meth:`Geometry.initial_condition` bit for bit."""
        axes = [np.arange(n) * h for n, h in zip(geom.shape, geom.spacing)]
        grids = np.meshgrid(*axes, indexing="ij")
        r2 = sum((g - c) ** 2 for g, c in zip(grids, np.asarray(origin_local, dtype=np.float64)))
        u = self.peak * np.exp(-r2 / self.width_mm2)
        return np.where(u >= self.cutoff, u, 0.0) if self.cutoff > 0 else u

    def describe(self) -> dict[str, Any]:
        """The ``start`` entry of ``truth.json`` (without the file's figures)."""
        return {"kind": "gaussian",
                "formula": "u0 = peak exp(-|x - origin|^2 / radius_mm^2); 0 where below cutoff "
                           "and in inactive cells; at age 0 (age_days before the first scan)",
                "peak": self.peak, "radius_mm": self.radius_mm, "width_mm2": self.width_mm2,
                "cutoff": self.cutoff, "support_radius_mm": self.support_radius_mm,
                "half_max_radius_mm": self.radius_mm * math.sqrt(math.log(2.0))}


@dataclass(frozen=True)
class SynthConfig:
    """Settings of a synthetic patient (units: mm, days, mm^2/day, 1/day).

    ``wm``/``gm``/``csf`` None means the embedded ICBM152 atlas; ``origin_mm`` None means
    :data:`gbm.model.geometry.DEFAULT_SEED_WORLD_MM` (world mm).  ``scan_days`` are days since the first
    scan (first 0); ``age_days`` is the tumour age at the first scan; ``recurrence_after`` is counted
    from the last scan (None: no recurrence).  Thresholds: core ``u >= theta_c``, whole tumour
    ``u >= theta_e``, necrosis ``u >= theta_n``.
    """

    wm: str | None = None
    gm: str | None = None
    csf: str | None = None
    downsample: int = 1
    origin_mm: tuple[float, float, float] | None = None
    dw: float = 0.13
    rho: float = 0.025
    ratio: float = DEFAULT_RATIO
    age_days: float = 400.0
    scan_days: tuple[float, ...] = (0.0,)
    recurrence_after: float | None = 150.0
    theta_c: float = 0.675
    theta_e: float = 0.25
    theta_n: float = 0.95
    labels: str = "brats2023"
    label_noise: float = 0.0
    blur_mm: float = 0.0
    scheme: str = "strang-rkl2"
    safety: float = 0.25
    phase_cache: bool = True
    seed: int = 0
    start_peak: float | None = None
    start_radius_mm: float | None = None
    start_cutoff: float = 0.0
    closed_below: float | None = None
    face_mean: str = "harmonic"

    def validate(self) -> None:
        """Raise :class:`InputError` for a bad setting."""
        require((self.wm is None) == (self.gm is None),
                "give both --wm and --gm, or neither (embedded atlas)")
        require(self.csf is None or self.wm is not None, "--csf needs --wm and --gm")
        require(isinstance(self.downsample, int) and not isinstance(self.downsample, bool)
                and self.downsample >= 1,
                f"--downsample must be an integer >= 1, got {self.downsample}")
        positive("--dw", self.dw)
        positive("--rho", self.rho)
        positive("--ratio", self.ratio)
        positive("--age-days", self.age_days)
        if self.origin_mm is not None:
            require(len(self.origin_mm) == 3 and all(math.isfinite(float(v))
                                                     for v in self.origin_mm),
                    f"--origin-mm needs three finite numbers x,y,z (mm), got {self.origin_mm}")
        d = [float(v) for v in self.scan_days]
        require(len(d) >= 1 and all(math.isfinite(v) for v in d),
                f"--scan-days must be finite numbers, got {self.scan_days}")
        require(d[0] == 0.0, f"--scan-days: the first scan day must be 0 (days since the first "
                f"scan), got {d[0]:g}")
        require(all(b > a for a, b in itertools.pairwise(d)),
                f"--scan-days must be strictly increasing, got {', '.join(f'{v:g}' for v in d)}")
        if self.recurrence_after is not None:
            positive("--recurrence-after", self.recurrence_after)
        require(0 < self.theta_e < self.theta_c < self.theta_n <= 1,
                "thresholds need 0 < theta_e < theta_c < theta_n <= 1, got theta_e "
                f"{self.theta_e:g}, theta_c {self.theta_c:g}, theta_n {self.theta_n:g}")
        conv = parse_convention(self.labels)
        require(conv is not None, "--labels: synth needs a convention, not auto")
        assert conv is not None
        require(bool(conv.necrosis and conv.edema and conv.enhancing),
                f"--labels: {conv.name} must label necrosis, edema and enhancing")
        require(0 <= self.label_noise <= 1 and math.isfinite(self.label_noise),
                f"--label-noise must be a probability in [0, 1], got {self.label_noise}")
        require(self.blur_mm >= 0 and math.isfinite(self.blur_mm),
                f"--blur-mm must be >= 0, got {self.blur_mm}")
        require(0 < self.safety <= 1, f"--safety must be in (0, 1], got {self.safety}")
        require(self.scheme in SCHEMES, f"--scheme must be {' or '.join(SCHEMES)}, got "
                f"{self.scheme!r}")
        require(isinstance(self.seed, int) and self.seed >= 0,
                f"--seed must be a non-negative integer, got {self.seed}")
        self._validate_model()

    def _validate_model(self) -> None:
        """The start and the model variants."""
        if self.start_peak is not None:
            require(math.isfinite(self.start_peak) and 0 < self.start_peak <= 1,
                    f"--start-peak must be in (0, 1], got {self.start_peak}")
        if self.start_radius_mm is not None:
            positive("--start-radius-mm", self.start_radius_mm)
        peak = self.start.peak
        require(math.isfinite(self.start_cutoff) and 0 <= self.start_cutoff < peak,
                f"--start-cutoff must be in [0, peak = {peak:g}), got {self.start_cutoff}")
        if self.closed_below is not None:
            require(math.isfinite(self.closed_below) and 0 < self.closed_below <= 1,
                    f"--closed-below must be in (0, 1], got {self.closed_below}")
        require(self.face_mean in FACE_MEANS, f"--face-mean must be harmonic or arithmetic, got "
                f"{self.face_mean!r}")

    @property
    def convention(self) -> LabelConvention:
        conv = parse_convention(self.labels)
        assert conv is not None
        return conv

    @property
    def start(self) -> GaussianStart:
        """The start (the paper's Gaussian unless ``start_*`` say otherwise)."""
        return GaussianStart(
            peak=IC_AMPLITUDE if self.start_peak is None else float(self.start_peak),
            width_mm2=(IC_WIDTH_MM2 if self.start_radius_mm is None
                       else float(self.start_radius_mm) ** 2),
            cutoff=float(self.start_cutoff))

    def stepping_text(self) -> str:
        """The time stepping in words (``truth.json``'s note)."""
        if self.scheme == "euler":
            return f"explicit Euler at {self.safety:g} x the stability bound"
        return f"Strang-RKL2 at rho dt = {SYNTH_RHO_DT:g}"

    def model(self) -> dict[str, Any]:
        """The ``model`` entry of ``truth.json``: the domain rule and the face mean."""
        domain = ("phase field (Cahn-Hilliard) of the brain mask" if self.closed_below is None
                  else f"cells with wm + gm >= {self.closed_below:g} (phi = 1 there, 0 elsewhere: "
                  "faces to cells below are closed; no phase field)")
        return {"domain": domain, "closed_below": self.closed_below,
                "face_mean": self.face_mean, "ratio": self.ratio}

    @property
    def recurrence_day(self) -> float | None:
        """Recurrence day in days since the first scan (None without a recurrence)."""
        if self.recurrence_after is None:
            return None
        return float(self.scan_days[-1]) + float(self.recurrence_after)


@dataclass(frozen=True, eq=False)
class _Maps:
    wm: np.ndarray
    gm: np.ndarray
    csf: np.ndarray
    affine: np.ndarray
    source: str
    csf_derived: bool


def derive_csf(wm: np.ndarray, gm: np.ndarray) -> np.ndarray:
    """CSF fraction where none is given: ``clip(1 - wm - gm, 0, 1)`` inside the hole-filled tissue
    mask (``wm + gm >= 0.1``) dilated by 2 voxels, 0 elsewhere (float64, same shape)."""
    from scipy import ndimage

    tissue = wm + gm
    inside = ndimage.binary_fill_holes(tissue >= 0.1)
    inside = ndimage.binary_dilation(inside, iterations=2)
    return np.where(inside, np.clip(1.0 - tissue, 0.0, 1.0), 0.0)


def _load_maps(cfg: SynthConfig) -> _Maps:
    if cfg.wm is None:
        with io.atlas_path("wm") as pw, io.atlas_path("gm") as pg:
            wm, aff = io.load_nifti(pw, "embedded wm")
            gm, _ = io.load_nifti(pg, "embedded gm")
        source, csf = "ICBM152 2009a (nilearn)", None
    else:
        assert cfg.gm is not None
        wm, aff = io.load_nifti(cfg.wm, "--wm")
        gm, aff_g = io.load_nifti(cfg.gm, "--gm")
        require(gm.shape == wm.shape, f"--gm: shape {gm.shape} differs from --wm shape {wm.shape}")
        require(np.allclose(aff, aff_g, atol=1e-3), "--gm: affine differs from --wm affine")
        csf = None
        if cfg.csf is not None:
            csf, aff_c = io.load_nifti(cfg.csf, "--csf")
            require(csf.shape == wm.shape,
                    f"--csf: shape {csf.shape} differs from --wm shape {wm.shape}")
            require(np.allclose(aff, aff_c, atol=1e-3), "--csf: affine differs from --wm affine")
        source = f"{cfg.wm}, {cfg.gm}" + (f", {cfg.csf}" if cfg.csf else "")
    for name, a in (("wm", wm), ("gm", gm), ("csf", csf)):
        if a is not None:
            require(float(a.min()) >= -1e-6 and float(a.max()) <= 1 + 1e-6,
                    f"--{name}: values must be tissue fractions in [0, 1]")
    wm, gm = np.clip(wm, 0, 1), np.clip(gm, 0, 1)
    derived = csf is None
    csf = derive_csf(wm, gm) if csf is None else np.clip(csf, 0, 1)
    f = cfg.downsample
    if f > 1:
        require(f <= min(wm.shape), f"--downsample {f} is larger than the image {wm.shape}")
        wm, gm, csf = (block_average(a, (f, f, f)) for a in (wm, gm, csf))
        aff = coarse_affine(aff, (f, f, f))
        source += f", block-averaged x{f}"
    return _Maps(wm=wm, gm=gm, csf=csf, affine=aff, source=source, csf_derived=derived)


def _geometry(maps: _Maps, closed_below: float | None = None, cache: bool = False) -> Geometry:
    """The brain box with its phase field (from the user's cache with ``cache``), or with
    ``closed_below = c`` the binary domain ``phi = (wm + gm >= c)`` (module header)."""
    geom = from_maps(maps.wm, maps.gm, maps.affine, maps.csf, margin=5, source=maps.source)
    if closed_below is None:
        return geom.with_phase_field(cache=cache)
    phi = np.ascontiguousarray((geom.wm + geom.gm) >= closed_below, dtype=np.float64)
    return dataclasses.replace(geom, phi=phi, phase_field_info={
        "rule": f"phi = (wm + gm >= {closed_below:g}), no phase field"})


def _check_origin(geom: Geometry, origin: tuple[float, ...]) -> np.ndarray:
    local = geom.world_to_local(np.asarray(origin, dtype=np.float64))
    hi = (np.asarray(geom.shape) - 1) * np.asarray(geom.spacing)
    where = tuple(round(float(v), 1) for v in origin)
    if np.any(local < 0) or np.any(local > hi):
        raise InputError(f"--origin-mm {where} is outside the brain (beyond the brain's box)")
    assert geom.phi is not None
    phi = geom.value_at(geom.phi, local)
    if phi < 0.5:
        raise InputError(f"--origin-mm {where} is outside the brain (phi = {phi:.2f} < 0.5)")
    return local


def threshold_labels(u: np.ndarray, conv: LabelConvention, theta_e: float, theta_c: float,
                     theta_n: float) -> np.ndarray:
    """Labels (uint8) of a density: edema ``[theta_e, theta_c)``, enhancing ``[theta_c, theta_n)``,
    necrosis ``>= theta_n``, 0 below ``theta_e``."""
    lab = np.zeros(u.shape, dtype=np.uint8)
    lab[u >= theta_e] = conv.edema[0]
    lab[u >= theta_c] = conv.enhancing[0]
    lab[u >= theta_n] = conv.necrosis[0]
    return lab


def boundary_noise(labels: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Each voxel with a 6- (4- in 2D) neighbour of another label takes, with probability ``p``,
    the label of one such neighbour (uniform choice; all decided on the input labels).

    The array edge is treated as a copy of the edge voxel (no wrap-around)."""
    pad = np.pad(labels, 1, mode="edge")
    core = tuple(slice(1, -1) for _ in range(labels.ndim))
    nbrs = []
    for ax in range(labels.ndim):
        for lo, hi in ((2, None), (0, -2)):
            sl = list(core)
            sl[ax] = slice(lo, hi)
            nbrs.append(pad[tuple(sl)])
    stack = np.stack(nbrs)
    differ = stack != labels[None]
    count = differ.sum(axis=0)
    boundary = count > 0
    flip = boundary & (rng.random(labels.shape) < p)
    out = labels.copy()
    m = int(flip.sum())
    if m == 0:
        return out
    r = rng.integers(0, count[flip])
    cum = np.cumsum(differ[:, flip], axis=0)
    k = np.argmax(cum > r[None], axis=0)
    out[flip] = stack[:, flip][k, np.arange(m)]
    return out


def _day_name(d: float) -> str:
    return f"{d:g}"


@dataclass(frozen=True, eq=False)
class _Run:
    """The truth of one patient: ``truth.json`` without file names, labels and u (float32) per
    snapshot on the box, the snapshot days, and the start as the solver starts from it."""

    truth: dict[str, Any]
    labels: list[np.ndarray]
    us: list[np.ndarray]
    days: list[float]
    start: np.ndarray


def _simulate_patient(cfg: SynthConfig, geom: Geometry, progress: bool = False) -> _Run:
    """Run the truth (module header)."""
    from scipy import ndimage

    conv = cfg.convention
    origin = tuple(float(v) for v in (cfg.origin_mm if cfg.origin_mm is not None
                                      else DEFAULT_SEED_WORLD_MM))
    local = _check_origin(geom, origin)
    days = [float(d) for d in cfg.scan_days]
    rec_day = cfg.recurrence_day
    all_days = days + ([rec_day] if rec_day is not None else [])
    times = [cfg.age_days + d for d in all_days]
    start = cfg.start
    assert geom.phi is not None
    # as the solver starts: u0 in active cells (phi >= its phi_min 1e-3) only
    u0 = np.where(geom.phi >= 1e-3, start.density(geom, local), 0.0)
    res = simulate(geom, cfg.dw, cfg.rho, times, u0=u0, ratio=cfg.ratio,
                   safety=cfg.safety if cfg.scheme == "euler" else STAGE_SAFETY,
                   progress=progress,
                   face_mean=cfg.face_mean,
                   scheme=cfg.scheme,
                   dt=SYNTH_RHO_DT / cfg.rho if cfg.scheme == "strang-rkl2" else None)
    rng = np.random.default_rng(cfg.seed)
    sigma = [cfg.blur_mm / h for h in geom.spacing]
    labels, us = [], []
    for u in res.u:
        u32 = u.astype(np.float32)
        v = u32.astype(np.float64)
        if cfg.blur_mm > 0:
            v = ndimage.gaussian_filter(v, sigma=sigma, mode="nearest")
        lab = threshold_labels(v, conv, cfg.theta_e, cfg.theta_c, cfg.theta_n)
        if cfg.label_noise > 0:
            lab = boundary_noise(lab, cfg.label_noise, rng)
        labels.append(lab)
        us.append(u32)
    ml = geom.voxel_volume / 1000.0
    vox = np.linalg.inv(geom.input_affine) @ np.r_[origin, 1.0]
    truth: dict[str, Any] = {
        "origin_world_mm": list(origin),
        "origin_voxel": [float(v) for v in vox[:3]],
        "dw": cfg.dw, "rho": cfg.rho, "ratio": cfg.ratio, "dg": cfg.dw / cfg.ratio,
        "lambda_mm": math.sqrt(cfg.dw / cfg.rho), "rho_T": cfg.rho * cfg.age_days,
        "dw_T": cfg.dw * cfg.age_days, "front_speed_mm_per_day": 2 * math.sqrt(cfg.dw * cfg.rho),
        "age_days": cfg.age_days, "scan_days": days,
        "recurrence_after": cfg.recurrence_after, "recurrence_day": rec_day,
        "thresholds": {"theta_c": cfg.theta_c, "theta_e": cfg.theta_e, "theta_n": cfg.theta_n},
        "noise": {"label_noise": cfg.label_noise, "blur_mm": cfg.blur_mm},
        "seed": cfg.seed,
        "labels": conv.name,
        "label_values": {"necrosis": list(conv.necrosis), "edema": list(conv.edema),
                         "enhancing": list(conv.enhancing), "cavity": list(conv.cavity)},
        "solver": {"scheme": cfg.scheme, "safety": cfg.safety, "dt_days": res.dt,
                   "steps": res.steps, "wall_seconds": res.seconds},
        "start": dict(start.describe(), day=-cfg.age_days, max_u=float(u0.max()),
                      burden_ml=float((geom.phi * u0).sum()) * ml),
        "model": cfg.model(),
        "snapshots": [],
    }
    for d, lab, u in zip(all_days, labels, us):
        core = np.isin(lab, conv.necrosis + conv.enhancing)
        whole = core | np.isin(lab, conv.edema)
        nwhole = int(whole.sum())
        truth["snapshots"].append({
            "day": d, "age_days": cfg.age_days + d,
            "kind": "scan" if len(truth["snapshots"]) < len(days) else "recurrence",
            "whole_ml": nwhole * ml, "core_ml": int(core.sum()) * ml,
            "enhancing_ml": int(np.isin(lab, conv.enhancing).sum()) * ml,
            "necrosis_ml": int(np.isin(lab, conv.necrosis).sum()) * ml,
            "whole_radius_mm": (3 * nwhole * geom.voxel_volume / (4 * math.pi)) ** (1 / 3),
            "max_u": float(u.max())})
    return _Run(truth, labels, us, all_days, u0.astype(np.float32))


def _write_patient(folder: Path, cfg: SynthConfig, maps: _Maps, geom: Geometry,
                   progress: bool = False) -> dict[str, Any]:

    run = _simulate_patient(cfg, geom, progress)
    truth, labels, us, all_days = run.truth, run.labels, run.us, run.days
    aff = maps.affine
    ts = folder / "tissue_segmentation"
    for name, a in (("wm", maps.wm), ("gm", maps.gm), ("csf", maps.csf)):
        io.save_nifti_atomic(ts / f"{name}_pbmap.nii.gz", a, aff, description=f"gbm synth {name}")
    scans = []
    n_scans = len(cfg.scan_days)
    for i, (d, lab, u) in enumerate(zip(all_days, labels, us)):
        full_lab = geom.to_full(lab).astype(np.uint8)
        if i < n_scans:
            rel = ("tumor_segmentation/tumor_seg.nii.gz" if i == 0
                   else f"tumor_segmentation/tumor_seg_day{_day_name(d)}.nii.gz")
            scans.append({"file": rel, "day": d})
        else:
            rel = "longitudinal/recurrence_preop.nii.gz"
        io.save_labels_atomic(folder / rel, full_lab, aff)
        u_rel = f"truth/u_day{_day_name(d)}.nii.gz"
        io.save_nifti_atomic(folder / u_rel, geom.to_full(u), aff,
                             description=f"gbm synth true u day {_day_name(d)}")
        truth["snapshots"][i].update({"file": rel, "u_file": u_rel})
    io.save_nifti_atomic(folder / "truth/u_start.nii.gz", geom.to_full(run.start), aff,
                         description="gbm synth start u0 (age 0)")
    truth["start"]["file"] = "truth/u_start.nii.gz"
    listing: dict[str, Any] = {"scans": scans}
    if cfg.recurrence_day is not None:
        listing["recurrence"] = {"file": "longitudinal/recurrence_preop.nii.gz",
                                 "day": cfg.recurrence_day}
    listing["labels"] = cfg.convention.name
    io.write_json_atomic(folder / "scans.json", listing)
    truth.update({
        "maps": maps.source,
        "csf": CSF_NOTE if maps.csf_derived else "given",
        "grid": {"shape": list(maps.wm.shape), "spacing_mm": [float(v) for v in geom.spacing],
                 "affine": maps.affine.tolist(), "downsample": cfg.downsample,
                 "box_offset": list(geom.offset), "box_shape": list(geom.shape)},
        "note": TRUTH_NOTE.format(stepping=cfg.stepping_text()),
        "gbm_version": __version__,
        "config": asdict(cfg),
        "units": {"length": "mm", "time": "days", "volume": "ml", "Dw": "mm^2/day",
                  "rho": "1/day"},
    })
    io.write_json_atomic(folder / "truth.json", truth)
    return truth


def synth(cfg: SynthConfig, out: str | Path, force: bool = False,
          progress: bool = False) -> dict[str, Any]:
    """Write one synthetic patient folder (module header) and return its truth (``truth.json``).

    Raises
    ------
    InputError
        For a bad setting, an origin outside the brain or an existing ``out`` without ``force``.
    """
    cfg.validate()
    io.check_output(out, force)
    maps = _load_maps(cfg)
    geom = _geometry(maps, cfg.closed_below, cfg.phase_cache)
    with io.staged_outdir(out, force) as tmp:
        truth = _write_patient(tmp, cfg, maps, geom, progress)
    return truth


def _cohort_origin(geom: Geometry, centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random white-matter voxel (wm >= 0.9) within 30 mm of ``centre`` (local mm), at least 25 mm
    from the brain mask's boundary if any such voxel exists, else among the deepest 20 %."""
    from scipy import ndimage

    assert geom.phi is not None
    sp = np.asarray(geom.spacing)
    mask = geom.mask
    depth = ndimage.distance_transform_edt(mask, sampling=sp)
    idx = np.indices(geom.shape).reshape(geom.ndim, -1).T * sp
    dist = np.linalg.norm(idx - centre, axis=1).reshape(geom.shape)
    cand = (geom.wm >= 0.9) & mask & (geom.phi >= 0.5) & (dist <= 30.0)
    if not cand.any():
        cand = (geom.wm >= 0.5) & mask & (geom.phi >= 0.5) & (dist <= 30.0)
    require(bool(cand.any()), "no white matter within 30 mm of the cohort's origin")
    deep = cand & (depth >= 25.0)
    if not deep.any():
        deep = cand & (depth >= 0.8 * float(depth[cand].max()))
    pick = np.argwhere(deep)
    return pick[int(rng.integers(len(pick)))] * sp


def synth_cohort(cfg: SynthConfig, n: int, out: str | Path, force: bool = False,
                 progress: bool = False) -> list[dict[str, Any]]:
    """Write ``n`` synthetic patients ``out/patient-000``, ... and ``out/cohort.json``.

    Each patient has its own origin (see :func:`_cohort_origin`, around ``cfg``'s origin), Dw and
    rho drawn log-uniformly within a factor 1.5 of ``cfg``'s, its own noise seed, and ``cfg``'s scan
    schedule, age and thresholds; draws are reproducible for ``cfg.seed``.
    """
    cfg.validate()
    require(isinstance(n, int) and n >= 1, f"--cohort must be a positive integer, got {n}")
    io.check_output(out, force)
    maps = _load_maps(cfg)
    geom = _geometry(maps, cfg.closed_below, cfg.phase_cache)
    centre = _check_origin(geom, cfg.origin_mm if cfg.origin_mm is not None
                           else DEFAULT_SEED_WORLD_MM)
    truths = []
    with io.staged_outdir(out, force) as tmp:
        for i in range(n):
            rng = np.random.default_rng([cfg.seed, i])
            origin = geom.local_to_world(_cohort_origin(geom, centre, rng))
            f_dw, f_rho = np.exp(rng.uniform(-math.log(1.5), math.log(1.5), size=2))
            pcfg = dataclasses.replace(
                cfg, origin_mm=tuple(round(float(v), 4) for v in origin),
                dw=float(cfg.dw * f_dw), rho=float(cfg.rho * f_rho),
                seed=int(rng.integers(2**31 - 1)))
            t = _write_patient(tmp / f"patient-{i:03d}", pcfg, maps, geom, progress)
            truths.append(dict(t, patient=f"patient-{i:03d}"))
        io.write_json_atomic(tmp / "cohort.json", {
            "n": n, "base_config": asdict(cfg),
            "patients": [{k: t[k] for k in ("patient", "origin_world_mm", "dw", "rho",
                                             "lambda_mm", "rho_T", "seed")} for t in truths]})
    return truths
