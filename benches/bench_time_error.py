"""Time error of the FD solver's time integrators (explicit Euler, Strang-RKL2) against a reference.

Reproduces the table "Time error" of benches/RESULTS.md (section "Time integration: Strang-RKL2
against explicit Euler", issue 19) with the installed package (``gbm._core.FisherKpp``).

Problem (the FD section's atlas): the embedded ICBM152 2009a maps,
  2d     the axial slice ``gbm.DEFAULT_SLICE`` at 1 mm (``gbm.load_geometry(slice_index=...)``)
  2mm    3D, the maps block-averaged x2 (``gbm.model.coarse.block_average`` / ``coarse_affine``,
         then ``gbm.model.geometry.from_maps``, margin 5 voxels)
  1.5mm  3D, the maps resampled linearly by 2/3 (``scipy.ndimage.zoom``; optional, as in
         benches/bench_fd_schemes.py)
  1mm    3D, the box of ``gbm.load_geometry()``
with the Cahn-Hilliard phase field at gbm's defaults (``Geometry.with_phase_field(cache=True)``: the
user's phase-field cache, bit-identical to a fresh solve, so a rerun skips the solve), the paper's
Gaussian start at ``gbm.DEFAULT_SEED_WORLD_MM``, D = ``geom.diffusivity(Dw)`` (Dg = Dw / 10).

Cases (Dw mm^2/day, rho 1/day), lambda = sqrt(Dw / rho): (0.13, 0.025) 2.28 mm, (0.05, 0.05) 1 mm,
(0.5, 0.02) 5 mm; 300 days. Schemes per case:
  Euler 0.9 / Euler 0.5        ``scheme="euler"``, dt = safety x the stability bound
  Strang-RKL2 rho dt 0.25 / 0.5 / 1   ``scheme="strang-rkl2"``, dt = (rho dt) / rho, default stages
                               (rho dt 0.5 is the scheme's default step; bold in --markdown)

Reference: the same space discretisation at a tiny step. Default (``--against strang``): two
Strang-RKL2 runs at dt 0.5 and 1 day (second order), Richardson-extrapolated,
u_ref = clip((4 u(0.5) - u(1)) / 3, 0, 1). Optional (``--euler-reference``): explicit Euler at
safety 0.02 and 0.04 (first order), u_ref = clip(2 u(0.02) - u(0.04), 0, 1), ~45x the steps of
Euler 0.9: meant for 2d / 2mm (at 1 mm ~12,000 steps per case). The command then prints how far
the two references are apart, and ``--against euler`` measures the rows against it instead. The
Strang reference is the more accurate one: its fine run is within 2e-5 of the extrapolation (the
Euler one's: 1e-4 to 2e-2), and the two differ by < 2e-5 except at lambda 1 (2.6e-4 in 2D,
8.4e-4 at 2 mm: the Euler reference's remaining O(dt^2) error). RESULTS' 2D rows were measured
against the Euler reference, its 2 mm lambda-1 rows against the Strang one (the other rows agree
to the printed digits either way).
References are cached under ``--cache-dir`` (``.npz`` keyed by a SHA-256 of the inputs, the case,
the reference's runs and gbm's version), so a rerun with the same folder only runs the rows.

Metrics per row, against the reference (rows of the table):
  steps, sweeps   whole steps to day 300, and stencil sweeps = steps x stages (1 for Euler)
  dt              the step (days)
  front shift     equivalent-sphere radius (disk in 2D) of {u > c} minus the reference's, for
                  c = 0.25 and 0.7, mm (negative = the front lags)
  Dice            of {u > c} and {u_ref > c}, c = 0.25 and 0.7
  max abs du      max |u - u_ref| over the box
  wall s          construction + stepping + ``state(300)`` (one run, not best-of; a loaded
                  machine inflates it; the accuracy columns do not depend on the load)
"–" when neither u nor u_ref has the region (e.g. lambda 5: u stays below 0.25 in 3D).

Usage: python benches/bench_time_error.py [--grids 2d,2mm,1mm]
         [--cases 0.13:0.025,0.05:0.05,0.5:0.02] [--days 300] [--cache-dir DIR]
         [--euler-reference] [--against strang|euler] [--out result.json] [--markdown]
Prints the machine (``lscpu`` model name, cores), the date, the load average before and after, one
progress line per row on stderr, and the table (Markdown in RESULTS' columns plus steps and wall s
with --markdown). Wall on the shared 2-core VM at load 9-11 (2026-12-05), --grids 2d,2mm, all
cases: 22 s (phase fields cached, references computed), 52 s with --euler-reference, 8 s rerun with
the references cached. 1 mm adds several minutes (its Strang reference: ~2,700 sweeps per case).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gbm
import numpy as np
from gbm import io
from gbm._core import FisherKpp
from gbm.model.coarse import block_average, coarse_affine
from gbm.model.geometry import from_maps
from gbm.provenance import __version__

GRIDS = {"2d": "2D slice 1 mm", "2mm": "3D 2 mm", "1.5mm": "3D 1.5 mm", "1mm": "3D 1 mm"}
CASES = ((0.13, 0.025), (0.05, 0.05), (0.5, 0.02))
THRESHOLDS = (0.25, 0.7)
#: Strang-RKL2 reference steps (days) and Euler reference safeties (fine, coarse).
STRANG_REF_DT = (0.5, 1.0)
EULER_REF_SAFETY = (0.02, 0.04)


@dataclasses.dataclass(frozen=True)
class Scheme:
    """One row's integrator: explicit Euler at a safety factor, or Strang-RKL2 at rho dt."""

    label: str
    safety: float | None = None
    rho_dt: float | None = None
    default: bool = False

    def kwargs(self, rho: float) -> dict:
        """Keyword arguments of ``FisherKpp`` for proliferation rate ``rho`` (1/day)."""
        if self.safety is not None:
            return {"scheme": "euler", "safety": self.safety}
        return {"scheme": "strang-rkl2", "dt": self.rho_dt / rho}


