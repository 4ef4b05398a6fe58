"""The job behind ``python -m gbm tissue``: a patient's MR image + tumour segmentation -> white/gray
matter/CSF maps on the segmentation's grid, by registering the ICBM152 atlas onto the patient.

Steps of :func:`make_tissue`: check the settings and the output folder, read and check the inputs
(:mod:`gbm.jobs.tissue.inputs`; bad input is reported with or without the engine), require the
optional extra (:func:`gbm.jobs.tissue.engine.engine`), load the atlas (:mod:`gbm.jobs.tissue.atlas`; block-averaged to the patient's voxel size when that is
2 mm or coarser), register the atlas T1 onto the fixed image with the preset
(:func:`gbm.jobs.tissue.engine.register`) under the metric mask, warp the atlas WM, GM, T1 and brain
through the result, build the maps (:func:`tissue_maps`), measure the quality
(:mod:`gbm.jobs.tissue.report`), and write everything (:mod:`gbm.jobs.tissue.outputs`), staged and
renamed into place.  Returns the typed :class:`~gbm.jobs.tissue.report.TissueReport` that
``tissue.json`` holds.  Units: mm, seconds, ml.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gbm import io
from gbm.jobs.tissue import engine as eng
from gbm.jobs.tissue import outputs as out_files
from gbm.jobs.tissue.atlas import ATLAS_NAME, Atlas, csf_inside, load_atlas
from gbm.jobs.tissue.config import PRESETS, TissueConfig
from gbm.jobs.tissue.figure import tissue_figure
from gbm.jobs.tissue.inputs import TissueInputs, metric_mask, read_inputs
from gbm.jobs.tissue.report import CSF_RULE, MAP_RULE, TissueReport, quality
from gbm.provenance import versions

__all__ = ["make_tissue", "tissue_maps"]


def tissue_maps(wm: np.ndarray, gm: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    """Warped atlas fractions -> the output maps: wm and gm clipped to [0, 1] and 0 outside
    ``brain``, csf = clip(1 - wm - gm, 0, 1) inside it (float64, one shape)."""
    w = np.where(brain, np.clip(wm, 0.0, 1.0), 0.0)
    g = np.where(brain, np.clip(gm, 0.0, 1.0), 0.0)
    return {"wm": w, "gm": g, "csf": csf_inside(w, g, brain)}


def atlas_for(inputs: TissueInputs) -> Atlas:
    """The atlas at the patient's resolution: 1 mm, or block-averaged by round(voxel size) for a
    grid of 2 mm or coarser (a 1 mm atlas sampled at 2 mm would alias)."""
    return load_atlas(max(1, round(min(inputs.spacing))))


def _say(m: str) -> None:
    print(m, flush=True)


def make_tissue(cfg: TissueConfig, out: str | Path, force: bool = False,
                printer: Callable[[str], None] | None = None) -> TissueReport:
    """Make the tissue maps of one patient and write ``out`` (module header).

    Raises
    ------
    InputError
        Bad settings or input (:mod:`gbm.jobs.tissue.inputs`), an existing ``out`` without
        ``force``, or the extra ``gbm[tissue]`` missing (:class:`gbm.extras.MissingExtraError`).
    """
    say = printer or _say
    cfg.validate()
    io.check_output(out, force)
    t_all = time.perf_counter()
    inputs = read_inputs(cfg)
    mask = metric_mask(inputs, cfg.mask_edema)
    eng.engine("gbm tissue", cfg.thread_count)
    atlas = atlas_for(inputs)
    preset = PRESETS[cfg.preset]
    seconds = {"read": time.perf_counter() - t_all}
    say(f"gbm tissue: registering the atlas T1 onto {inputs.files.fixed.name} ({cfg.preset}: "
        f"{preset.summary}; {cfg.thread_count} threads)")
    with io.staged_outdir(out, force) as tmp:
        prefix = tmp / out_files.TRANSFORM_PREFIX
        prefix.parent.mkdir(parents=True)
        reg = eng.register(inputs.fixed, eng.Volume(atlas.t1, atlas.affine), mask, preset, prefix,
                           seed=cfg.seed, threads=cfg.thread_count)
        seconds.update(reg.seconds)
        t0 = time.perf_counter()
        warped = eng.warp(reg, inputs.fixed, {
            "wm": eng.Volume(atlas.wm, atlas.affine), "gm": eng.Volume(atlas.gm, atlas.affine),
            "t1": eng.Volume(atlas.t1, atlas.affine),
            "brain": eng.Volume(atlas.brain.astype(np.float32), atlas.affine)},
            threads=cfg.thread_count)
        seconds["warp"] = time.perf_counter() - t0
        maps = tissue_maps(warped["wm"], warped["gm"], inputs.brain)
        q = quality(warped["t1"], inputs.fixed.array, mask, warped["brain"], inputs.brain)
        out_files.write_maps(tmp, maps, io.stored_grid(inputs.files.seg))
        out_files.copy_file(inputs.files.seg, tmp / out_files.SEG_FILE)
        title = f"gbm tissue: {cfg.preset} preset, atlas T1 onto {inputs.files.fixed.name}"
        io.write_bytes_atomic(tmp / out_files.FIGURE_FILE, tissue_figure(
            inputs.fixed.array, inputs.affine, maps["wm"], maps["gm"], inputs.regions,
            inputs.brain, title))
        seconds["total"] = time.perf_counter() - t_all
        report = _report(cfg, inputs, mask, reg, maps, q, seconds, tmp)
        io.write_json_atomic(tmp / out_files.JSON_FILE, report.to_json())
    say(f"gbm tissue: {cfg.preset} in {seconds['total']:.0f} s; warped atlas T1 vs image outside "
        f"the tumour r = {q.ncc_outside_tumour:.3f}, brain Dice {q.brain_dice:.3f} -> {out}")
    if q.warning:
        print(f"gbm tissue: warning: {q.warning}", file=sys.stderr, flush=True)
    return report


def _report(cfg: TissueConfig, inputs: TissueInputs, mask: np.ndarray, reg: eng.Registration,
            maps: dict[str, np.ndarray], q: object, seconds: dict[str, float],
            folder: Path) -> TissueReport:
    rel = [str(p.relative_to(folder)) for p in reg.forward]
    inv = [str(p.relative_to(folder)) for p in reg.inverse]
    ml = inputs.voxel_ml
    rule = "brain minus tumour core" + (" and edema" if cfg.mask_edema else "")
    if inputs.regions.cavity.any():
        rule += " and resection cavity"
    return TissueReport(
        atlas=ATLAS_NAME, engine=reg.engine, preset=cfg.preset,
        preset_summary=PRESETS[cfg.preset].summary, calls=reg.calls,
        fixed={"role": inputs.files.fixed_role, "file": str(inputs.files.fixed)},
        segmentation=str(inputs.files.seg), labels=inputs.convention.name,
        mask={"rule": rule, "brain": inputs.brain_rule, "voxels": int(mask.sum()),
              "ml": round(float(mask.sum()) * ml, 2), "mask_edema": cfg.mask_edema},
        seed=cfg.seed, threads=cfg.thread_count,
        seconds={k: round(v, 2) for k, v in seconds.items()}, quality=q,  # type: ignore[arg-type]
        transforms={"forward": rel, "inverse": inv, "inverse_invert": list(reg.inverse_invert),
                    "usage": "atlas -> patient: ants.apply_transforms(fixed=<patient image>, "
                    "moving=<atlas image>, transformlist=forward); patient -> atlas: "
                    "transformlist=inverse, whichtoinvert=inverse_invert"},
        outputs={"wm": out_files.MAP_FILES["wm"], "gm": out_files.MAP_FILES["gm"],
                 "csf": out_files.MAP_FILES["csf"], "segmentation": out_files.SEG_FILE,
                 "figure": out_files.FIGURE_FILE},
        maps={"wm_gm": MAP_RULE, "csf": CSF_RULE},
        volumes_ml={k: round(float(v.sum()) * ml, 2) for k, v in maps.items()}
        | {"brain": round(float(inputs.brain.sum()) * ml, 2)},
        versions=versions())
