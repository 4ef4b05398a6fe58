"""The job behind ``python -m gbm fit``: a patient's segmentations -> calibrated model, forecast,
radiotherapy targets, files.

Steps: load and validate the patient (:func:`gbm.problem.patient.load_patient`), build the
geometry and its phase field, fit (:mod:`gbm.inference.patient_fit`: CMA-ES on a 2 mm grid, then
trust-region least squares on the input grid; or, with ``method="pinn"``, the PINN of
:mod:`gbm.pinn.patient` on the same fine box and observation model), optionally sample the posterior
(:mod:`gbm.inference.posterior`), solve the fitted model on the whole brain at the scans and the
forecast days, draw the plans (:mod:`gbm.plans`) and write everything, staged and renamed into
place.

Identifiability (see :mod:`gbm.inference.patient_fit`): one scan fixes the origin, lambda =
sqrt(Dw/rho), rho*T and the thresholds; absolute Dw, rho and any forecast in days need an
assumed age (``assume_days``) or front speed (``assume_speed``). Two or more scans with dates fix
Dw, rho and the age at the first scan.

Quality check: ``results.json`` ``quality`` holds the lowest whole-tumour Dice of the model at the
estimate over the scans; below :data:`MIN_MODEL_DICE` the fit is not supported by its scans and
a one-line ``gbm fit: warning: ...`` goes to stderr (the outputs are still written: they are
what was asked for, and the warning says what they are worth).

Days in file names count from the first scan: ``u_day0`` is the first scan, ``u_day<D>`` a later
scan or a forecast D days after the first scan.
"""

from __future__ import annotations

import csv
import io as _io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .errors import require
from .inference.patient_fit import (
    Checkpoint,
    PatientFitSettings,
    Physical,
    box_regions,
    fit_segmentations,
    make_levels,
    solve_states,
    start_and_box,
)
from .inference.posterior import (
    Posterior,
    PosteriorSettings,
    interval,
    quantities,
    sample_posterior,
)
from .pinn.settings import PinnFitSettings
from .problem.segmentation import THETA_C, THETA_E, dice

__all__ = ["FitConfig", "run_fit"]


