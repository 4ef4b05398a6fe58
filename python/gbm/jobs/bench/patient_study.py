"""The patient study of ``gbm bench --study patient``: both inference methods on the same
synthetic patients, in one run.

Patients come from ``gbm synth`` (:mod:`gbm.jobs.synth`) on the embedded atlas (block-averaged by
``downsample``): the default tumour (origin (28, 18, 27) mm, Dw 0.13 mm^2/day, rho 0.025 /day,
age 400 days, recurrence 150 days after the last scan), with one scan or two (90 days apart),
labels clean or with ``label_noise`` (a fraction of the region boundary voxels flipped, see
``gbm synth --label-noise``). Every patient is fitted by ``gbm fit --method fd`` and
``gbm fit --method pinn`` with the same inputs and a forecast to the recurrence day (one scan:
``--assume-days`` = the true age, since one scan fixes only lambda and rho*T).

Per fit: Dice of core and whole tumour per scan (the written u: the FD solver at the method's
estimate; for the PINN also its network's own u), origin error, errors of lambda and rho*T (and
Dw, rho with two scans), Dice (u > 0.25) of the forecast against the true density at the
recurrence day, recurrence coverage of the model plan and the standard 15 mm plan, wall time,
peak memory of the study process so far (report.json). ``report.md`` and ``report.json`` publish
them whichever method wins. ``methods`` picks the methods (``gbm bench --study patient --methods
fd``: the FD-based fits alone, with the core install; the PINN needs the optional extra ``pinn``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gbm import extras, io
from gbm.errors import require
from gbm.io import load_nifti
from gbm.jobs.fit.run import FitConfig, run_fit
from gbm.jobs.synth import SynthConfig, synth
from gbm.problem.segmentation.model import dice
from gbm.provenance import peak_rss_gb, versions

__all__ = ["PatientStudyConfig", "run_patient_study"]

CASES = ("one", "one-noisy", "two", "two-noisy")
METHODS = ("fd", "pinn")


@dataclass(frozen=True)
class PatientStudyConfig:
    """Settings of the patient study (see the module docstring)."""

    downsample: int = 2
    cases: tuple[str, ...] = CASES
    label_noise: float = 0.1
    second_scan_day: float = 90.0
    pinn_budget: float = 600.0
    pinn_compile: bool = True
    threads: int | None = None
    device: str = "auto"
    seed: int = 0
    methods: tuple[str, ...] = METHODS

    def validate(self) -> None:
        require(self.downsample >= 1, f"--downsample must be >= 1, got {self.downsample}")
        require(len(self.methods) > 0 and all(m in METHODS for m in self.methods),
                f"--methods must be a comma-separated subset of {','.join(METHODS)}, got "
                f"{','.join(self.methods) or 'nothing'}")
        for c in self.cases:
            require(c in CASES, f"unknown patient-study case {c!r} (one of {', '.join(CASES)})")
        require(self.pinn_budget > 0, f"--pinn-budget must be > 0, got {self.pinn_budget}")


def _machine(with_pinn: bool) -> str:
    """CPU, cores, with the PINN torch and the GPU if any (from :func:`gbm.provenance.versions`)."""
    v = versions()
    if not with_pinn:
        return f"{v.get('cpu', v['processor'])}, {v['cores']} cores"
    import torch  # the PINN's optional extra, present when the PINN runs

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{v.get('cpu', v['processor'])}, {v['cores']} cores, torch {torch.__version__}{gpu}"


def _row(case: str, method: str, res: dict[str, Any], truth: dict[str, Any], fit_dir: Path,
         patient: Path, day: float, wall: float) -> dict[str, Any]:

    e = res["estimates"]
    row: dict[str, Any] = {
        "case": case, "method": method, "wall_s": wall,
        "dice": [(s["dice_core"], s["dice_whole"]) for s in res["scans"]],
        "network_dice": ([(s["pinn_dice_core"], s["pinn_dice_whole"]) for s in res["scans"]]
                         if method == "pinn" else None),
        "origin_err_mm": math.dist(e["origin_world_mm"], truth["origin_world_mm"]),
        "lambda_err_pct": 100 * (e["lambda_mm"] / truth["lambda_mm"] - 1),
        "rhoT_err_pct": 100 * (e["rho_T"] / truth["rho_T"] - 1),
        "dw_err_pct": None, "rho_err_pct": None,
    }
    if e["dw"] is not None and res["config"]["assume_days"] is None:
        row["dw_err_pct"] = 100 * (e["dw"] / truth["dw"] - 1)
        row["rho_err_pct"] = 100 * (e["rho"] / truth["rho"] - 1)
    u = load_nifti(fit_dir / f"u_day{day:g}.nii.gz", "fitted u")[0]
    ut = load_nifti(patient / "truth" / f"u_day{day:g}.nii.gz", "true u")[0]
    row["forecast_dice"] = dice(u > 0.25, ut > 0.25)
    pl = res["plans"]
    row["coverage_model"] = pl.get("recurrence_coverage_model")
    row["coverage_standard"] = pl.get("recurrence_coverage_standard")
    row["pinn_iterations"] = res.get("pinn", {}).get("iterations")
    row["process_peak_rss_gb"] = peak_rss_gb()   # the study's process so far, not this fit
    return row


def run_patient_study(cfg: PatientStudyConfig, out: str | Path, force: bool = False,
                      printer: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the study and write ``out`` (report.md, report.json, patients/, fits/)."""

    say = printer or (lambda m: print(m, flush=True))
    cfg.validate()
    if "pinn" in cfg.methods:
        extras.require("pinn", "gbm bench --study patient with the PINN (--methods fd: the FD "
                       "fits alone)")
    outp = Path(out)
    io.check_output(outp, force)
    outp.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for case in cfg.cases:
        two = case.startswith("two")
        noisy = case.endswith("noisy")
        pdir = outp / "patients" / case
        scfg = SynthConfig(downsample=cfg.downsample,
                           scan_days=(0.0, cfg.second_scan_day) if two else (0.0,),
                           label_noise=cfg.label_noise if noisy else 0.0, seed=cfg.seed)
        truth = synth(scfg, pdir, force=True)
        day = float(truth["recurrence_day"])                 # the forecast day
        horizon = day - float(truth["scan_days"][-1])          # days after the last scan
        for method in cfg.methods:
            fdir = outp / "fits" / f"{case}-{method}"
            kw: dict[str, Any] = {"patient": str(pdir), "forecast": (horizon,),
                                  "method": method, "seed": cfg.seed}
            if not two:
                kw["assume_days"] = float(truth["age_days"])
            if method == "pinn":
                kw.update(pinn_budget=cfg.pinn_budget, device=cfg.device, threads=cfg.threads,
                          pinn_compile=cfg.pinn_compile)
            say(f"patient study: {case}, {method}")
            t0 = time.perf_counter()
            res = run_fit(FitConfig(**kw), fdir, force=True,
                          printer=lambda m: say(f"    {m}"))
            wall = time.perf_counter() - t0
            rows.append(_row(case, method, res, truth, fdir, pdir, day, wall))
            say(f"    -> {_line(rows[-1])}")
    report = {"config": asdict(cfg), "machine": _machine("pinn" in cfg.methods), "rows": rows,
              "total_seconds": time.perf_counter() - t_all,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    io.write_json_atomic(outp / "report.json", report, force=True)
    io.write_bytes_atomic(outp / "report.md", report_markdown(report).encode(), force=True)
    say(f"patient study: {len(rows)} fits, {report['total_seconds']:.0f} s -> {outp}")
    return report


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:+.1f}"


