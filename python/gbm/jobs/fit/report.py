"""What a patient fit found: :class:`FitReport`, the typed content of ``results.json``.

``results.json`` is written from a :class:`FitReport` (:meth:`FitReport.to_json`) and read back
typed (:meth:`FitReport.read`, e.g. by ``gbm cohort``). Every part is a frozen dataclass whose
``to_json`` gives the JSON object with the keys (and their order) ``results.json`` has always had,
and whose ``from_json`` reads it back. Units: mm, days, Dw mm^2/day, rho 1/day, volumes ml.

Sections: ``method`` (what ran, in words), ``estimates`` (:class:`Estimates`),
``identifiability`` (:data:`gbm.clinical.identifiability.IDENTIFIABILITY`), ``scans`` (one
:class:`ScanReport` each), ``output_days`` (days since the first scan of the written maps),
``forecast_days_after_last_scan``, ``plans`` (:class:`PlansReport`), ``labels``, ``solves`` and
``seconds`` per stage, ``misfit``, ``status``, ``resumed_stages``, ``search``
(:class:`SearchReport`), ``grids`` (:class:`Grids`), ``source``, ``tumour_tissue``, ``config``
(:class:`gbm.jobs.fit.config.FitConfig`), ``versions``, ``units``, with ``--uncertainty``
``uncertainty`` (:class:`UncertaintyReport`), with ``--method pinn`` ``pinn``
(:class:`PinnReport`), and ``quality`` (:class:`gbm.clinical.quality.Quality`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from gbm.clinical.plans import PlanReport
from gbm.clinical.quality import Quality
from gbm.inference.posterior import interval
from gbm.jobs.fit.config import FitConfig
from gbm.pinn.settings import PinnFitSettings

__all__ = ["UNITS", "Estimates", "FitReport", "Grids", "PinnReport", "PlansReport", "ScanReport",
           "SearchReport", "Stats", "UncertaintyReport"]

#: ``results.json`` ``units``.
UNITS = {"length": "mm", "time": "days", "dw": "mm^2/day", "rho": "1/day", "volume": "ml"}


def _plain(v: Any) -> Any:
    """Tuples as lists, recursively (what ``json.dumps`` writes them as)."""
    if isinstance(v, (tuple, list)):
        return [_plain(a) for a in v]
    if isinstance(v, dict):
        return {k: _plain(a) for k, a in v.items()}
    return v


def _record(cls: type, d: dict[str, Any], tuples: Sequence[str] = ()) -> Any:
    """``cls`` from the keys of ``d`` named by its fields (absent optional ones: their default),
    the fields named in ``tuples`` as tuples."""
    kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
    for name in tuples:
        if kw.get(name) is not None:
            kw[name] = tuple(kw[name])
    return cls(**kw)


@dataclass(frozen=True)
class Estimates:
    """The estimate: origin (world mm), lambda = sqrt(Dw/rho) (mm), rho*T, the thresholds, and Dw,
    rho, the age at the first scan and the front speed 2 sqrt(Dw rho) when known (see
    ``dw_rho_basis``); ``dw_T`` = lambda^2 rho*T (Dw x age)."""

    origin_world_mm: tuple[float, ...]
    lambda_mm: float
    rho_T: float
    theta_c: float
    theta_e: float
    thresholds_fitted: bool
    dw: float | None
    rho: float | None
    age_days_at_first_scan: float | None
    dw_rho_basis: str
    dw_T: float
    front_speed_mm_per_day: float | None

    def to_json(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Estimates:
        return _record(cls, d, ("origin_world_mm",))


@dataclass(frozen=True)
class ScanReport:
    """One scan: its day (since the first scan) and file, the Dice of the model at the estimate
    against its core and whole tumour, the segmented and modelled volumes (ml); with the PINN,
    the Dice of the network's own u (``pinn_dice_*``, absent otherwise)."""

    day: float
    file: str
    dice_core: float
    dice_whole: float
    core_ml: float
    whole_ml: float
    model_core_ml: float
    model_whole_ml: float
    pinn_dice_core: float | None = None
    pinn_dice_whole: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("pinn_dice_core", "pinn_dice_whole"):
            if d[k] is None:
                del d[k]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ScanReport:
        return _record(cls, d)