@dataclass(frozen=True)
class FitConfig:
    """Settings of ``gbm fit`` (units: mm, days).

    Inputs: ``wm``, ``gm`` [``csf``] and ``scans`` ("SEG.nii.gz@DAY" each), or ``patient`` (a
    PredictGBM-layout or container-layout folder); ``labels`` (brats2021, brats2023,
    brats2024post, tum, a custom mapping, or None to detect); ``tumour_tissue`` ("wm": the tumour
    region counts as white matter); ``recurrence`` (a follow-up segmentation for plan coverage);
    ``slice`` (axial slice index for a 2D fit; None: 3D).

    Model and unknowns: ``ratio`` Dw/Dg; ``lambda_range`` (mm); ``fit_thresholds`` and the
    thresholds / their ranges; ``assume_days`` (tumour age at the first scan) or
    ``assume_speed`` (asymptotic front speed 2 sqrt(Dw rho), mm/day) for absolute Dw and rho from
    one scan.

    Fit: ``coarse_mm``, ``crop_mm``, ``global_solves``, ``local_solves``, ``popsize``,
    ``safety``, ``seed`` (see :class:`gbm.inference.patient_fit.PatientFitSettings`).

    Uncertainty: ``uncertainty`` on/off, ``walkers``, ``steps``, ``burn``, ``corr_mm``,
    ``draws``, ``prob_levels`` (see :class:`gbm.inference.posterior.PosteriorSettings`).

    Outputs: ``forecast`` (days after the last scan), ``margin_mm`` (standard CTV margin),
    ``iso_levels`` (extra iso-density plans).
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
    ratio: float = 10.0
    lambda_range: tuple[float, float] = (0.5, 12.0)
    fit_thresholds: bool = False
    theta_c: float = THETA_C
    theta_e: float = THETA_E
    theta_c_range: tuple[float, float] = (0.5, 0.85)
    theta_e_range: tuple[float, float] = (0.05, 0.5)
    assume_days: float | None = None
    assume_speed: float | None = None
    coarse_mm: float = 2.0
    crop_mm: float = 15.0
    global_solves: int = 500
    local_solves: int = 60
    popsize: int | None = None
    safety: float = 0.5
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
    device: str = "auto"
    threads: int | None = None

    def pinn_settings(self) -> PinnFitSettings:
        return PinnFitSettings(time_budget=self.pinn_budget, max_iters=self.pinn_iters,
                               colloc=self.pinn_colloc, data_points=self.pinn_data_points,
                               w_data=self.pinn_w_data, compile=self.pinn_compile,
                               device=self.device,
                               threads=self.threads, seed=self.seed)

    def fit_settings(self) -> PatientFitSettings:
        names = {f.name for f in fields(PatientFitSettings)}
        return PatientFitSettings(**{k: v for k, v in asdict(self).items() if k in names})

    def posterior_settings(self) -> PosteriorSettings:
        return PosteriorSettings(walkers=self.walkers, steps=self.steps, burn=self.burn,
                                 corr_mm=self.corr_mm, draws=self.draws,
                                 levels=tuple(self.prob_levels), seed=self.seed)

    def validate(self) -> None:
        """Checks that need no files (one-line InputError each)."""
        require(self.margin_mm > 0, f"--margin-mm must be > 0 mm, got {self.margin_mm}")
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
        require(self.method in ("fd", "pinn"), f"--method must be fd or pinn, got "
                f"{self.method!r}")
        if self.method == "pinn":
            require(not self.uncertainty, "--uncertainty needs --method fd (the PINN fit gives "
                    "a point estimate)")
            require(self.device in ("auto", "cpu") or self.device.startswith("cuda"),
                    f"--device must be auto, cpu or cuda, got {self.device!r}")
            if self.device.startswith("cuda"):
                import torch

                require(torch.cuda.is_available(), f"--device {self.device}: CUDA is not "
                        "available on this machine (no silent CPU run; use --device cpu)")
            self.pinn_settings().validate()
        else:
            require(self.device == "auto" and self.threads is None,
                    "--device and --threads are for --method pinn")
        self.fit_settings().validate()
        if self.uncertainty:
            self.posterior_settings().validate()


def _absolute(p: Physical, n_scans: int, cfg: FitConfig) -> dict[str, Any]:
    """Dw, rho, age at the first scan: fitted (several scans), assumed (one scan + assumption)
    or None."""
    if n_scans > 1:
        return {"dw": p.dw, "rho": p.rho, "age_days": p.t0, "basis": "fitted from the scan dates"}
    if cfg.assume_days is not None:
        rho = p.rho_t0 / cfg.assume_days
        return {"dw": p.lam ** 2 * rho, "rho": rho, "age_days": cfg.assume_days,
                "basis": f"assumed age {cfg.assume_days:g} days at the scan"}
    if cfg.assume_speed is not None:
        v = cfg.assume_speed
        rho = v / (2 * p.lam)
        return {"dw": p.lam * v / 2, "rho": rho, "age_days": p.rho_t0 / rho,
                "basis": f"assumed front speed {v:g} mm/day"}
    return {"dw": None, "rho": None, "age_days": None,
            "basis": "not identifiable from one scan (give --assume-days or --assume-speed)"}


IDENTIFIABILITY = (
    "u at a scan depends on Dw and rho only through lambda = sqrt(Dw/rho) and rho*T (T = the "
    "tumour's age at the scan): one scan fixes the origin, lambda, rho*T (and the thresholds); "
    "absolute Dw, rho and forecasts in days need an assumed age or front speed; two or more "
    "scans with dates fix Dw, rho and the age.")


#: below this whole-tumour Dice of the model at the estimate, a fit is reported as not supported
#: by its scans: the model then misses more of the segmentation than it matches. Fits that work
#: are far above it (FD fits of the synthetic patients: >= 0.95 with and without label noise);
#: the PINN's failure mode on segmentations is far below it (0.05-0.28, benches/RESULTS.md).
MIN_MODEL_DICE = 0.5


def _quality(scan_rows: list[dict[str, Any]], method: str) -> dict[str, Any]:
    """Whether the model at the estimate reproduces every scan (whole tumour Dice >=
    :data:`MIN_MODEL_DICE`), with the warning to show when it does not."""
    worst = min(scan_rows, key=lambda r: r["dice_whole"])
    out: dict[str, Any] = {"min_model_dice_whole": worst["dice_whole"],
                           "threshold": MIN_MODEL_DICE, "warning": None}
    if worst["dice_whole"] >= MIN_MODEL_DICE:
        return out
    msg = (f"the model at the estimate does not reproduce the scan of day {worst['day']:g} "
           f"(whole-tumour Dice {worst['dice_whole']:.2f} < {MIN_MODEL_DICE:g}): its parameters, "
           "forecasts and plans are not supported by the data")
    if "pinn_dice_whole" in worst:
        msg += (f"; the network's own u matches it (Dice {worst['pinn_dice_whole']:.2f}) with a "
                "field the model does not produce, the PINN's known failure on segmentations: "
                "use --method fd")
    elif method == "fd":
        msg += ("; check the labels (--labels), the tissue maps and whether the tumour is "
                "multifocal (one origin is fitted)")
    out["warning"] = msg
    return out


def _say_default(m: str) -> None:
    print(m, flush=True)


def _bar(enabled: bool) -> Callable[[str, int], Any] | None:
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda stage, total: tqdm(total=total, desc=stage, unit="solve", leave=False,
                                     dynamic_ncols=True)


class FileCheckpoint(Checkpoint):
    """Finished stages in ``.<out>.checkpoint.json`` beside the output folder, keyed by a
    fingerprint of the settings and the input files (path, size, mtime): a resumed run never
    mixes stages of different problems. Removed when the run completes."""

    def __init__(self, out: str | Path, cfg: FitConfig, resume: bool) -> None:
        import hashlib
        import json
        import os

        o = Path(out)
        self.path = o.parent / f".{o.name}.checkpoint.json"
        files = sorted(str(v) for v in (cfg.wm, cfg.gm, cfg.csf, cfg.recurrence, *cfg.scans)
                       if v)
        if cfg.patient:
            files += sorted(str(q) for q in Path(cfg.patient).rglob("*") if q.is_file())
        stamp = []
        for f in files:
            f = f.split("@")[0]
            try:
                st = os.stat(f)
                stamp.append([f, st.st_size, st.st_mtime_ns])
            except OSError:
                stamp.append([f, None, None])
        key = json.dumps({"config": asdict(cfg), "files": stamp}, sort_keys=True, default=str)
        self.fingerprint = hashlib.sha256(key.encode()).hexdigest()
        self.stages: dict[str, Any] = {}
        self.resumed: list[str] = []
        if resume and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("fingerprint") == self.fingerprint:
                self.stages = dict(data.get("stages", {}))

    def load(self, stage: str) -> dict[str, Any] | None:
        got = self.stages.get(stage)
        if got is not None:
            self.resumed.append(stage)
        return got

    def save(self, stage: str, data: dict[str, Any]) -> None:
        self.stages[stage] = data
        self.path.parent.mkdir(parents=True, exist_ok=True)
        io.write_json_atomic(self.path, {"fingerprint": self.fingerprint,
                                         "stages": self.stages}, force=True)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def run_fit(cfg: FitConfig, out: str | Path, force: bool = False, progress: bool = False,
            printer: Callable[[str], None] | None = None, resume: bool = False
            ) -> dict[str, Any]:
    """Fit a patient and write ``out`` (see the module header and README "Fit a patient").

    Finished stages (global, local, posterior) are checkpointed beside ``out``; with ``resume``
    an interrupted run with the same settings and inputs continues after its last finished
    stage.

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    from .geometry import DEFAULT_EPSILON_MM
    from .problem.patient import load_patient
    from .runs import versions

    say = printer or _say_default
    cfg.validate()
    io.check_output(out, force)
    t_all = time.perf_counter()
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
    days_rel = list(pd.days_since_first)
    geom_full = pd.geometry(slice_index=cfg.slice)
    eps = DEFAULT_EPSILON_MM * min(geom_full.spacing)
    geom_full = geom_full.with_phase_field(epsilon=eps)
    regions_box = [box_regions(geom_full, s.regions) for s in pd.scans]
    for s, r in zip(pd.scans, regions_box):
        require(bool(r.whole.any()), f"{s.path}: no tumour voxels in the brain box"
                + (f" on slice {cfg.slice}" if cfg.slice is not None else ""))
    settings = cfg.fit_settings()
    if cfg.method == "pinn":
        settings = replace(settings, coarse_mm=0.0)    # the PINN works on the input grid only
    t_setup = time.perf_counter()
    levels = make_levels(geom_full, regions_box, settings,
                         (pd.wm, pd.gm, pd.csf, pd.affine), [s.regions for s in pd.scans],
                         slice_index=cfg.slice)
    unknowns = start_and_box(levels[-1], geom_full, regions_box, days_rel, settings)
    setup_seconds = time.perf_counter() - t_all
    say(f"gbm fit: {n_scans} scan(s) ({pd.convention.name} labels), "
        f"{'3D' if geom_full.ndim == 3 else '2D slice'} box {geom_full.shape}, fitting "
        f"{', '.join(unknowns.names)}; levels: "
        + ", ".join(f"{lv.name} {lv.geom.shape}" for lv in levels))
    ck = FileCheckpoint(out, cfg, resume)
    fine = levels[-1]
    pinn = None
    if cfg.method == "pinn":
        from .pinn.patient import fit_segmentations_pinn

        res, pinn = fit_segmentations_pinn(fine, unknowns, settings, cfg.pinn_settings(),
                                           checkpoint_path=ck.path.with_suffix(".pt"),
                                           resume=resume, printer=say)
    else:
        res = fit_segmentations(levels, unknowns, settings, progress=_bar(progress),
                                checkpoint=ck)
    fit_seconds = time.perf_counter() - t_setup
    p = res.params
    origin_world = fine.geom.local_to_world(p.origin_local)

    post = None
    post_q: dict[str, Any] = {}
    if cfg.uncertainty:
        ps = cfg.posterior_settings()
        x_coarse = res.coarse_x if res.coarse_x is not None else res.x
        saved = ck.load("posterior")
        if saved is not None:
            res.log.extend(saved.pop("log"))
            post = Posterior(samples=np.asarray(saved.pop("samples")), **saved)
        else:
            n_log = len(res.log)
            post = sample_posterior(levels[0], fine, unknowns, settings, x_coarse, res.x, ps,
                                    res.log, progress=_bar(progress))
            ck.save("posterior", dict(asdict(post), samples=post.samples.tolist(),
                                      log=res.log[n_log:]))
        post_q = quantities(unknowns, post.samples)

    # --- the fitted model on the whole brain, at the scans and forecast days --------------
    ab = _absolute(p, n_scans, cfg)
    phys = p
    if ab["rho"] is not None and n_scans == 1:
        phys = replace(p, dw=ab["dw"], rho=ab["rho"], t0=ab["age_days"])
    out_days = [float(d) for d in days_rel] + [days_rel[-1] + float(f) for f in cfg.forecast]
    origin_full = geom_full.world_to_local(origin_world)
    kfac = np.ascontiguousarray(geom_full.tissue_factor(cfg.ratio))
    phi = np.ascontiguousarray(geom_full.phi, dtype=np.float64)
    t_fwd = time.perf_counter()
    states, steps = solve_states(geom_full, kfac, phi, phys, origin_full,
                                 [phys.t0 + d for d in out_days],
                                 dt=_output_dt(res.dt, phys.t0 / p.t0, geom_full, kfac, phi,
                                               phys),
                                 safety=cfg.safety)
    fwd_seconds = time.perf_counter() - t_fwd
    scan_rows = []
    for k, (s, r) in enumerate(zip(pd.scans, regions_box)):
        u = states[k]
        scan_rows.append({
            "day": days_rel[k], "file": s.path,
            "dice_core": dice(u >= p.theta_c, r.core & ~r.cavity),
            "dice_whole": dice(u >= p.theta_e, r.whole & ~r.cavity),
            "core_ml": float(r.core.sum() * geom_full.voxel_volume / 1000),
            "whole_ml": float(r.whole.sum() * geom_full.voxel_volume / 1000),
            "model_core_ml": float((u >= p.theta_c).sum() * geom_full.voxel_volume / 1000),
            "model_whole_ml": float((u >= p.theta_e).sum() * geom_full.voxel_volume / 1000)})

    # --- the PINN's own u at the scans (inside the model's domain phi >= 0.5) --------------
    pinn_u: list[np.ndarray] = []
    if pinn is not None:
        from .pinn.patient import network_u_on_grid

        inside = fine.phi >= 0.5
        for k, m in enumerate(fine.models):
            un = network_u_on_grid(pinn.net, fine.geom.shape, fine.geom.spacing,
                                   pinn.scan_t[k]) * inside
            pinn_u.append(un)
            full_k = fine.geom.to_full(un)
            r = pd.scans[k].regions
            scan_rows[k]["pinn_dice_core"] = dice(full_k >= p.theta_c, r.core & ~r.cavity)
            scan_rows[k]["pinn_dice_whole"] = dice(full_k >= p.theta_e, r.whole & ~r.cavity)

    # --- plans at the last scan ----------------------------------------------------------
    from . import plans

    brain = geom_full.to_full(geom_full.mask.astype(np.float32)) > 0.5
    u_last_full = geom_full.to_full(states[n_scans - 1])
    core_last_full = pd.scans[-1].regions.core & ~pd.scans[-1].regions.cavity
    only = np.ones_like(core_last_full)       # a 2D fit plans and scores on its slice only
    if geom_full.ndim == 2:
        only[:] = False
        only[:, :, cfg.slice] = True
        core_last_full = core_last_full & only
    spacing3 = pd.spacing
    standard = model = None
    iso: dict[float, np.ndarray] = {}
    plan_rep: dict[str, Any] = {"note": f"{pd.scans[-1].path}: the last scan has no tumour core "
                                        "(necrosis/enhancing), so no standard CTV and no plans"}
    if core_last_full.any():
        standard = plans.standard_plan(core_last_full, brain, spacing3, cfg.margin_mm)
        model = plans.model_plan(u_last_full, brain, int(standard.sum()))
        iso = plans.iso_plans(u_last_full, brain, cfg.iso_levels) if cfg.iso_levels else {}
        rec = pd.recurrence
        plan_rep = plans.plan_report(standard, model, spacing3,
                                     rec.regions.enhancing & only if rec is not None else None,
                                     rec.regions.tumour & only if rec is not None else None)

    # --- posterior probability maps ---------------------------------------------------------
    prob_maps: dict[tuple[float, float], np.ndarray] = {}
    if post is not None and cfg.draws > 0:
        prob_maps = _probability_maps(post.samples, unknowns, n_scans, cfg, geom_full, fine,
                                      out_days, progress)

    total = time.perf_counter() - t_all
    results = _results(cfg, pd, unknowns, res, p, ab, origin_world, scan_rows, plan_rep, post,
                       post_q, fine, geom_full, out_days, steps, fwd_seconds, setup_seconds,
                       fit_seconds, total, versions(), ck.resumed)
    if pinn is not None:
        results["pinn"] = _pinn_report(pinn, cfg)
    results["quality"] = _quality(scan_rows, cfg.method)
    with io.staged_outdir(out, force) as tmp:
        for d, u in zip(out_days, states):
            kind = "scan" if d in days_rel else "forecast"
            io.save_nifti_atomic(tmp / f"u_day{d:g}.nii.gz", geom_full.to_full(u), pd.affine,
                                 description=f"gbm fit u day {d:g} ({kind})")
        if standard is not None and model is not None:
            io.save_labels_atomic(tmp / "plan_standard.nii.gz", standard.astype(np.uint8),
                                  pd.affine)
            io.save_labels_atomic(tmp / "plan_model.nii.gz", model.astype(np.uint8), pd.affine)
        for lv, m in iso.items():
            io.save_labels_atomic(tmp / f"plan_iso{lv:g}.nii.gz", m.astype(np.uint8), pd.affine)
        for (lv, d), pm in prob_maps.items():
            io.save_nifti_atomic(tmp / f"prob_u{lv:g}_day{d:g}.nii.gz", pm, pd.affine,
                                 description=f"gbm P(u > {lv:g}) day {d:g}")
        for k, un in enumerate(pinn_u):
            d = days_rel[k]
            io.save_nifti_atomic(tmp / f"u_pinn_day{d:g}.nii.gz", fine.geom.to_full(un),
                                 pd.affine, description=f"gbm PINN network u day {d:g}")
        io.write_bytes_atomic(tmp / "log.csv", _log_csv(res.log))
        _figures(tmp, pd, geom_full, states, out_days, days_rel, p, origin_world, standard,
                 model, res, post, post_q, unknowns, cfg)
        io.write_json_atomic(tmp / "results.json", results)
    ck.remove()
    if pinn is not None:
        ck.path.with_suffix(".pt").unlink(missing_ok=True)
    dice_txt = "; ".join(f"day {r['day']:g}: core {r['dice_core']:.3f}, whole "
                         f"{r['dice_whole']:.3f}" for r in scan_rows)
    abs_txt = (f", Dw {ab['dw']:.4g} mm^2/day, rho {ab['rho']:.4g} /day, age "
               f"{ab['age_days']:.0f} d ({ab['basis']})" if ab["dw"] is not None else "")
    say(f"gbm fit: lambda {p.lam:.3g} mm, rho*T {p.rho_t0:.3g}{abs_txt}; origin "
        f"{tuple(round(float(v), 1) for v in origin_world)} mm; Dice {dice_txt}; "
        f"{sum(res.solves.values())} solves, {total:.0f} s -> {out}")
    if results["quality"]["warning"]:
        print(f"gbm fit: warning: {results['quality']['warning']}", file=sys.stderr, flush=True)
    return results


