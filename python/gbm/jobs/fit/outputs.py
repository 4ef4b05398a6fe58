"""The files of ``gbm fit``, all on the input grid with its affine, assembled in a staged folder and
renamed into place (:func:`gbm.io.staged_outdir`):

* ``u_day<D>.nii.gz``: the fitted model's density at each scan and forecast day (D = days since
  the first scan); ``u_pinn_day<D>.nii.gz``: the PINN's own u at the scans (``--method pinn``);
* ``plan_standard.nii.gz``, ``plan_model.nii.gz``, ``plan_iso<L>.nii.gz``: the plans (uint8);
* ``prob_u<L>_day<D>.nii.gz``: P(u > L) from the posterior (``--uncertainty``);
* ``log.csv``: every solve of the fit (:func:`log_csv`);
* ``panels.png`` (the scans, forecasts and plans), ``misfit.png`` (the misfit trace),
  ``posterior.png`` (``--uncertainty``);
* ``results.json``: the :class:`gbm.jobs.fit.report.FitReport`;
* ``tissue/``: for a BraTS case without maps, the ``gbm tissue`` folder the maps came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gbm import io
from gbm.jobs.fit.config import FitConfig
from gbm.jobs.fit.report import FitReport
from gbm.jobs.fit.steps import Outcome
from gbm.jobs.tissue.cache import FIT_TISSUE_DIR, copy_folder
from gbm.viz import patient as patient_plot

__all__ = ["figures", "log_csv", "write_outputs"]


def write_outputs(out: str | Path, force: bool, cfg: FitConfig, o: Outcome,
                  report: FitReport, tissue: Path | None = None) -> None:
    """Write every file of the fit into ``out`` (module header), atomically as a folder;
    ``tissue``: a ``gbm tissue`` folder made for a BraTS case, copied into ``tissue/``."""
    affine = o.inputs.patient.affine
    days_rel = o.inputs.days
    with io.staged_outdir(out, force) as tmp:
        for d, u in zip(o.model.days, o.model.states):
            kind = "scan" if d in days_rel else "forecast"
            io.save_nifti_atomic(tmp / f"u_day{d:g}.nii.gz", o.inputs.geom.to_full(u), affine,
                                 description=f"gbm fit u day {d:g} ({kind})")
        pl = o.plans
        if pl.standard is not None and pl.model is not None:
            io.save_labels_atomic(tmp / "plan_standard.nii.gz", pl.standard.astype(np.uint8),
                                  affine)
            io.save_labels_atomic(tmp / "plan_model.nii.gz", pl.model.astype(np.uint8), affine)
        for lv, m in pl.iso.items():
            io.save_labels_atomic(tmp / f"plan_iso{lv:g}.nii.gz", m.astype(np.uint8), affine)
        for (lv, d), pm in o.prob_maps.items():
            io.save_nifti_atomic(tmp / f"prob_u{lv:g}_day{d:g}.nii.gz", pm, affine,
                                 description=f"gbm P(u > {lv:g}) day {d:g}")
        if o.network is not None:
            fine = o.setup.fine
            for d, un in zip(days_rel, o.network.u):
                io.save_nifti_atomic(tmp / f"u_pinn_day{d:g}.nii.gz", fine.geom.to_full(un),
                                     affine, description=f"gbm PINN network u day {d:g}")
        io.write_bytes_atomic(tmp / "log.csv", log_csv(o.fitted.result.log))
        figures(tmp, cfg, o)
        io.write_json_atomic(tmp / "results.json", report.to_json())
        if tissue is not None:
            copy_folder(tissue, tmp / FIT_TISSUE_DIR)


def log_csv(log: list[dict[str, Any]]) -> bytes:
    """The fit's per-solve log as CSV (:func:`gbm.io.csv_bytes`): the union of the rows' keys in
    first-seen order as columns, a missing value empty; empty bytes for an empty log."""
    if not log:
        return b""
    return io.csv_bytes(log, list(dict.fromkeys(k for row in log for k in row)))


def figures(folder: Path, cfg: FitConfig, o: Outcome) -> None:
    """``panels.png``, ``misfit.png`` and, with a posterior, ``posterior.png`` into ``folder``."""
    io.write_bytes_atomic(folder / "panels.png", _panels(cfg, o))
    trace = [{"solve": r["solve"], "stage": r["stage"], "misfit": r["misfit"],
              "dice_core": r["dice_core"], "dice_whole": r["dice_whole"]}
             for r in o.fitted.result.log]
    io.write_bytes_atomic(folder / "misfit.png", patient_plot.misfit_trace(
        trace, "misfit and Dice against solves"))
    if o.sampled is not None:
        q, multi = o.sampled.quantities, o.setup.unknowns.multi
        names = ["lambda [mm]", "rho*T"] + (["Dw", "rho", "age [d]"] if multi else [])
        cols = [q["lambda_mm"], q["rho_t0"]] + ([q["dw"], q["rho"], q["t0_days"]] if multi
                                                else [])
        io.write_bytes_atomic(folder / "posterior.png", patient_plot.posterior_corner(
            np.column_stack(cols), names, None, "posterior (coarse grid, anchored)"))


def _panels(cfg: FitConfig, o: Outcome) -> bytes:
    """One row per output day: the fitted u over the tissue, the scan's contours (the recurrence's
    on the last forecast) and, at the last scan, the plans; the view cropped to the brain."""
    pd, p, days_rel = o.inputs.patient, o.fitted.params, o.inputs.days
    bg = pd.wm + 0.5 * pd.gm
    vox = np.linalg.inv(pd.affine) @ np.r_[o.fitted.origin_world, 1.0]
    center = [int(np.clip(round(float(v)), 0, n - 1)) for v, n in zip(vox[:3], pd.wm.shape)]
    pl = o.plans
    plans_d = ({f"standard CTV ({cfg.margin_mm:g} mm)": pl.standard, "model CTV": pl.model}
               if pl.standard is not None else None)
    n_scans = o.inputs.n_scans
    out_days = o.model.days
    rows = []
    for k, (d, u) in enumerate(zip(out_days, o.model.states)):
        row: dict[str, Any] = {"background": bg, "affine": pd.affine, "center_vox": center,
                               "u": o.inputs.geom.to_full(u), "crop": o.inputs.brain,
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
    ow = o.fitted.origin_world
    title = (f"gbm fit: lambda {p.lam:.2f} mm, rho*T {p.rho_t0:.2f}, origin "
             f"({', '.join(f'{v:.1f}' for v in ow)}) mm")
    return patient_plot.stacked_panels(rows, title)
