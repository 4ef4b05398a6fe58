"""The steps of a patient fit (:func:`gbm.jobs.fit.run.fit_patient` calls them in this order),
each a function of the settings and the earlier steps' results, each result a small frozen object:

1. :func:`load_inputs` -> :class:`Inputs`: the patient, the brain box with its phase field, each
   scan's regions on the box, the scan days and the brain mask (built once, used by the plans and
   the figures);
2. :func:`build_levels` -> :class:`Setup`: the fit's grids (coarse and fine sub-boxes) and unknowns;
3. :func:`fit` -> :class:`Fitted`: the FD fit (:mod:`gbm.inference.segmentation_fit`) or the PINN
   (:mod:`gbm.pinn.patient`);
4. :func:`sample` -> :class:`Sampled`: the posterior (``--uncertainty``);
5. :func:`solve` -> :class:`ModelRun`: the fitted model on the whole brain at the scans and the
   forecast days, and its Dice against each scan;
6. :func:`network_maps` -> :class:`NetworkMaps`: the PINN's own u at the scans (``--method pinn``);
7. :func:`make_plans` -> :class:`Plans`: the standard, model and iso-density plans at the last scan;
8. :func:`probability_maps`: P(u > level) maps from the posterior;
9. :func:`assemble` -> :class:`gbm.jobs.fit.report.FitReport` from an :class:`Outcome` of them all.

Units: mm, days. Days count from the first scan.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from gbm.clinical import forecasts, plans
from gbm.clinical.identifiability import IDENTIFIABILITY, Absolute, absolute
from gbm.clinical.quality import check_quality
from gbm.errors import require
from gbm.inference.posterior import Posterior, quantities, sample_posterior
from gbm.inference.segmentation_fit import Checkpoint, fit_segmentations
from gbm.jobs.fit.config import FitConfig
from gbm.jobs.fit.report import (
    Estimates,
    FitReport,
    Grids,
    PinnReport,
    PlansReport,
    ScanReport,
    SearchReport,
    Stats,
    UncertaintyReport,
)
from gbm.model.geometry import DEFAULT_EPSILON_MM, Geometry
from gbm.problem.segmentation.levels import (
    FitLevel,
    Regions,
    box_regions,
    make_levels,
    start_and_box,
)
from gbm.problem.segmentation.model import dice
from gbm.problem.segmentation.patient import PatientData, load_patient
from gbm.problem.segmentation.start import FirstScanStart
from gbm.problem.segmentation.unknowns import (
    PatientFitResult,
    PatientFitSettings,
    Physical,
    Unknowns,
)
from gbm.provenance import peak_rss_gb

Bar = Callable[[str, int], Any]

#: ``results.json`` ``method`` per ``--method``.
METHOD_TEXT = {
    "fd": ("FD-based fit of segmentations: CMA-ES on a coarse grid, then trust-region least "
           "squares on the input grid (gbm.inference.segmentation_fit)"),
    "pinn": ("PINN fit of segmentations: network and unknowns trained jointly on the PDE "
             "residual and the segmentation misfit (gbm.pinn.patient)"),
    "bilo": ("BiLO fit of segmentations: bilevel local operator learning, the network trained on "
             "the PDE residual and its parameter gradient, the parameters on the segmentation "
             "misfit only (gbm.pinn.bilo)"),
    "pinn-gbm": ("PINN fit of segmentations with PINN-GBM's recipe (--recipe pinn-gbm): radial "
                 "characteristic fit, pre-training on its FD solution, then the network, "
                 "parameter factors in [0.75, 1.25] and thresholds on the PDE residual + a weak "
                 "sigmoid segmentation loss (gbm.pinn.recipe)"),
}
MODEL_PLAN_TEXT = ("top-k voxels of the fitted u at the last scan inside the brain, k = the "
                   "standard plan's voxel count")
PINN_OUTPUTS_TEXT = ("u_day<D> and the plans: the FD solver at the PINN's estimate (as for "
                     "--method fd); u_pinn_day<D>: the network's own u at the scans, zero outside "
                     "the model's domain phi >= 0.5 (pinn_dice_* in scans)")
POSTERIOR_TEXT = ("emcee ensemble sampler on the coarse grid, shifted to the fine estimate "
                  "(gbm.inference.posterior)")


def progress_bar(enabled: bool) -> Bar | None:
    """A tqdm bar factory ``(stage, total) -> bar`` for the fit's stages, or None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda stage, total: tqdm(total=total, desc=stage, unit="solve", leave=False,
                                     dynamic_ncols=True)