def _pinn_report(pinn: Any, cfg: FitConfig) -> dict[str, Any]:
    """What results.json says about the PINN run."""
    from .runs import peak_rss_gb

    return {
        "iterations": pinn.iterations, "stopped": pinn.stopped, "device": pinn.device,
        "threads": pinn.threads, "length_scale_mm": pinn.length,
        "time_scale_days": pinn.horizon, "center_local_mm": [float(v) for v in
                                                             pinn.center_local],
        "scan_t_scaled": pinn.scan_t, "data_voxels": pinn.data_points,
        "collocation_points": pinn.colloc, "settings": asdict(cfg.pinn_settings()),
        "process_peak_rss_gb": peak_rss_gb(),   # this process so far (a cohort worker: all fits)
        "outputs": "u_day<D> and the plans: the FD solver at the PINN's estimate (as for "
                   "--method fd); u_pinn_day<D>: the network's own u at the scans, zero "
                   "outside the model's domain phi >= 0.5 (pinn_dice_* in scans)"}


def _output_dt(dt: float | None, scale: float, geom: Any, kfac: np.ndarray, phi: np.ndarray,
               p: Physical) -> float | None:
    """The local stage's time step times ``scale`` (one scan at an assumed age: assumed /
    nominal age, which keeps the steps and so the fitted u at the scan), so that the written
    model is the fitted one; None (the solver's own rule) when that is above this grid's
    stability bound or there was no local stage."""
    from . import _core

    if dt is None:
        return None
    dt = dt * scale
    s = _core.FisherKpp(np.zeros(geom.shape), p.dw * kfac, phi, list(geom.spacing), p.rho)
    return dt if dt <= float(s.dt_stable) else None


