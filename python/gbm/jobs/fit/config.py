"""The settings of ``gbm fit`` (:class:`FitConfig`) and their conversions into the settings of
each method it runs: the FD fit, the PINN fit, the posterior, the identifiability assumption.

A :class:`FitConfig` comes from a TOML file and the command-line flags (:func:`gbm.config.build`)
and is written into ``results.json`` (``config``), from where :meth:`FitConfig.from_json` reads it
back. Units: mm, days.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from gbm import config, extras
from gbm.clinical.identifiability import Assumption
from gbm.errors import require
from gbm.inference.posterior import PosteriorSettings
from gbm.jobs.tissue.config import DEFAULT_PRESET, PRESETS
from gbm.pinn.bilo_settings import BiloSettings
from gbm.pinn.settings import PinnFitSettings
from gbm.problem.segmentation.levels import Stepping
from gbm.problem.segmentation.model import THETA_C, THETA_E
from gbm.problem.segmentation.unknowns import PatientFitSettings

__all__ = ["FitConfig"]


@dataclass(frozen=True)
class FitConfig:
    """Settings of ``gbm fit`` (units: mm, days).

    Inputs: ``wm``, ``gm`` [``csf``] and ``scans`` ("SEG.nii.gz@DAY" each), or ``patient`` (a
    PredictGBM-layout or container-layout folder); ``labels`` (brats2021, brats2023,
    brats2024post, tum, a custom mapping, or None to detect); ``tumour_tissue`` ("wm": the tumour
    region counts as white matter); ``recurrence`` (a follow-up segmentation for plan coverage);
    ``slice`` (axial slice index for a 2D fit; None: 3D); ``tissue_preset`` (a BraTS case folder
    without maps: the ``gbm tissue`` preset of the maps made on the way).

    Model and unknowns: ``ratio`` Dw/Dg; ``lambda_range`` (mm); ``fit_thresholds`` and the
    thresholds / their ranges; ``assume_days`` (tumour age at the first scan) or
    ``assume_speed`` (asymptotic front speed 2 sqrt(Dw rho), mm/day) for absolute Dw and rho from
    one scan; ``start``: "paper" (the paper's Gaussian at the fitted origin) or "first-scan"
    (several scans: solved from a density built from the first scan; FD only).

    Fit: ``coarse_mm``, ``crop_mm``, ``global_solves``, ``local_solves``, ``popsize``,
    ``scheme``, ``safety`` (Euler only), ``seed`` (see
    :class:`gbm.problem.segmentation.unknowns.PatientFitSettings`); ``phase_cache``: reuse phase
    fields from the user's cache (:mod:`gbm.model.phase_cache`).

    Uncertainty: ``uncertainty`` on/off, ``walkers``, ``steps``, ``burn``, ``corr_mm``,
    ``draws``, ``prob_levels`` (see :class:`gbm.inference.posterior.PosteriorSettings`).

    Outputs: ``forecast`` (days after the last scan), ``margin_mm`` (standard CTV margin),
    ``iso_levels`` (extra iso-density plans).

    Method: ``method`` ("fd", "pinn" or "bilo": :mod:`gbm.pinn.bilo`), the ``pinn_*`` knobs
    (budget and iterations also BiLO's, see :meth:`bilo_settings`), ``device`` and ``threads`` (see
    :class:`gbm.pinn.settings.PinnFitSettings`); ``recipe`` of ``method="pinn"``: "gbm"
    (:mod:`gbm.pinn.patient`) or "pinn-gbm" (PINN-GBM's recipe, :mod:`gbm.pinn.recipe`).
    """

    wm: str | None = None
    gm: str | None = None
    csf: str | None = None
    scans: tuple[str, ...] = ()
    patient: str | None = None
    labels: str | None = None
    tumour_tissue: str | None = None
    recurrence: str | None = None
    slice: int | None = None
    tissue_preset: str = DEFAULT_PRESET
    ratio: float = 10.0
    lambda_range: tuple[float, float] = (0.5, 12.0)
    fit_thresholds: bool = False
    theta_c: float = THETA_C
    theta_e: float = THETA_E
    theta_c_range: tuple[float, float] = (0.5, 0.85)
    theta_e_range: tuple[float, float] = (0.05, 0.5)
    assume_days: float | None = None
    assume_speed: float | None = None
    start: str = "paper"
    coarse_mm: float = 2.0
    crop_mm: float = 15.0
    global_solves: int = 500
    local_solves: int = 30
    popsize: int | None = None
    scheme: str = "strang-rkl2"
    safety: float = 0.5
    phase_cache: bool = True
    seed: int = 0
    uncertainty: bool = False
    walkers: int | None = None
    steps: int = 60
    burn: int = 20
    corr_mm: float = 4.0
    draws: int = 16
    prob_levels: tuple[float, ...] = (0.25,)
    forecast: tuple[float, ...] = ()
    margin_mm: float = 15.0
    iso_levels: tuple[float, ...] = ()
    method: str = "fd"
    # the --pinn-* defaults are the recipe's (gbm.pinn.settings, torch-free)
    pinn_budget: float = PinnFitSettings.time_budget
    pinn_iters: int = PinnFitSettings.max_iters
    pinn_colloc: int = PinnFitSettings.colloc
    pinn_data_points: int = PinnFitSettings.data_points
    pinn_w_data: float = PinnFitSettings.w_data
    pinn_compile: bool = PinnFitSettings.compile
    recipe: str = PinnFitSettings.recipe   # --method pinn: "gbm" or "pinn-gbm" (gbm.pinn.recipe)
    device: str = "auto"
    threads: int | None = None

    # ------------------------------------------------------------ conversions

    def pinn_settings(self) -> PinnFitSettings:
        """The PINN fit's settings (``method="pinn"``)."""
        return PinnFitSettings(time_budget=self.pinn_budget, max_iters=self.pinn_iters,
                               colloc=self.pinn_colloc, data_points=self.pinn_data_points,
                               w_data=self.pinn_w_data, compile=self.pinn_compile,
                               device=self.device,
                               threads=self.threads, seed=self.seed, recipe=self.recipe)

    def bilo_settings(self) -> BiloSettings:
        """The BiLO fit's settings (``method="bilo"``): ``pinn_budget``, ``pinn_iters``,
        ``device``, ``threads``, ``seed``; ``pinn_colloc`` and ``pinn_data_points`` where they
        differ from the PINN's defaults, else BiLO's own (:class:`BiloSettings`)."""
        pd = PinnFitSettings
        return BiloSettings(
            time_budget=self.pinn_budget, max_iters=self.pinn_iters, device=self.device,
            threads=self.threads, seed=self.seed,
            colloc=self.pinn_colloc if self.pinn_colloc != pd.colloc else BiloSettings.colloc,
            data_points=(self.pinn_data_points if self.pinn_data_points != pd.data_points
                         else BiloSettings.data_points))

    def fit_settings(self) -> PatientFitSettings:
        """The unknowns' boxes and the FD fit's budgets (the fields of the same names)."""
        names = {f.name for f in fields(PatientFitSettings)}
        return PatientFitSettings(**{k: v for k, v in asdict(self).items() if k in names})

    def stepping(self) -> Stepping:
        """The time stepping of a solve that picks its own step (``scheme``; Euler at
        ``safety``)."""
        return Stepping(self.scheme, safety=self.safety)

    def posterior_settings(self) -> PosteriorSettings:
        """The posterior sampler's and the probability maps' settings."""
        return PosteriorSettings(walkers=self.walkers, steps=self.steps, burn=self.burn,
                                 corr_mm=self.corr_mm, draws=self.draws,
                                 levels=tuple(self.prob_levels), seed=self.seed)

    def assumption(self) -> Assumption:
        """What one scan's absolute Dw, rho and age rest on (``assume_days``/``assume_speed``)."""
        return Assumption(days=self.assume_days, speed=self.assume_speed)

    def to_json(self) -> dict[str, Any]:
        """Every field, sequences as lists (``results.json`` ``config``)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FitConfig:
        """Read back :meth:`to_json` (lists become tuples; missing fields take their defaults).

        Raises
        ------
        InputError
            A key that is not a field.
        """
        return config.build(cls, d)

    # ------------------------------------------------------------ validation

    def validate(self) -> None:
        """Checks that need no files (one-line InputError each)."""
        require(self.margin_mm > 0, f"--margin-mm must be > 0 mm, got {self.margin_mm}")
        require(self.tissue_preset in PRESETS, f"--tissue-preset must be one of "
                f"{', '.join(PRESETS)}, got {self.tissue_preset!r}")
        require(self.assume_days is None or self.assume_speed is None,
                "give --assume-days or --assume-speed, not both")
        for name in ("assume_days", "assume_speed"):
            v = getattr(self, name)
            require(v is None or (math.isfinite(v) and v > 0),
                    f"--{name.replace('_', '-')} must be > 0, got {v}")
        for f in self.forecast:
            require(math.isfinite(f) and f > 0,
                    f"--forecast days must be > 0 (days after the last scan), got {f}")
        for lv in self.iso_levels:
            require(0 < lv < 1, f"--iso-levels must be in (0, 1), got {lv}")
        require(self.ratio > 0, f"--ratio must be > 0, got {self.ratio}")
        require(self.patient is not None or self.scans,
                "give --scan SEG.nii.gz@DAY (with --wm/--gm) or --patient DIR")
        require(self.method in ("fd", "pinn", "bilo"), f"--method must be fd, pinn or bilo, "
                f"got {self.method!r}")
        require(self.method == "pinn" or self.recipe == PinnFitSettings.recipe,
                f"--recipe {self.recipe} is for --method pinn")
        if self.start != "paper":
            require(self.method == "fd" and not self.uncertainty,
                    f"--start {self.start} needs --method fd without --uncertainty")
        if self.method in ("pinn", "bilo"):
            self._validate_pinn()
        else:
            require(self.device == "auto" and self.threads is None,
                    "--device and --threads are for --method pinn or bilo")
        self.fit_settings().validate()
        if self.uncertainty:
            self.posterior_settings().validate()

    def _validate_pinn(self) -> None:
        extras.require("pinn", f"--method {self.method}")
        require(self.method == "pinn" or not self.fit_thresholds,
                "--fit-thresholds is not supported by --method bilo (thresholds fixed)")
        require(not self.uncertainty, "--uncertainty needs --method fd (the PINN fit gives "
                "a point estimate)")
        require(self.device in ("auto", "cpu") or self.device.startswith("cuda"),
                f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.device.startswith("cuda"):
            import torch

            require(torch.cuda.is_available(), f"--device {self.device}: CUDA is not "
                    "available on this machine (no silent CPU run; use --device cpu)")
        self.pinn_settings().validate()
        if self.method == "bilo":
            self.bilo_settings().validate()