# ---------------------------------------------------------------- 1. inputs

@dataclass(frozen=True, eq=False)
class Inputs:
    """The patient (full input grid), the brain box of the input grid with its phase field
    (``geom``), each scan's regions cropped to the box, the scan days since the first scan, and
    the brain mask on the full input grid (bool)."""

    patient: PatientData
    geom: Geometry
    regions: list[Regions]
    days: list[float]
    brain: np.ndarray

    @property
    def n_scans(self) -> int:
        return len(self.patient.scans)


def load_inputs(cfg: FitConfig) -> Inputs:
    """Read and check the patient (one-line InputError for what the settings cannot fit)."""
    pd = load_patient(wm=cfg.wm, gm=cfg.gm, csf=cfg.csf, scans=cfg.scans,
                      patient_dir=cfg.patient, labels=cfg.labels,
                      tumour_tissue=cfg.tumour_tissue, recurrence=cfg.recurrence)
    n_scans = len(pd.scans)
    require(n_scans > 1 or cfg.assume_days is not None or cfg.assume_speed is not None
            or not cfg.forecast,
            "one scan fixes only lambda and rho*T: --forecast (days) needs --assume-days or "
            "--assume-speed, or a second scan with its date")
    require(n_scans == 1 or (cfg.assume_days is None and cfg.assume_speed is None),
            "--assume-days/--assume-speed are for one scan; with several dated scans the age, "
            "Dw and rho are fitted")
    geom = pd.geometry(slice_index=cfg.slice)
    geom = geom.with_phase_field(epsilon=DEFAULT_EPSILON_MM * min(geom.spacing),
                                 cache=cfg.phase_cache)
    regions = [box_regions(geom, s.regions) for s in pd.scans]
    for s, r in zip(pd.scans, regions):
        require(bool(r.whole.any()), f"{s.path}: no tumour voxels in the brain box"
                + (f" on slice {cfg.slice}" if cfg.slice is not None else ""))
    return Inputs(pd, geom, regions, list(pd.days_since_first), pd.brain_mask())


# ---------------------------------------------------------------- 2. levels

@dataclass(frozen=True, eq=False)
class Setup:
    """The fit's grids (first: the global stage's, last: the fine sub-box on the input grid), its
    unknowns and their settings."""

    levels: list[FitLevel]
    unknowns: Unknowns
    settings: PatientFitSettings

    @property
    def fine(self) -> FitLevel:
        return self.levels[-1]


def build_levels(cfg: FitConfig, inputs: Inputs) -> Setup:
    """The grids and the search box (the PINN works on the input grid only)."""
    settings = cfg.fit_settings()
    if cfg.method in ("pinn", "bilo"):
        settings = replace(settings, coarse_mm=0.0)
    pd = inputs.patient
    levels = make_levels(inputs.geom, inputs.regions, settings,
                         (pd.wm, pd.gm, pd.csf, pd.affine), [s.regions for s in pd.scans],
                         slice_index=cfg.slice, cache=cfg.phase_cache)
    unknowns = start_and_box(levels[-1], inputs.geom, inputs.regions, inputs.days, settings)
    return Setup(levels, unknowns, settings)