def _probability_maps(samples: np.ndarray, unknowns: Any, n_scans: int, cfg: FitConfig,
                      geom_full: Any, fine: Any, out_days: list[float],
                      progress: bool) -> dict[tuple[float, float], np.ndarray]:
    """P(u > level) on the input grid at each output day, from ``cfg.draws`` posterior samples
    solved on the fine sub-box (zero outside it)."""
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(samples), size=min(cfg.draws, len(samples)), replace=False)
    acc = {(lv, d): np.zeros(fine.geom.shape) for lv in cfg.prob_levels for d in out_days}
    bar = _bar(progress)
    tick = bar("probability maps", len(pick)) if bar else None
    for i in sorted(pick):
        q = unknowns.physical(samples[i])
        ab = _absolute(q, n_scans, cfg)
        if ab["rho"] is not None and n_scans == 1:
            q = replace(q, dw=ab["dw"], rho=ab["rho"], t0=ab["age_days"])
        states, _ = solve_states(fine.geom, fine.kfac, fine.phi, q, q.origin_local,
                                 [q.t0 + d for d in out_days], safety=cfg.safety)
        for d, u in zip(out_days, states):
            for lv in cfg.prob_levels:
                acc[(lv, d)] += u > lv
        if tick is not None:
            tick.update(1)
    if tick is not None:
        tick.close()
    out = {}
    for key, a in acc.items():
        out[key] = fine.geom.to_full(a / len(pick))
    return out