@dataclass(frozen=True)
class PlansReport:
    """The plans at the last scan: their volumes and recurrence coverage (``volumes``), or, when
    the last scan has no tumour core, a ``note`` saying why there are none; the plan day, the
    margin and the definitions of both plans in words."""

    volumes: PlanReport | None
    note: str | None
    plan_day: float
    margin_mm: float
    model_plan: str
    standard_plan: str

    def to_json(self) -> dict[str, Any]:
        head = self.volumes.to_json() if self.volumes is not None else {"note": self.note}
        return dict(head, plan_day=self.plan_day, margin_mm=self.margin_mm,
                    model_plan=self.model_plan, standard_plan=self.standard_plan)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PlansReport:
        vol = None if "note" in d else PlanReport.from_json(d)
        return cls(volumes=vol, note=d.get("note"), plan_day=d["plan_day"],
                   margin_mm=d["margin_mm"], model_plan=d["model_plan"],
                   standard_plan=d["standard_plan"])


@dataclass(frozen=True)
class SearchReport:
    """The search coordinates (:class:`gbm.problem.segmentation.unknowns.Unknowns`): names, the
    estimate ``x`` and the box ``lo``..``hi``."""

    names: tuple[str, ...]
    x: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SearchReport:
        return _record(cls, d, ("names", "x", "lo", "hi"))