def describe(inputs: Inputs, setup: Setup) -> str:
    """The line that announces the fit."""
    g = inputs.geom
    return (f"gbm fit: {inputs.n_scans} scan(s) ({inputs.patient.convention.name} labels), "
            f"{'3D' if g.ndim == 3 else '2D slice'} box {g.shape}, fitting "
            f"{', '.join(setup.unknowns.names)}; levels: "
            + ", ".join(f"{lv.name} {lv.geom.shape}" for lv in setup.levels))


# ---------------------------------------------------------------- 3. fit

@dataclass(frozen=True, eq=False)
class Fitted:
    """The fit's result, the PINN's extras (``--method pinn``) and the origin in world mm."""

    result: PatientFitResult
    pinn: Any       # gbm.pinn.patient.PinnPatientFit or None
    origin_world: np.ndarray

    @property
    def params(self) -> Physical:
        return self.result.params


def fit(cfg: FitConfig, setup: Setup, checkpoint: Checkpoint, pinn_checkpoint: Any,
        progress: bool, say: Callable[[str], None], resume: bool) -> Fitted:
    """Run the fitting method (finished stages come from ``checkpoint``; the PINN keeps its own
    state in the file ``pinn_checkpoint``)."""
    pinn = None
    if cfg.method == "pinn" and cfg.recipe == "pinn-gbm":
        from gbm.pinn.recipe import fit_segmentations_recipe  # torch: the PINN is optional

        res, pinn = fit_segmentations_recipe(setup.fine, setup.unknowns, setup.settings,
                                             cfg.pinn_settings(), checkpoint_path=pinn_checkpoint,
                                             resume=resume, printer=say)
    elif cfg.method == "pinn":
        from gbm.pinn.patient import fit_segmentations_pinn  # torch: the PINN is an optional extra

        res, pinn = fit_segmentations_pinn(setup.fine, setup.unknowns, setup.settings,
                                           cfg.pinn_settings(), checkpoint_path=pinn_checkpoint,
                                           resume=resume, printer=say)
    elif cfg.method == "bilo":
        from gbm.pinn.bilo import fit_segmentations_bilo  # torch: BiLO is in the optional extra

        res, pinn = fit_segmentations_bilo(setup.fine, setup.unknowns, setup.settings,
                                           cfg.bilo_settings(), checkpoint_path=pinn_checkpoint,
                                           resume=resume, printer=say)
    else:
        res = fit_segmentations(setup.levels, setup.unknowns, setup.settings,
                                progress=progress_bar(progress), checkpoint=checkpoint)
    return Fitted(res, pinn, setup.fine.geom.local_to_world(res.params.origin_local))


# ---------------------------------------------------------------- 4. posterior

@dataclass(frozen=True, eq=False)
class Sampled:
    """The posterior and the reported quantities of its samples
    (:func:`gbm.inference.posterior.quantities`)."""

    posterior: Posterior
    quantities: dict[str, np.ndarray]


def sample(cfg: FitConfig, setup: Setup, fitted: Fitted, checkpoint: Checkpoint,
           progress: bool) -> Sampled:
    """Sample the posterior on the first level around the fit (or take it from the checkpoint);
    its solves are appended to the fit's log."""
    res = fitted.result
    saved = checkpoint.load("posterior")
    if saved is not None:
        res.log.extend(saved.pop("log"))
        post = Posterior(samples=np.asarray(saved.pop("samples")), **saved)
    else:
        n_log = len(res.log)
        x_coarse = res.coarse_x if res.coarse_x is not None else res.x
        post = sample_posterior(setup.levels[0], setup.fine, setup.unknowns, setup.settings,
                                x_coarse, res.x, cfg.posterior_settings(), res.log,
                                progress=progress_bar(progress))
        checkpoint.save("posterior", dict(asdict(post), samples=post.samples.tolist(),
                                          log=res.log[n_log:]))
    return Sampled(post, quantities(setup.unknowns, post.samples))


# ---------------------------------------------------------------- 5. the model on the brain

