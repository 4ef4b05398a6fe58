"""The jobs behind ``python -m gbm forward`` and ``python -m gbm phase-field`` (Python API)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gbm import io
from gbm.errors import positive, require
from gbm.model.geometry import (
    DEFAULT_EPSILON_MM,
    DEFAULT_RATIO,
    DEFAULT_SEED_WORLD_MM,
    Geometry,
    load_geometry,
)
from gbm.model.simulation import simulate, snapshot_times, summarize
from gbm.provenance import versions
from gbm.viz import density as plot


@dataclass(frozen=True)
class ForwardConfig:
    """Settings of a forward FD run (units: mm, days, mm^2/day, 1/day).

    ``wm``/``gm``/``csf`` None means the embedded ICBM152 atlas; ``slice`` None means 3D;
    ``seed_mm`` None means :data:`gbm.model.geometry.DEFAULT_SEED_WORLD_MM` (world mm).
    """

    wm: str | None = None
    gm: str | None = None
    csf: str | None = None
    slice: int | None = None
    seed_mm: tuple[float, float, float] | None = None
    dw: float = 0.13
    rho: float = 0.025
    ratio: float = DEFAULT_RATIO
    days: float = 150.0
    save_every: float | None = 50.0
    epsilon: float = DEFAULT_EPSILON_MM
    margin: int = 5
    phi_min: float = 1e-3
    safety: float = 0.9
    scheme: str = "strang-rkl2"
    phase_cache: bool = True

    def validate(self) -> None:
        positive("--dw", self.dw)
        positive("--rho", self.rho)
        positive("--days", self.days)
        positive("--ratio", self.ratio)
        positive("--epsilon", self.epsilon)
        if self.save_every is not None:
            positive("--save-every", self.save_every)
        require(0 < self.safety <= 1, f"--safety must be in (0, 1], got {self.safety}")
        require(self.scheme in ("strang-rkl2", "euler"),
                f"--scheme must be strang-rkl2 or euler, got {self.scheme!r}")
        if self.seed_mm is not None:
            require(len(self.seed_mm) == 3 and all(np.isfinite(self.seed_mm)),
                    f"--seed-mm needs three finite numbers x,y,z (mm), got {self.seed_mm}")


def prepare_geometry(cfg: ForwardConfig) -> Geometry:
    """Load the maps (or atlas) and solve the phase field (or take it from the user's cache)."""
    geom = load_geometry(cfg.wm, cfg.gm, cfg.csf, slice_index=cfg.slice, margin=cfg.margin)
    return geom.with_phase_field(epsilon=cfg.epsilon, cache=cfg.phase_cache)


def run_forward(cfg: ForwardConfig, out: str | Path, force: bool = False,
                progress: bool = False) -> dict[str, Any]:
    """Simulate tumour growth and write the results folder.

    Writes into ``out`` (atomically, as a whole): ``u_day<D>.nii.gz`` per snapshot and ``phi.nii.gz``
    on the input grid (affine preserved), ``snapshots.png`` and ``summary.json``.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    cfg.validate()
    io.check_output(out, force)
    times = snapshot_times(cfg.days, cfg.save_every)
    t0 = time.perf_counter()
    geom = prepare_geometry(cfg)
    t_phase = time.perf_counter() - t0
    seed_world = cfg.seed_mm if cfg.seed_mm is not None else DEFAULT_SEED_WORLD_MM
    res = simulate(geom, cfg.dw, cfg.rho, times, seed_world=seed_world, ratio=cfg.ratio,
                   phi_min=cfg.phi_min, safety=cfg.safety, scheme=cfg.scheme,
                   progress=progress)
    rows = summarize(geom, res)
    summary: dict[str, Any] = {
        "config": asdict(cfg),
        "geometry": {"source": geom.source, "dimension": geom.ndim, "box_shape": geom.shape,
                     "box_offset": geom.offset, "spacing_mm": geom.spacing,
                     "seed_world_mm": list(seed_world),
                     "seed_local_mm": res.seed_local.tolist() if res.seed_local is not None
                     else None},
        "phase_field": dict(geom.phase_field_info, seconds_total=t_phase),
        "solver": {"scheme": cfg.scheme, "dt_days": res.dt, "steps": res.steps,
                   "active_cells": res.active_cells,
                   "wall_seconds": res.seconds},
        "snapshots": rows,
        "units": {"length": "mm", "time": "days", "volume": "mm^3" if geom.ndim == 3 else "mm^2",
                  "Dw": "mm^2/day", "rho": "1/day"},
        "versions": versions(),
    }
    with io.staged_outdir(out, force) as tmp:
        for day, u in zip(res.times, res.u):
            io.save_nifti_atomic(tmp / f"u_day{day:g}.nii.gz", geom.to_full(u), geom.input_affine,
                                 description=f"gbm u day {day:g}")
        assert geom.phi is not None
        io.save_nifti_atomic(tmp / "phi.nii.gz", geom.to_full(geom.phi), geom.input_affine,
                             description="gbm phase field")
        title = (f"FD, Dw={cfg.dw} mm^2/d, rho={cfg.rho}/d, "
                 f"{'slice ' + str(cfg.slice) if geom.ndim == 2 else '3D (axial through seed)'}")
        io.write_bytes_atomic(tmp / "snapshots.png",
                              plot.snapshot_panels(geom, res.times, list(res.u), res.seed_local,
                                                   title))
        io.write_json_atomic(tmp / "summary.json", summary)
    return summary


def run_phase_field(wm: str | None, gm: str | None, out: str | Path, csf: str | None = None,
                    slice_index: int | None = None, epsilon: float = DEFAULT_EPSILON_MM,
                    margin: int = 5, force: bool = False) -> dict[str, Any]:
    """Solve the Cahn-Hilliard phase field and write it as NIfTI on the input grid.

    Also writes ``<out stem>.png`` (mid-axial view) and ``<out stem>.json`` (solver info) beside it.
    """
    positive("--epsilon", epsilon)
    out = Path(out)
    require(out.name.endswith((".nii", ".nii.gz")), f"--out must end in .nii or .nii.gz: {out}")
    stem = out.name.removesuffix(".gz").removesuffix(".nii")
    side = [out.with_name(stem + ".png"), out.with_name(stem + ".json")]
    for p in [out, *side]:
        io.check_output(p, force)
    geom = load_geometry(wm, gm, csf, slice_index=slice_index, margin=margin)
    geom = geom.with_phase_field(epsilon=epsilon)
    assert geom.phi is not None
    mask_vol = float(geom.mask.sum() * geom.voxel_volume)
    phi_vol = float((geom.phi > 0.5).sum() * geom.voxel_volume)
    info = dict(geom.phase_field_info, box_shape=geom.shape, box_offset=geom.offset,
                mask_volume=mask_vol, phi_half_volume=phi_vol,
                volume_rel_diff=(phi_vol - mask_vol) / mask_vol, versions=versions())
    io.write_bytes_atomic(side[0], plot.field_panel(geom, geom.phi, "phase field phi", "phi"),
                          force=force)
    io.write_json_atomic(side[1], info, force=force)
    io.save_nifti_atomic(out, geom.to_full(geom.phi), geom.input_affine, force=force,
                         description="gbm phase field")
    return info