SCHEMES = (Scheme("Euler 0.9", safety=0.9), Scheme("Euler 0.5", safety=0.5),
           Scheme("Strang-RKL2 rho dt 0.25", rho_dt=0.25),
           Scheme("Strang-RKL2 rho dt 0.5", rho_dt=0.5, default=True),
           Scheme("Strang-RKL2 rho dt 1", rho_dt=1.0))


@dataclasses.dataclass(frozen=True)
class GridInputs:
    """FD inputs of one grid: the geometry (phase field included) and the start u0."""

    name: str
    geom: gbm.Geometry
    u0: np.ndarray
    setup_s: float

    @property
    def spacing(self) -> list[float]:
        return [float(h) for h in self.geom.spacing]


def atlas_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The embedded atlas' wm, gm (clipped to [0, 1]) and affine, full 1 mm grid."""
    with io.atlas_path("wm") as pw, io.atlas_path("gm") as pg:
        w, aff = io.load_nifti(pw, "wm")
        g, _ = io.load_nifti(pg, "gm")
    return np.clip(w, 0, 1), np.clip(g, 0, 1), aff


def load_grid(name: str) -> GridInputs:
    """Geometry + phase field (user cache) + Gaussian start of grid ``name`` (a key of GRIDS)."""
    t0 = time.perf_counter()
    if name == "2d":
        geom = gbm.load_geometry(slice_index=gbm.DEFAULT_SLICE)
    elif name == "1mm":
        geom = gbm.load_geometry()
    else:
        w, g, aff = atlas_maps()
        if name == "2mm":
            f = (2, 2, 2)
            w, g, aff = block_average(w, f), block_average(g, f), coarse_affine(aff, f)
        else:  # 1.5mm: linear resampling by 2/3, as benches/bench_fd_schemes.py
            from scipy.ndimage import zoom  # scipy: only this optional grid needs it

            w, g = np.clip(zoom(w, 2 / 3, order=1), 0, 1), np.clip(zoom(g, 2 / 3, order=1), 0, 1)
            aff = aff.copy()
            aff[:3, :3] *= 1.5
        geom = from_maps(w, g, aff, margin=5)
    geom = geom.with_phase_field(cache=True)
    u0 = geom.initial_condition(geom.world_to_local(gbm.DEFAULT_SEED_WORLD_MM))
    return GridInputs(name, geom, u0, time.perf_counter() - t0)