def _stats(values: np.ndarray) -> dict[str, float]:
    lo, hi = interval(values, 0.9)
    return {"median": float(np.median(values)), "ci90": [lo, hi]}


def _results(cfg: FitConfig, pd: Any, unknowns: Any, res: Any, p: Physical, ab: dict[str, Any],
             origin_world: np.ndarray, scan_rows: list[dict[str, Any]], plan_rep: dict[str, Any],
             post: Any, post_q: dict[str, Any], fine: Any, geom_full: Any, out_days: list[float],
             steps: int, fwd_seconds: float, setup_seconds: float, fit_seconds: float,
             total: float, vers: dict[str, Any], resumed: list[str]) -> dict[str, Any]:
    n_scans = len(pd.scans)
    est: dict[str, Any] = {
        "origin_world_mm": [float(v) for v in origin_world],
        "lambda_mm": p.lam, "rho_T": p.rho_t0,
        "theta_c": p.theta_c, "theta_e": p.theta_e, "thresholds_fitted": cfg.fit_thresholds,
        "dw": ab["dw"], "rho": ab["rho"], "age_days_at_first_scan": ab["age_days"],
        "dw_rho_basis": ab["basis"], "dw_T": (p.lam ** 2 * p.rho_t0),
        "front_speed_mm_per_day": (2 * math.sqrt(ab["dw"] * ab["rho"])
                                   if ab["dw"] is not None else None),
    }
    out: dict[str, Any] = {
        "method": ("PINN fit of segmentations: network and unknowns trained jointly on the PDE "
                   "residual and the segmentation misfit (gbm.pinn.patient)"
                   if cfg.method == "pinn" else
                   "FD-based fit of segmentations: CMA-ES on a coarse grid, then trust-region "
                   "least squares on the input grid (gbm.inference.patient_fit)"),
        "estimates": est,
        "identifiability": IDENTIFIABILITY,
        "scans": scan_rows,
        "output_days": out_days,
        "forecast_days_after_last_scan": list(cfg.forecast),
        "plans": dict(plan_rep, plan_day=out_days[n_scans - 1], margin_mm=cfg.margin_mm,
                      model_plan="top-k voxels of the fitted u at the last scan inside the "
                                 "brain, k = the standard plan's voxel count",
                      standard_plan=f"tumour core of the last scan dilated by {cfg.margin_mm:g} "
                                    "mm (Euclidean, voxel spacing from the header), cut to the "
                                    "brain"),
        "labels": pd.convention.describe() if hasattr(pd.convention, "describe")
        else pd.convention.name,
        "solves": dict(res.solves, posterior=post.solves if post else 0),
        "seconds": dict(res.seconds, setup=setup_seconds, fit=fit_seconds,
                        forward=fwd_seconds, total=total,
                        posterior=post.seconds if post else 0.0),
        "misfit": res.misfit, "status": res.status, "resumed_stages": resumed,
        "search": {"names": unknowns.names, "x": [float(v) for v in res.x],
                   "lo": [float(v) for v in unknowns.lo], "hi": [float(v) for v in unknowns.hi]},
        "grids": {"input_spacing_mm": list(pd.spacing), "box_shape": list(geom_full.shape),
                  "fit_sub_box_shape": list(fine.geom.shape),
                  "dimension": geom_full.ndim, "forward_steps": steps},
        "source": pd.source, "tumour_tissue": pd.tumour_tissue,
        "config": asdict(cfg), "versions": vers,
        "units": {"length": "mm", "time": "days", "dw": "mm^2/day", "rho": "1/day",
                  "volume": "ml"},
    }
    if post is not None:
        unc: dict[str, Any] = {
            "method": "emcee ensemble sampler on the coarse grid, shifted to the fine estimate "
                      "(gbm.inference.posterior)",
            "sigma_u": post.sigma, "temper_voxels": post.temper, "acceptance": post.acceptance,
            "autocorr_steps": post.autocorr, "samples": len(post.samples)}
        for k in ("lambda_mm", "rho_t0", "dw", "rho", "t0_days", "theta_c", "theta_e"):
            if k in post_q and (k not in ("theta_c", "theta_e") or cfg.fit_thresholds):
                unc[k] = _stats(post_q[k])
        ow = fine.geom.local_to_world(post_q["origin_local"])
        unc["origin_world_mm"] = [_stats(ow[:, a]) for a in range(3)]
        if n_scans == 1 and ab["rho"] is not None:
            tmp_ab = [_absolute(unknowns.physical(x), 1, cfg) for x in post.samples]
            unc["dw"] = _stats(np.array([a["dw"] for a in tmp_ab]))
            unc["rho"] = _stats(np.array([a["rho"] for a in tmp_ab]))
        out["uncertainty"] = unc
    return out