def _line(r: dict[str, Any]) -> str:
    d = "; ".join(f"{c:.3f}/{w:.3f}" for c, w in r["dice"])
    return (f"Dice {d}, origin {r['origin_err_mm']:.1f} mm, lambda {_pct(r['lambda_err_pct'])} %, "
            f"rho*T {_pct(r['rhoT_err_pct'])} %, forecast Dice {r['forecast_dice']:.3f}, "
            f"{r['wall_s']:.0f} s")


def report_markdown(rep: dict[str, Any]) -> str:
    """The study's table (one row per case and method)."""
    c = rep["config"]
    pinn = "pinn" in c.get("methods", METHODS)
    lines = [
        "# Patient study: FD-based fit vs PINN on the same synthetic patients" if pinn else
        "# Patient study: the FD-based fit on synthetic patients (the PINN not run: --methods fd)",
        "",
        f"Machine: {rep['machine']}; {rep['date']}; atlas block-averaged x{c['downsample']}; "
        + (f"PINN budget {c['pinn_budget']:g} s; " if pinn else "")
        + f"label noise {c['label_noise']:g} on the noisy "
        "cases. One scan: lambda and rho*T only are identifiable (the forecast uses the true "
        "age, --assume-days); two scans: Dw and rho.", "",
        "| case | method | Dice core/whole per scan | network Dice | origin err [mm] | "
        "lambda % | rho*T % | Dw % | rho % | forecast Dice | coverage model / 15 mm | "
        "wall [s] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rep["rows"]:
        d = "; ".join(f"{a:.3f}/{b:.3f}" for a, b in r["dice"])
        nd = ("; ".join(f"{a:.3f}/{b:.3f}" for a, b in r["network_dice"])
              if r["network_dice"] else "—")
        cov = (f"{r['coverage_model']:.3f} / {r['coverage_standard']:.3f}"
               if r["coverage_model"] is not None else "—")
        lines.append(f"| {r['case']} | {r['method']} | {d} | {nd} | {r['origin_err_mm']:.2f} | "
                     f"{_pct(r['lambda_err_pct'])} | {_pct(r['rhoT_err_pct'])} | "
                     f"{_pct(r['dw_err_pct'])} | {_pct(r['rho_err_pct'])} | "
                     f"{r['forecast_dice']:.3f} | {cov} | {r['wall_s']:.0f} |")
    lines += ["", f"Total {rep['total_seconds']:.0f} s." + (
        " Written u and plans of both methods come from the FD solver at each method's "
        "estimate; the PINN's network u at the scans is in "
        "fits/<case>-pinn/u_pinn_day<D>.nii.gz." if pinn else ""), ""]
    return "\n".join(lines)