def solve(grid: GridInputs, dw: float, rho: float, days: float, **kw: object
          ) -> tuple[np.ndarray, dict]:
    """Run ``FisherKpp`` to ``days``; the state at ``days`` and the run's figures."""
    d = grid.geom.diffusivity(dw)
    t0 = time.perf_counter()
    s = FisherKpp(grid.u0, d, grid.geom.phi, grid.spacing, rho, **kw)
    s.advance(s.steps_until(days))
    u = s.state(days)
    sec = time.perf_counter() - t0
    return u, {"steps": int(s.steps), "stages": int(s.stages),
               "sweeps": int(s.steps) * int(s.stages), "dt": float(s.dt),
               "dt_stable": float(s.dt_stable), "wall_s": sec}


def compare(u: np.ndarray, ref: np.ndarray, spacing: list[float]) -> dict:
    """Front shift (mm), Dice at each threshold (None where neither has the region), max |du|."""
    dv = float(np.prod(spacing))
    out: dict = {}
    for c in THRESHOLDS:
        a, b = u > c, ref > c
        na, nb = int(a.sum()), int(b.sum())
        if na + nb == 0:
            out[f"shift_{c}_mm"] = out[f"dice_{c}"] = None
            continue
        if u.ndim == 2:
            r = [(n * dv / np.pi) ** 0.5 for n in (na, nb)]
        else:
            r = [(3 * n * dv / (4 * np.pi)) ** (1 / 3) for n in (na, nb)]
        out[f"shift_{c}_mm"] = float(r[0] - r[1])
        out[f"dice_{c}"] = float(2 * int((a & b).sum()) / (na + nb))
    out["max_abs_du"] = float(np.abs(u - ref).max())
    return out


class ReferenceStore:
    """Richardson references on disk: ``<folder>/<kind>_<grid>_<dw>_<rho>_<days>_<key>.npz``.

    The key hashes what the reference depends on (inputs' bytes, spacing, case, kind, the two
    runs' settings, gbm's version), so a stale entry is never read. Writes go to a temporary file
    renamed into place."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, grid: GridInputs, dw: float, rho: float, days: float) -> Path:
        h = hashlib.sha256()
        for a in (grid.u0, grid.geom.phi, grid.geom.diffusivity(dw)):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        settings = STRANG_REF_DT if kind == "strang" else EULER_REF_SAFETY
        h.update(repr((kind, grid.spacing, dw, rho, days, settings, __version__)).encode())
        return self.folder / f"{kind}_{grid.name}_{dw}_{rho}_{days:g}_{h.hexdigest()[:16]}.npz"

    def get(self, kind: str, grid: GridInputs, dw: float, rho: float, days: float
            ) -> tuple[np.ndarray, dict]:
        """The reference and its info (runs, wall time, Richardson gap), from disk or computed."""
        p = self.path(kind, grid, dw, rho, days)
        if p.exists():
            with np.load(p) as z:
                return z["u"], dict(json.loads(str(z["info"])), cached=True)
        u, info = richardson(kind, grid, dw, rho, days)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, u=u, info=json.dumps(info))
        os.replace(tmp, p)
        return u, dict(info, cached=False)


def richardson(kind: str, grid: GridInputs, dw: float, rho: float, days: float
               ) -> tuple[np.ndarray, dict]:
    """Richardson extrapolation of a fine and a coarse run (step ratio 2).

    ``kind="strang"``: Strang-RKL2 at dt 0.5 and 1 day, second order: (4 u_f - u_c) / 3.
    ``kind="euler"``: explicit Euler at safety 0.02 and 0.04, first order: 2 u_f - u_c.
    Both clipped to [0, 1]. The info's ``gap`` compares the fine run with the result."""
    if kind == "strang":
        runs = [solve(grid, dw, rho, days, scheme="strang-rkl2", dt=dt) for dt in STRANG_REF_DT]
        u = (4 * runs[0][0] - runs[1][0]) / 3
    else:
        runs = [solve(grid, dw, rho, days, scheme="euler", safety=s) for s in EULER_REF_SAFETY]
        u = 2 * runs[0][0] - runs[1][0]
    u = np.clip(u, 0.0, 1.0)
    return u, {"kind": kind, "runs": [r[1] for r in runs],
               "gap": compare(runs[0][0], u, grid.spacing)}