@dataclass(frozen=True, eq=False)
class ModelRun:
    """The fitted model on the brain box: its absolute Dw, rho and age, the output days, u at
    each (box shape), the solver steps, and its agreement with each scan."""

    absolute: Absolute
    days: list[float]
    states: list[np.ndarray]
    steps: int
    scans: list[ScanReport]


def solve(cfg: FitConfig, inputs: Inputs, fitted: Fitted) -> ModelRun:
    """Solve the fitted model at the scans and the forecast days; Dice and volumes per scan."""
    p = fitted.params
    ab = absolute(p, inputs.n_scans, cfg.assumption())
    out_days = forecasts.output_days(inputs.days, cfg.forecast)
    u0 = None
    if p.from_first_scan:     # --start first-scan: the first scan's density on the brain box
        g, r0 = inputs.geom, inputs.regions[0]
        u0 = FirstScanStart(r0.core, r0.whole, g.spacing, g.tissue_factor(cfg.ratio)).density(
            p.lam, p.theta_c, p.theta_e)
    states, steps = forecasts.solve_model(inputs.geom, cfg.ratio, p, ab, fitted.origin_world,
                                          out_days, fitted.result.stepping,
                                          cfg.stepping(), u0=u0)
    vv = inputs.geom.voxel_volume      # mm^3; volumes in ml
    rows = []
    for k, (s, r) in enumerate(zip(inputs.patient.scans, inputs.regions)):
        u = states[k]
        rows.append(ScanReport(
            day=inputs.days[k], file=s.path,
            dice_core=dice(u >= p.theta_c, r.core & ~r.cavity),
            dice_whole=dice(u >= p.theta_e, r.whole & ~r.cavity),
            core_ml=float(r.core.sum() * vv / 1000), whole_ml=float(r.whole.sum() * vv / 1000),
            model_core_ml=float((u >= p.theta_c).sum() * vv / 1000),
            model_whole_ml=float((u >= p.theta_e).sum() * vv / 1000)))
    return ModelRun(ab, out_days, states, steps, rows)


# ---------------------------------------------------------------- 6. the network's own u

@dataclass(frozen=True, eq=False)
class NetworkMaps:
    """The PINN's own u at each scan on the fine sub-box (zero outside phi >= 0.5) and its Dice
    (core, whole tumour) against each scan."""

    u: list[np.ndarray]
    dice: list[tuple[float, float]]


def network_maps(inputs: Inputs, setup: Setup, fitted: Fitted) -> NetworkMaps | None:
    """The network's u at the scans (None without the PINN)."""
    pinn = fitted.pinn
    if pinn is None:
        return None
    from gbm.pinn.patient import network_u_on_grid  # torch: the PINN is an optional extra

    fine, p = setup.fine, fitted.params
    inside = fine.phi >= 0.5
    us, dc = [], []
    for k in range(len(fine.models)):
        un = network_u_on_grid(pinn.net, fine.geom.shape, fine.geom.spacing,
                               pinn.scan_t[k]) * inside
        ub = inputs.geom.crop(fine.geom.to_full(un))   # the brain box (a 2D fit: its slice)
        r = inputs.regions[k]                            # as solve() scores the FD model
        us.append(un)
        dc.append((dice(ub >= p.theta_c, r.core & ~r.cavity),
                   dice(ub >= p.theta_e, r.whole & ~r.cavity)))
    return NetworkMaps(us, dc)


# ---------------------------------------------------------------- 7. plans

@dataclass(frozen=True, eq=False)
class Plans:
    """The plans at the last scan on the full input grid (bool; None and empty when the last
    scan has no tumour core) and their report."""

    standard: np.ndarray | None
    model: np.ndarray | None
    iso: dict[float, np.ndarray]
    report: PlansReport