def _log_csv(log: list[dict[str, Any]]) -> bytes:
    if not log:
        return b""
    cols = list(dict.fromkeys(k for row in log for k in row))
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in log:
        w.writerow([_cell(row.get(c, "")) for c in cols])
    return buf.getvalue().encode()


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.8g}"
    return str(v)


def _figures(folder: Path, pd: Any, geom_full: Any, states: list[np.ndarray],
             out_days: list[float], days_rel: list[float], p: Physical, origin_world: np.ndarray,
             standard: np.ndarray, model: np.ndarray, res: Any, post: Any, post_q: dict[str, Any],
             unknowns: Any, cfg: FitConfig) -> None:
    from . import patient_plot

    bg = pd.wm + 0.5 * pd.gm
    vox = np.linalg.inv(pd.affine) @ np.r_[origin_world, 1.0]
    center = [int(np.clip(round(float(v)), 0, n - 1)) for v, n in zip(vox[:3], pd.wm.shape)]
    brain = pd.brain_mask()
    rows = []
    plans_d = ({f"standard CTV ({cfg.margin_mm:g} mm)": standard, "model CTV": model}
              if standard is not None else None)
    n_scans = len(pd.scans)
    for k, (d, u) in enumerate(zip(out_days, states)):
        row: dict[str, Any] = {"background": bg, "affine": pd.affine, "center_vox": center,
                               "u": geom_full.to_full(u), "crop": brain,
                               "u_levels": (p.theta_e, p.theta_c)}
        if k < n_scans:
            regs = pd.scans[k].regions
            row.update(core=regs.core, whole=regs.whole,
                       label=f"scan day {d:g}: segmentation contours, fitted u")
        else:
            row["label"] = f"forecast day {d:g} ({d - days_rel[-1]:g} d after the last scan)"
            if pd.recurrence is not None and k == len(out_days) - 1:
                row.update(core=pd.recurrence.regions.core, whole=pd.recurrence.regions.whole)
                row["label"] += ", recurrence contours"
        if k == n_scans - 1 and plans_d is not None:
            row["plans"] = plans_d
            row["label"] += " and plans"
        rows.append(row)
    title = (f"gbm fit: lambda {p.lam:.2f} mm, rho*T {p.rho_t0:.2f}, origin "
             f"({', '.join(f'{v:.1f}' for v in origin_world)}) mm")
    io.write_bytes_atomic(folder / "panels.png", patient_plot.stacked_panels(rows, title))
    trace = [{"solve": r["solve"], "stage": r["stage"], "misfit": r["misfit"],
              "dice_core": r["dice_core"], "dice_whole": r["dice_whole"]} for r in res.log]
    io.write_bytes_atomic(folder / "misfit.png", patient_plot.misfit_trace(
        trace, "misfit and Dice against solves"))
    if post is not None:
        names = ["lambda [mm]", "rho*T"] + (["Dw", "rho", "age [d]"] if unknowns.multi else [])
        cols = [post_q["lambda_mm"], post_q["rho_t0"]] + (
            [post_q["dw"], post_q["rho"], post_q["t0_days"]] if unknowns.multi else [])
        io.write_bytes_atomic(folder / "posterior.png", patient_plot.posterior_corner(
            np.column_stack(cols), names, None, "posterior (coarse grid, anchored)"))