def run_case(grid: GridInputs, dw: float, rho: float, days: float, store: ReferenceStore,
             args: argparse.Namespace) -> dict:
    """One grid and case: its reference(s), then every scheme's row."""
    refs = {"strang": store.get("strang", grid, dw, rho, days)}
    if args.euler_reference or args.against == "euler":
        refs["euler"] = store.get("euler", grid, dw, rho, days)
    out: dict = {"grid": grid.name, "dw": dw, "rho": rho, "days": days,
                 "lambda_mm": (dw / rho) ** 0.5, "against": args.against,
                 "references": {k: v[1] for k, v in refs.items()}, "rows": []}
    if "euler" in refs:
        out["strang_ref_vs_euler_ref"] = compare(refs["strang"][0], refs["euler"][0], grid.spacing)
        a = out["strang_ref_vs_euler_ref"]
        log(f"  references {grid.name} Dw {dw} rho {rho}: strang vs euler max |du| "
            f"{a['max_abs_du']:.2e}, shift 0.25 / 0.7 {fmt(a['shift_0.25_mm'], '+.4f')} / "
            f"{fmt(a['shift_0.7_mm'], '+.4f')} mm")
    for sch in SCHEMES:
        u, info = solve(grid, dw, rho, days, **sch.kwargs(rho))
        row = {"scheme": sch.label, "default": sch.default, "options": sch.kwargs(rho), **info,
               "vs_reference": compare(u, refs[args.against][0], grid.spacing)}
        for k, (ref, _) in refs.items():
            row[f"vs_{k}_reference"] = compare(u, ref, grid.spacing)
        out["rows"].append(row)
        v = row["vs_reference"]
        log(f"  {grid.name} {dw}/{rho} {sch.label:24s} steps {info['steps']:5d} sweeps "
            f"{info['sweeps']:5d} dt {info['dt']:.3g} shift {fmt(v['shift_0.25_mm'], '+.3f')} / "
            f"{fmt(v['shift_0.7_mm'], '+.3f')} Dice {fmt(v['dice_0.25'], '.4f')} / "
            f"{fmt(v['dice_0.7'], '.4f')} max|du| {v['max_abs_du']:.4f} ({info['wall_s']:.2f} s)")
    return out


def fmt(x: float | None, spec: str) -> str:
    """``format(x, spec)``, or "–" for a missing value (an empty region)."""
    return "–" if x is None else format(x, spec)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def table(results: list[dict], markdown: bool) -> str:
    """The rows as RESULTS' Markdown table (plus steps and wall s), or as aligned text."""
    head = ["grid", "Dw / rho / T (lambda)", "scheme", "dt (d)", "sweeps",
            "front shift 0.25 / 0.7 (mm)", "Dice 0.25 / 0.7", "max abs du", "steps", "wall s"]
    lines = []
    for case in results:
        cl = (f"{case['dw']:g} / {case['rho']:g} / {case['days']:g} d "
              f"({case['lambda_mm']:.2f} mm)")
        for r in case["rows"]:
            v = r["vs_reference"]
            name = f"**{r['scheme']}**" if (markdown and r["default"]) else r["scheme"]
            lines.append([GRIDS[case["grid"]], cl, name, f"{r['dt']:.3g}", str(r["sweeps"]),
                          f"{fmt(v['shift_0.25_mm'], '+.3f')} / {fmt(v['shift_0.7_mm'], '+.3f')}",
                          f"{fmt(v['dice_0.25'], '.4f')} / {fmt(v['dice_0.7'], '.4f')}",
                          f"{v['max_abs_du']:.4f}", str(r["steps"]), f"{r['wall_s']:.3f}"])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(out + ["| " + " | ".join(x) + " |" for x in lines])
    w = [max(len(x[i]) for x in [head] + lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(n) for c, n in zip(x, w)).rstrip() for x in [head] + lines)