@dataclass(frozen=True)
class Grids:
    """The input grid's spacing (mm), the brain box, the fit's sub-box, 2 or 3 dimensions, and the
    solver steps of the written model."""

    input_spacing_mm: tuple[float, ...]
    box_shape: tuple[int, ...]
    fit_sub_box_shape: tuple[int, ...]
    dimension: int
    forward_steps: int

    def to_json(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Grids:
        return _record(cls, d, ("input_spacing_mm", "box_shape", "fit_sub_box_shape"))


@dataclass(frozen=True)
class Stats:
    """A posterior quantity: median and central 90 % interval."""

    median: float
    ci90: tuple[float, float]

    @classmethod
    def of(cls, values: np.ndarray) -> Stats:
        lo, hi = interval(values, 0.9)
        return cls(float(np.median(values)), (lo, hi))

    def to_json(self) -> dict[str, Any]:
        return {"median": self.median, "ci90": list(self.ci90)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Stats:
        return cls(d["median"], tuple(d["ci90"]))  # type: ignore[arg-type]


#: Quantities with an interval, in the order of ``results.json`` (absent ones left out).
_INTERVALS = ("lambda_mm", "rho_t0", "dw", "rho", "t0_days", "theta_c", "theta_e")


@dataclass(frozen=True)
class UncertaintyReport:
    """The posterior (:mod:`gbm.inference.posterior`): the likelihood's sigma and tempering, the
    chain's acceptance and autocorrelation times, the number of samples, and the median and 90 %
    interval of lambda, rho*T, Dw, rho (fitted from several scans, or from the assumption with
    one), the age (several scans), the thresholds (when fitted) and each origin coordinate."""

    method: str
    sigma_u: float
    temper_voxels: float
    acceptance: float
    autocorr_steps: tuple[float | None, ...] | None
    samples: int
    lambda_mm: Stats
    rho_t0: Stats
    origin_world_mm: tuple[Stats, ...]
    dw: Stats | None = None
    rho: Stats | None = None
    t0_days: Stats | None = None
    theta_c: Stats | None = None
    theta_e: Stats | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method, "sigma_u": self.sigma_u, "temper_voxels": self.temper_voxels,
            "acceptance": self.acceptance, "autocorr_steps": _plain(self.autocorr_steps),
            "samples": self.samples}
        # Dw and rho from one scan's assumption follow the origin; fitted ones precede it
        late = ("dw", "rho") if self.t0_days is None else ()
        for k in _INTERVALS:
            v = getattr(self, k)
            if v is not None and k not in late:
                out[k] = v.to_json()
        out["origin_world_mm"] = [s.to_json() for s in self.origin_world_mm]
        for k in late:
            v = getattr(self, k)
            if v is not None:
                out[k] = v.to_json()
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UncertaintyReport:
        kw = {k: Stats.from_json(d[k]) for k in _INTERVALS if k in d}
        ac = d["autocorr_steps"]
        return cls(method=d["method"], sigma_u=d["sigma_u"], temper_voxels=d["temper_voxels"],
                   acceptance=d["acceptance"], autocorr_steps=None if ac is None else tuple(ac),
                   samples=d["samples"],
                   origin_world_mm=tuple(Stats.from_json(s) for s in d["origin_world_mm"]),
                   **kw)


@dataclass(frozen=True)
class PinnReport:
    """The PINN run (``--method pinn``): iterations and why it stopped, device and threads, its
    length and time scales, the scaled scan times, data and collocation points, its settings,
    this process's peak memory so far (a cohort worker: all its fits) and what its outputs are."""

    iterations: int
    stopped: str
    device: str
    threads: int
    length_scale_mm: float
    time_scale_days: float
    center_local_mm: tuple[float, ...]
    scan_t_scaled: tuple[float, ...]
    data_voxels: int
    collocation_points: int
    settings: PinnFitSettings
    process_peak_rss_gb: float | None
    outputs: str

    def to_json(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PinnReport:
        return _record(cls, dict(d, settings=PinnFitSettings(**d["settings"])),
                       ("center_local_mm", "scan_t_scaled"))


@dataclass(frozen=True)
class FitReport:
    """Everything ``results.json`` holds (module header), typed."""

    method: str
    estimates: Estimates
    identifiability: str
    scans: tuple[ScanReport, ...]
    output_days: tuple[float, ...]
    forecast_days_after_last_scan: tuple[float, ...]
    plans: PlansReport
    labels: str
    solves: dict[str, int]
    seconds: dict[str, float]
    misfit: float
    status: str
    resumed_stages: tuple[str, ...]
    search: SearchReport
    grids: Grids
    source: str
    tumour_tissue: str | None
    config: FitConfig
    versions: dict[str, Any]
    quality: Quality
    uncertainty: UncertaintyReport | None = None
    pinn: PinnReport | None = None

    @property
    def total_solves(self) -> int:
        """Forward solves of all stages (posterior included)."""
        return int(sum(self.solves.values()))

    def to_json(self) -> dict[str, Any]:
        """The content of ``results.json`` (keys in its order)."""
        out: dict[str, Any] = {
            "method": self.method, "estimates": self.estimates.to_json(),
            "identifiability": self.identifiability,
            "scans": [s.to_json() for s in self.scans],
            "output_days": list(self.output_days),
            "forecast_days_after_last_scan": list(self.forecast_days_after_last_scan),
            "plans": self.plans.to_json(), "labels": self.labels,
            "solves": dict(self.solves), "seconds": dict(self.seconds),
            "misfit": self.misfit, "status": self.status,
            "resumed_stages": list(self.resumed_stages), "search": self.search.to_json(),
            "grids": self.grids.to_json(), "source": self.source,
            "tumour_tissue": self.tumour_tissue, "config": self.config.to_json(),
            "versions": self.versions, "units": dict(UNITS)}
        if self.uncertainty is not None:
            out["uncertainty"] = self.uncertainty.to_json()
        if self.pinn is not None:
            out["pinn"] = self.pinn.to_json()
        out["quality"] = asdict(self.quality)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FitReport:
        """Read back :meth:`to_json` (KeyError, TypeError or ValueError when ``d`` is not one)."""
        return cls(
            method=d["method"], estimates=Estimates.from_json(d["estimates"]),
            identifiability=d["identifiability"],
            scans=tuple(ScanReport.from_json(s) for s in d["scans"]),
            output_days=tuple(d["output_days"]),
            forecast_days_after_last_scan=tuple(d["forecast_days_after_last_scan"]),
            plans=PlansReport.from_json(d["plans"]), labels=d["labels"],
            solves=dict(d["solves"]), seconds=dict(d["seconds"]), misfit=d["misfit"],
            status=d["status"], resumed_stages=tuple(d["resumed_stages"]),
            search=SearchReport.from_json(d["search"]), grids=Grids.from_json(d["grids"]),
            source=d["source"], tumour_tissue=d["tumour_tissue"],
            config=FitConfig.from_json(d["config"]), versions=dict(d["versions"]),
            quality=Quality(**d["quality"]),
            uncertainty=(UncertaintyReport.from_json(d["uncertainty"]) if "uncertainty" in d
                         else None),
            pinn=PinnReport.from_json(d["pinn"]) if "pinn" in d else None)

    @classmethod
    def read(cls, path: str | Path) -> FitReport:
        """A ``results.json`` file (OSError, or ValueError when it is not a fit's results)."""
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: not a gbm fit results.json ({type(e).__name__}: {e})") \
                from None