def add_segmentation_args(g: Any) -> None:
    """--patient, --scan, --labels, --tumour-tissue, --recurrence on an argparse group (``gbm fit``
    and ``gbm infer``'s patient mode)."""
    g.add_argument("--patient", help="patient folder: PredictGBM layout (tissue_segmentation/, "
                   "tumor_segmentation/, optional scans.json, longitudinal/) or container "
                   "layout (<id>-{wm,gm,csf,tumorseg}.nii.gz)")
    g.add_argument("--scan", action="append", default=None, metavar="SEG.nii.gz@DAY",
                   help="a tumour segmentation and its day (repeat for several scans; with "
                   "--wm/--gm)")
    g.add_argument("--labels", default=None,
                   help="label convention: brats2021 (1 necrosis, 2 edema, 4 enhancing), "
                   "brats2023 (1, 2, 3 = enhancing), brats2024post (+ 4 cavity), tum (1 "
                   "enhancing, 3 edema, 4 necrosis) or necrosis=..,edema=..,enhancing=..[,"
                   "cavity=..]; default: detected where unambiguous")
    g.add_argument("--tumour-tissue", choices=["wm"], default=None,
                   help="treat the tumour region as white matter (maps segmented from the "
                   "patient's own scan); default: maps used as they are (atlas-registered)")
    g.add_argument("--recurrence", default=None,
                   help="follow-up segmentation for plan coverage (same grid)")


def add_patient_args(p: Any) -> None:
    """The patient input flags of ``gbm fit``: the segmentation flags and the tissue maps."""
    g = p.add_argument_group("patient (tissue maps + segmentations on one grid, or a folder)")
    add_segmentation_args(g)
    g.add_argument("--wm", help="white-matter probability map (NIfTI)")
    g.add_argument("--gm", help="gray-matter probability map (same grid)")
    g.add_argument("--csf", help="optional CSF probability map (voxels where CSF dominates are "
                   "outside the brain)")
    g.add_argument("--slice", type=int, default=None,
                   help="axial slice index for a 2D fit (default: 3D)")