def machine() -> dict:
    """CPU model (``lscpu``), cores, UTC date, load average, threads setting, versions."""
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                      if ln.startswith("Model name")), "?")
    except (OSError, subprocess.CalledProcessError):
        pass
    return {"cpu": model, "cores": os.cpu_count(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "load_before": [round(x, 2) for x in os.getloadavg()],
            "RAYON_NUM_THREADS": os.environ.get("RAYON_NUM_THREADS"), "gbm": __version__,
            "numpy": np.__version__}


def parse_cases(text: str) -> list[tuple[float, float]]:
    """``"0.13:0.025,0.05:0.05"`` -> [(0.13, 0.025), (0.05, 0.05)] (Dw mm^2/day, rho 1/day)."""
    cases = []
    for item in text.split(","):
        dw, rho = (float(x) for x in item.split(":"))
        if not (dw > 0 and rho > 0):
            raise ValueError(item)
        cases.append((dw, rho))
    return cases


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grids", default="2d,2mm,1mm", help=f"comma list of {', '.join(GRIDS)}")
    p.add_argument("--cases", default=",".join(f"{d}:{r}" for d, r in CASES),
                   help="comma list of Dw:rho (mm^2/day : 1/day)")
    p.add_argument("--days", type=float, default=300.0)
    p.add_argument("--cache-dir", help="folder of cached references (default: a temporary one)")
    p.add_argument("--euler-reference", action="store_true",
                   help="also the Euler reference (safety 0.02 / 0.04) and its gap to Strang's")
    p.add_argument("--against", choices=("strang", "euler"), default="strang",
                   help="reference the table's columns use (euler implies --euler-reference)")
    p.add_argument("--out", help="write everything as JSON here")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    a = p.parse_args(argv)
    a.grid_list = a.grids.split(",")
    bad = [g for g in a.grid_list if g not in GRIDS]
    if bad:
        p.error(f"unknown grid(s) {bad}; choose from {', '.join(GRIDS)}")
    try:
        a.case_list = parse_cases(a.cases)
    except ValueError:
        p.error(f"--cases: expected Dw:rho pairs of positive numbers, got {a.cases!r}")
    if not a.days > 0:
        p.error("--days must be > 0")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; {info['date']}; load average before "
          f"{info['load_before']}; RAYON_NUM_THREADS={info['RAYON_NUM_THREADS']}", flush=True)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gbm_time_error_") as tmp:
        store = ReferenceStore(Path(args.cache_dir) if args.cache_dir else Path(tmp))
        results, grids = [], {}
        for name in args.grid_list:
            grid = load_grid(name)
            grids[name] = {"shape": list(grid.geom.shape), "spacing": grid.spacing,
                           "setup_s": grid.setup_s,
                           "phase_field_cached": bool(grid.geom.phase_field_info.get("cached"))}
            log(f"grid {name}: shape {tuple(grid.geom.shape)}, spacing {grid.spacing} mm "
                f"(set-up {grid.setup_s:.1f} s)")
            for dw, rho in args.case_list:
                results.append(run_case(grid, dw, rho, args.days, store, args))
    info["load_after"] = [round(x, 2) for x in os.getloadavg()]
    info["wall_s"] = time.perf_counter() - t_start
    print(f"reference: {args.against} (Richardson); load average after {info['load_after']}; "
          f"total wall {info['wall_s']:.1f} s")
    for case in results:
        if "strang_ref_vs_euler_ref" in case:
            a = case["strang_ref_vs_euler_ref"]
            print(f"references agree ({case['grid']}, Dw {case['dw']:g}, rho {case['rho']:g}): "
                  f"max |du| {a['max_abs_du']:.1e}, Dice 0.25 / 0.7 {fmt(a['dice_0.25'], '.4f')} /"
                  f" {fmt(a['dice_0.7'], '.4f')}")
    print(table(results, args.markdown))
    if args.out:
        out = Path(args.out)
        tmp_out = out.with_name(out.name + ".tmp")
        tmp_out.write_text(json.dumps({"machine": info, "args": sys.argv[1:] if argv is None
                                       else argv, "grids": grids, "cases": results}, indent=1))
        os.replace(tmp_out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