def make_plans(cfg: FitConfig, inputs: Inputs, model_run: ModelRun) -> Plans:
    """Standard (core + margin), model (top-k density) and iso-density plans at the last scan,
    and their coverage of the recurrence; a 2D fit plans and scores on its slice only."""
    pd, geom = inputs.patient, inputs.geom
    last = pd.scans[-1].regions
    core = last.core & ~last.cavity
    only = np.ones_like(core)
    if geom.ndim == 2:
        only[:] = False
        only[:, :, cfg.slice] = True
        core = core & only
    brain = inputs.brain & only
    u_last = geom.to_full(model_run.states[inputs.n_scans - 1])
    standard = model = volumes = None
    iso: dict[float, np.ndarray] = {}
    note: str | None = (f"{pd.scans[-1].path}: the last scan has no tumour core "
                        "(necrosis/enhancing), so no standard CTV and no plans")
    if core.any():
        standard = plans.standard_plan(core, brain, pd.spacing, cfg.margin_mm)
        model = plans.model_plan(u_last, brain, int(standard.sum()))
        iso = plans.iso_plans(u_last, brain, cfg.iso_levels) if cfg.iso_levels else {}
        rec = pd.recurrence
        volumes = plans.plan_report(standard, model, pd.spacing,
                                    rec.regions.enhancing & only if rec is not None else None,
                                    rec.regions.tumour & only if rec is not None else None)
        note = None
    report = PlansReport(
        volumes=volumes, note=note, plan_day=model_run.days[inputs.n_scans - 1],
        margin_mm=cfg.margin_mm, model_plan=MODEL_PLAN_TEXT,
        standard_plan=(f"tumour core of the last scan dilated by {cfg.margin_mm:g} mm "
                       "(Euclidean, voxel spacing from the header), cut to the brain"))
    return Plans(standard, model, iso, report)


# ---------------------------------------------------------------- 8. probability maps

def probability_maps(cfg: FitConfig, setup: Setup, sampled: Sampled | None,
                     model_run: ModelRun, progress: bool
                     ) -> dict[tuple[float, float], np.ndarray]:
    """P(u > level) at each output day from ``cfg.draws`` posterior samples (none without a
    posterior or draws)."""
    if sampled is None or cfg.draws <= 0:
        return {}
    return forecasts.probability_maps(sampled.posterior.samples, setup.unknowns, setup.fine,
                                      model_run.days, cfg.posterior_settings(), cfg.stepping(),
                                      cfg.assumption(), progress_bar(progress))


# ---------------------------------------------------------------- 9. the report

@dataclass(frozen=True)
class Timing:
    """Wall seconds: setup (loading to the search box), fit (levels and fit), forward (the model
    on the brain), total."""

    setup: float
    fit: float
    forward: float
    total: float


@dataclass(frozen=True, eq=False)
class Outcome:
    """Every step's result (what the outputs and the report are made from)."""

    inputs: Inputs
    setup: Setup
    fitted: Fitted
    sampled: Sampled | None
    model: ModelRun
    network: NetworkMaps | None
    plans: Plans
    prob_maps: dict[tuple[float, float], np.ndarray]


def assemble(cfg: FitConfig, o: Outcome, timing: Timing, versions: dict[str, Any],
             resumed: list[str]) -> FitReport:
    """The :class:`FitReport` of a finished fit (``results.json``)."""
    res, pd, post = o.fitted.result, o.inputs.patient, o.sampled
    scans = o.model.scans
    if o.network is not None:
        scans = [replace(s, pinn_dice_core=c, pinn_dice_whole=w)
                 for s, (c, w) in zip(scans, o.network.dice)]
    quality = check_quality([s.day for s in scans], [s.dice_whole for s in scans],
                            [s.pinn_dice_whole for s in scans] if o.network else None,
                            cfg.method)
    u = o.setup.unknowns
    return FitReport(
        method=METHOD_TEXT["pinn-gbm" if cfg.recipe == "pinn-gbm" else cfg.method],
        estimates=_estimates(cfg, o.fitted, o.model.absolute),
        identifiability=IDENTIFIABILITY, scans=tuple(scans),
        output_days=tuple(o.model.days), forecast_days_after_last_scan=tuple(cfg.forecast),
        plans=o.plans.report, labels=pd.convention.describe(),
        solves=dict(res.solves, posterior=post.posterior.solves if post else 0),
        seconds=dict(res.seconds, setup=timing.setup, fit=timing.fit, forward=timing.forward,
                     total=timing.total,
                     posterior=post.posterior.seconds if post else 0.0),
        misfit=res.misfit, status=res.status, resumed_stages=tuple(resumed),
        search=SearchReport(tuple(u.names), tuple(float(v) for v in res.x),
                            tuple(float(v) for v in u.lo), tuple(float(v) for v in u.hi)),
        grids=Grids(tuple(pd.spacing), tuple(o.inputs.geom.shape),
                    tuple(o.setup.fine.geom.shape), o.inputs.geom.ndim, o.model.steps),
        source=pd.source, tumour_tissue=pd.tumour_tissue, config=cfg, versions=versions,
        quality=quality,
        uncertainty=_uncertainty(cfg, o, post) if post is not None else None,
        pinn=_pinn_report(cfg, o.fitted.pinn) if o.fitted.pinn is not None else None)