def add_parser(sub: Any) -> None:
    """Register ``fit`` on an argparse subparsers object."""
    import argparse

    from .cli_args import float_list, floats
    from .config import default_of

    def dflt(name: str) -> str:
        return default_of(FitConfig, name)

    p = sub.add_parser(
        "fit", help="calibrate the model to a patient's segmentations; forecast and plans",
        description="Fit origin, lambda = sqrt(Dw/rho) and rho*T (one scan) or Dw, rho and the "
        "age (two or more dated scans) to tumour segmentations with the FD solver (CMA-ES on a "
        "2 mm grid, then least squares on the input grid); write the fitted density at the "
        "scans and forecast days, the standard (core + margin) and model (top-k density) CTVs, "
        "coverage of a recurrence, figures, results.json and log.csv. --method pinn fits the "
        "same unknowns with the physics-informed network instead (same observation model; "
        "outputs as for fd plus the network's own u_pinn_day<D>). " + IDENTIFIABILITY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="units: mm (world coordinates), days, Dw mm^2/day, rho 1/day, volumes ml. "
        "Days in file names count from the first scan.")
    add_patient_args(p)
    m = p.add_argument_group("model and unknowns")
    m.add_argument("--ratio", type=float, default=None, help=f"Dw/Dg, fixed ({dflt('ratio')})")
    m.add_argument("--lambda-range", type=floats(2), default=None,
                   help=f"bounds of lambda, mm ({dflt('lambda_range')})")
    m.add_argument("--fit-thresholds", action="store_true", default=None,
                   help="also fit theta_c, theta_e within their ranges (default: fixed; with "
                   "one scan they trade off against lambda and rho*T)")
    m.add_argument("--theta-c", type=float, default=None,
                   help=f"core threshold, u >= theta_c ({dflt('theta_c')})")
    m.add_argument("--theta-e", type=float, default=None,
                   help=f"whole-tumour threshold, u >= theta_e ({dflt('theta_e')})")
    m.add_argument("--theta-c-range", type=floats(2), default=None,
                   help=f"bounds of theta_c ({dflt('theta_c_range')})")
    m.add_argument("--theta-e-range", type=floats(2), default=None,
                   help=f"bounds of theta_e ({dflt('theta_e_range')})")
    m.add_argument("--assume-days", type=float, default=None,
                   help="one scan: assumed tumour age at the scan, days (gives Dw, rho, "
                   "forecasts)")
    m.add_argument("--assume-speed", type=float, default=None,
                   help="one scan: assumed front speed 2 sqrt(Dw rho), mm/day (instead of "
                   "--assume-days)")
    f = p.add_argument_group("fit")
    f.add_argument("--coarse-mm", type=float, default=None,
                   help=f"voxel size of the global stage's grid, mm; 0 = none ({dflt('coarse_mm')})")
    f.add_argument("--crop-mm", type=float, default=None,
                   help=f"margin of the solve box around the tumour, mm ({dflt('crop_mm')})")
    f.add_argument("--global-solves", type=int, default=None,
                   help=f"CMA-ES solve budget ({dflt('global_solves')})")
    f.add_argument("--local-solves", type=int, default=None,
                   help=f"local least-squares solve budget ({dflt('local_solves')})")
    f.add_argument("--popsize", type=int, default=None, help="CMA-ES population (4 + 3 ln n)")
    f.add_argument("--safety", type=float, default=None,
                   help=f"time step / stability bound ({dflt('safety')})")
    f.add_argument("--seed", type=int, default=None, help=f"random seed ({dflt('seed')})")
    u = p.add_argument_group("uncertainty")
    u.add_argument("--uncertainty", action="store_true", default=None,
                   help="sample the posterior (emcee on the coarse grid): 90 %% intervals and "
                   "P(u > level) maps")
    u.add_argument("--steps", type=int, default=None,
                   help=f"MCMC steps per walker ({dflt('steps')})")
    u.add_argument("--burn", type=int, default=None, help=f"burn-in steps ({dflt('burn')})")
    u.add_argument("--walkers", type=int, default=None, help="walkers (2 n + 2)")
    u.add_argument("--corr-mm", type=float, default=None,
                   help=f"correlation length of label errors, mm ({dflt('corr_mm')})")
    u.add_argument("--draws", type=int, default=None,
                   help=f"posterior samples solved for the probability maps ({dflt('draws')})")
    u.add_argument("--prob-levels", type=float_list, default=None,
                   help=f"levels of the P(u > level) maps ({dflt('prob_levels')})")
    o = p.add_argument_group("forecast and plans")
    o.add_argument("--forecast", type=float_list, default=None,
                   help="days after the last scan to forecast, comma-separated")
    o.add_argument("--margin-mm", type=float, default=None,
                   help=f"standard CTV margin around the core, mm ({dflt('margin_mm')})")
    o.add_argument("--iso-levels", type=float_list, default=None,
                   help="extra iso-density plans u >= level, comma-separated")
    n = p.add_argument_group("method")
    n.add_argument("--method", choices=["fd", "pinn"], default=None,
                   help=f"inference method: fd (FD solver + CMA-ES + least squares) or pinn "
                   f"(physics-informed network, same observation model) ({dflt('method')})")
    n.add_argument("--pinn-budget", type=float, default=None,
                   help=f"PINN training time budget, seconds ({dflt('pinn_budget')})")
    n.add_argument("--pinn-iters", type=int, default=None,
                   help=f"PINN L-BFGS iteration cap ({dflt('pinn_iters')})")
    n.add_argument("--pinn-colloc", type=int, default=None,
                   help=f"PINN collocation points per draw ({dflt('pinn_colloc')})")
    n.add_argument("--pinn-data-points", type=int, default=None,
                   help=f"segmentation voxels in the PINN's data term ({dflt('pinn_data_points')})")
    n.add_argument("--pinn-w-data", type=float, default=None,
                   help=f"weight of the PINN's data term ({dflt('pinn_w_data')})")
    n.add_argument("--pinn-compile", action=argparse.BooleanOptionalAction, default=None,
                   help=f"torch.compile the PINN's loss ({dflt('pinn_compile')})")
    n.add_argument("--device", default=None,
                   help="PINN device: auto (CUDA when present), cpu, cuda; cuda on a machine "
                   "without it is an error (auto)")
    n.add_argument("--threads", type=int, default=None,
                   help="PINN CPU threads (all cores)")
    p.add_argument("--config", help="TOML file with these settings (flags override it)")
    p.add_argument("--out", default="runs/fit", help="output folder (runs/fit)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the same settings and inputs from its "
                   "last finished stage (kept in .<out>.checkpoint.json beside --out)")
    p.set_defaults(func=_cmd_fit)


_FLAGS = ("wm", "gm", "csf", "patient", "labels", "tumour_tissue", "recurrence", "slice",
          "ratio", "lambda_range", "fit_thresholds", "theta_c", "theta_e", "theta_c_range",
          "theta_e_range", "assume_days", "assume_speed", "coarse_mm", "crop_mm",
          "global_solves", "local_solves", "popsize", "safety", "seed", "uncertainty", "steps",
          "burn", "walkers", "corr_mm", "draws", "prob_levels", "forecast", "margin_mm",
          "iso_levels", "method", "pinn_budget", "pinn_iters", "pinn_colloc",
          "pinn_data_points", "pinn_w_data", "pinn_compile", "device", "threads")


def _cmd_fit(a: Any) -> int:
    from .config import build, load_toml

    over = {k: getattr(a, k) for k in _FLAGS}
    over["scans"] = tuple(a.scan) if a.scan else None
    cfg = build(FitConfig, load_toml(a.config) if a.config else {}, over)
    run_fit(cfg, a.out, force=a.force, progress=True, resume=a.resume)
    return 0