def _estimates(cfg: FitConfig, fitted: Fitted, ab: Absolute) -> Estimates:
    p = fitted.params
    return Estimates(
        origin_world_mm=tuple(float(v) for v in fitted.origin_world), lambda_mm=p.lam,
        rho_T=p.rho_t0, theta_c=p.theta_c, theta_e=p.theta_e,
        thresholds_fitted=cfg.fit_thresholds, dw=ab.dw, rho=ab.rho,
        age_days_at_first_scan=ab.age_days, dw_rho_basis=ab.basis, dw_T=p.lam ** 2 * p.rho_t0,
        front_speed_mm_per_day=(2 * math.sqrt(ab.dw * ab.rho)
                                if ab.dw is not None and ab.rho is not None else None))


def _uncertainty(cfg: FitConfig, o: Outcome, sampled: Sampled) -> UncertaintyReport:
    """Medians and 90 % intervals of the posterior's quantities (one scan with an assumption:
    Dw and rho of each sample under it)."""
    post, q, u = sampled.posterior, sampled.quantities, o.setup.unknowns
    stats = {k: Stats.of(q[k]) for k in ("dw", "rho", "t0_days") if k in q}
    if cfg.fit_thresholds:
        stats.update(theta_c=Stats.of(q["theta_c"]), theta_e=Stats.of(q["theta_e"]))
    if o.inputs.n_scans == 1 and o.model.absolute.rho is not None:
        ab = [absolute(u.physical(x), 1, cfg.assumption()) for x in post.samples]
        stats.update(dw=Stats.of(np.array([a.dw for a in ab])),
                     rho=Stats.of(np.array([a.rho for a in ab])))
    ow = o.setup.fine.geom.local_to_world(q["origin_local"])
    return UncertaintyReport(
        method=POSTERIOR_TEXT, sigma_u=post.sigma, temper_voxels=post.temper,
        acceptance=post.acceptance,
        autocorr_steps=tuple(post.autocorr) if post.autocorr is not None else None,
        samples=len(post.samples), lambda_mm=Stats.of(q["lambda_mm"]),
        rho_t0=Stats.of(q["rho_t0"]),
        origin_world_mm=tuple(Stats.of(ow[:, a]) for a in range(3)), **stats)


def _pinn_report(cfg: FitConfig, pinn: Any) -> PinnReport:
    return PinnReport(
        iterations=pinn.iterations, stopped=pinn.stopped, device=pinn.device,
        threads=pinn.threads, length_scale_mm=pinn.length, time_scale_days=pinn.horizon,
        center_local_mm=tuple(float(v) for v in pinn.center_local),
        scan_t_scaled=tuple(pinn.scan_t), data_voxels=pinn.data_points,
        collocation_points=pinn.colloc, settings=cfg.pinn_settings(),
        process_peak_rss_gb=peak_rss_gb(),   # this process so far (a cohort worker: all fits)
        outputs=PINN_OUTPUTS_TEXT)
