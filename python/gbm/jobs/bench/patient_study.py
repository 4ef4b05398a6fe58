"""The patient study of ``gbm bench --study patient``: the inference methods side by side on the
same synthetic patients, in one run.

Patients come from ``gbm synth`` (:mod:`gbm.jobs.synth`) on the embedded atlas (block-averaged by
``downsample``): the default tumour (origin (28, 18, 27) mm, Dw 0.13 mm^2/day, rho 0.025 /day,
age 400 days, recurrence 150 days after the last scan). Cases:

* ``one``, ``two``: one scan, or two (``second_scan_day`` apart), clean labels;
* ``one-noisy``, ``two-noisy``: the same with ``label_noise`` (a fraction of the region boundary
  voxels flipped, see ``gbm synth --label-noise``);
* ``other-solver``: two scans made by a model the fits do not assume (:data:`OTHER_SOLVER`):
  Dw/Dg 5 instead of 10, the arithmetic face mean, issue 18's start (a Gaussian of peak 0.5 and
  e-folding radius 4.47 mm cut below 0.1, instead of the paper's 0.1 and 3.16 mm) and u blurred
  by a 1 mm Gaussian before thresholding (blurred boundaries). The fits keep gbm's own model, so
  this row measures what a model mismatch costs each method.

Methods (:data:`METHODS`): ``fd`` (``gbm fit --method fd``), ``pinn`` (``--method pinn``, the
recipe of :mod:`gbm.pinn.patient`), ``pinn-gbm`` (``--method pinn --recipe pinn-gbm``, PINN-GBM's
recipe, :mod:`gbm.pinn.recipe`) and ``bilo`` (``--method bilo``, bilevel local operator
learning). A method that ``gbm fit`` refuses (e.g. ``bilo`` on an install that lacks it) gets a
row saying so and why, and the study goes on. Every fit has the same inputs and a forecast to the
recurrence day (one scan: ``--assume-days`` = the true age, since one scan fixes only lambda and
rho*T); the network methods share ``pinn_budget``, ``device`` and ``threads``.

Each fit runs in a fresh process (``isolate``, the default) so that its peak memory (max RSS of
that process: imports, data, the fit and its outputs) is its own; ``isolate=False`` runs the fits
in the study's process and reports the study's peak so far instead.

Per fit: Dice of core and whole tumour per scan of the written u (the FD solver at the method's
estimate; for the network methods also the network's own u), origin error, lambda, rho*T (and
Dw, rho with two scans) and their errors, Dice (u > 0.25) of the forecast against the true
density at the recurrence day, recurrence coverage of the model plan and the standard 15 mm
plan, wall time of the fit, peak memory. ``report.md`` (with which method to use for what, from
these numbers against issue 20's targets, :data:`TARGETS`) and ``report.json`` publish them.
With ``resume`` a row whose fit settings match is taken from ``rows/`` of an earlier run into the
same folder (the patients are regenerated; they are deterministic in the seed).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gbm import extras, io
from gbm.errors import InputError, require
from gbm.io import load_nifti
from gbm.jobs.fit.run import FitConfig, run_fit
from gbm.jobs.synth import SynthConfig, synth
from gbm.problem.segmentation.model import dice
from gbm.provenance import peak_rss_gb, versions

__all__ = ["CASES", "METHODS", "OTHER_SOLVER", "TARGETS", "PatientStudyConfig",
           "recommendation", "report_markdown", "run_patient_study"]

CASES = ("one", "one-noisy", "two", "two-noisy", "other-solver")
METHODS = ("fd", "pinn", "pinn-gbm", "bilo")
#: The network methods (they take ``pinn_budget``, ``device`` and ``threads``).
NETWORK_METHODS = ("pinn", "pinn-gbm", "bilo")
#: What makes the ``other-solver`` patient (SynthConfig fields; module docstring).
OTHER_SOLVER: dict[str, Any] = {"ratio": 5.0, "face_mean": "arithmetic", "start_peak": 0.5,
                                "start_radius_mm": 4.472, "start_cutoff": 0.1, "blur_mm": 1.0}
#: Issue 20's targets: whole-tumour Dice of the FD model at the estimate, origin error (mm),
#: |error| of lambda and rho*T (%), of Dw and rho with two scans (%).
TARGETS = {"dice_whole": 0.9, "origin_mm": 3.0, "lambda_pct": 15.0, "rhoT_pct": 15.0,
           "dw_rho_pct": 20.0}


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
    isolate: bool = True

    def validate(self) -> None:
        require(self.downsample >= 1, f"--downsample must be >= 1, got {self.downsample}")
        require(len(self.methods) > 0 and all(m in METHODS for m in self.methods),
                f"--methods must be a comma-separated subset of {','.join(METHODS)}, got "
                f"{','.join(self.methods) or 'nothing'}")
        for c in self.cases:
            require(c in CASES, f"unknown patient-study case {c!r} (one of {', '.join(CASES)})")
        require(self.pinn_budget > 0, f"--pinn-budget must be > 0, got {self.pinn_budget}")


def _machine(with_torch: bool) -> str:
    """CPU, cores, with the network methods torch and the GPU if any
    (from :func:`gbm.provenance.versions`)."""
    v = versions()
    if not with_torch:
        return f"{v.get('cpu', v['processor'])}, {v['cores']} cores"
    import torch  # the network methods' optional extra, present when they run

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{v.get('cpu', v['processor'])}, {v['cores']} cores, torch {torch.__version__}{gpu}"


def synth_config(cfg: PatientStudyConfig, case: str) -> SynthConfig:
    """The ``gbm synth`` settings of a case (module docstring)."""
    two = case.startswith("two") or case == "other-solver"
    extra = OTHER_SOLVER if case == "other-solver" else {}
    return SynthConfig(downsample=cfg.downsample,
                       scan_days=(0.0, cfg.second_scan_day) if two else (0.0,),
                       label_noise=cfg.label_noise if case.endswith("noisy") else 0.0,
                       seed=cfg.seed, **extra)


def fit_kwargs(cfg: PatientStudyConfig, method: str, patient: Path,
               truth: dict[str, Any]) -> dict[str, Any]:
    """The :class:`FitConfig` fields of one fit (plain types: stored with its row)."""
    day = float(truth["recurrence_day"])
    kw: dict[str, Any] = {"patient": str(patient),
                          "forecast": [day - float(truth["scan_days"][-1])],
                          "method": "pinn" if method == "pinn-gbm" else method,
                          "seed": cfg.seed}
    if len(truth["scan_days"]) == 1:
        kw["assume_days"] = float(truth["age_days"])
    if method in NETWORK_METHODS:
        kw.update(pinn_budget=cfg.pinn_budget, device=cfg.device, threads=cfg.threads,
                  pinn_compile=cfg.pinn_compile)
    if method == "pinn-gbm":
        kw["recipe"] = "pinn-gbm"
    return kw


def fit_config(kw: dict[str, Any]) -> FitConfig:
    """The :class:`FitConfig` of ``kw`` (lists as tuples)."""
    return FitConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()})


def refusal(kw: dict[str, Any]) -> str | None:
    """Why ``gbm fit`` refuses these settings (its one-line error), or None."""
    try:
        fit_config(kw).validate()
    except (InputError, TypeError) as exc:   # TypeError: a field this install lacks
        return str(exc)
    return None


def _fit_in_process(kw: dict[str, Any], fdir: str) -> tuple[dict[str, Any], float, float]:
    """Run one fit; returns its results, wall seconds and this process's peak RSS (GB)."""
    t0 = time.perf_counter()
    res = run_fit(fit_config(kw), fdir, force=True, printer=_indented)
    wall = time.perf_counter() - t0
    return res, wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _indented(m: str) -> None:
    print(f"    {m}", flush=True)


def _run_one(kw: dict[str, Any], fdir: Path, isolate: bool) -> tuple[dict[str, Any], float, float]:
    """One fit, in a fresh process with ``isolate`` (its own peak memory), else here."""
    if not isolate:
        res, wall, _ = _fit_in_process(kw, str(fdir))
        return res, wall, peak_rss_gb()
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        return ex.submit(_fit_in_process, kw, str(fdir)).result()


def _row(case: str, method: str, res: dict[str, Any], truth: dict[str, Any], fit_dir: Path,
         patient: Path, wall: float, peak_gb: float) -> dict[str, Any]:
    """The study's row of one fit (module docstring)."""
    e = res["estimates"]
    net = res["scans"][0].get("pinn_dice_whole") is not None
    row: dict[str, Any] = {
        "case": case, "method": method, "wall_s": wall, "peak_gb": peak_gb,
        "dice": [(s["dice_core"], s["dice_whole"]) for s in res["scans"]],
        "network_dice": ([(s["pinn_dice_core"], s["pinn_dice_whole"]) for s in res["scans"]]
                         if net else None),
        "origin_err_mm": math.dist(e["origin_world_mm"], truth["origin_world_mm"]),
        "lambda_mm": e["lambda_mm"], "rho_T": e["rho_T"], "dw": None, "rho": None,
        "lambda_err_pct": 100 * (e["lambda_mm"] / truth["lambda_mm"] - 1),
        "rhoT_err_pct": 100 * (e["rho_T"] / truth["rho_T"] - 1),
        "dw_err_pct": None, "rho_err_pct": None,
    }
    if e["dw"] is not None and res["config"]["assume_days"] is None:
        row.update(dw=e["dw"], rho=e["rho"], dw_err_pct=100 * (e["dw"] / truth["dw"] - 1),
                   rho_err_pct=100 * (e["rho"] / truth["rho"] - 1))
    day = float(truth["recurrence_day"])
    u = load_nifti(fit_dir / f"u_day{day:g}.nii.gz", "fitted u")[0]
    ut = load_nifti(patient / "truth" / f"u_day{day:g}.nii.gz", "true u")[0]
    row["forecast_dice"] = dice(u > 0.25, ut > 0.25)
    pl = res["plans"]
    row["coverage_model"] = pl.get("recurrence_coverage_model")
    row["coverage_standard"] = pl.get("recurrence_coverage_standard")
    row["pinn_iterations"] = (res.get("pinn") or {}).get("iterations")
    row["status"] = res.get("status")
    return row


def _key(kw: dict[str, Any], scfg: SynthConfig) -> dict[str, Any]:
    """What a row depends on: the fit settings (not the patient's folder) and the patient's
    synth settings."""
    return json.loads(json.dumps({"fit": {k: v for k, v in kw.items() if k != "patient"},
                                  "synth": asdict(scfg)}))


def _stored_row(rows_dir: Path, name: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """An earlier run's row of the same settings (``resume``), else None."""
    p = rows_dir / f"{name}.json"
    if not p.is_file():
        return None
    st = json.loads(p.read_text())
    return st["row"] if st.get("key") == key else None


def run_patient_study(cfg: PatientStudyConfig, out: str | Path, force: bool = False,
                      printer: Callable[[str], None] | None = None,
                      resume: bool = False) -> dict[str, Any]:
    """Run the study and write ``out`` (report.md, report.json, patients/, fits/, rows/)."""
    say = printer or (lambda m: print(m, flush=True))
    cfg.validate()
    if any(m in NETWORK_METHODS for m in cfg.methods):
        extras.require("pinn", "gbm bench --study patient with the network methods "
                       "(--methods fd: the FD fits alone)")
    outp = Path(out)
    io.check_output(outp, force or resume)
    (outp / "rows").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    kept = 0
    t_all = time.perf_counter()
    for case in cfg.cases:
        pdir = outp / "patients" / case
        scfg = synth_config(cfg, case)
        truth = synth(scfg, pdir, force=True)
        for method in cfg.methods:
            name = f"{case}-{method}"
            kw = fit_kwargs(cfg, method, pdir, truth)
            key = _key(kw, scfg)
            row = _stored_row(outp / "rows", name, key) if resume else None
            if row is not None:
                kept += 1
                say(f"patient study: {case}, {method}: kept from the earlier run")
            elif (why := refusal(kw)) is not None:
                row = {"case": case, "method": method, "skipped": why}
                say(f"patient study: {case}, {method}: not run ({why})")
            else:
                say(f"patient study: {case}, {method}")
                res, wall, peak = _run_one(kw, outp / "fits" / name, cfg.isolate)
                row = _row(case, method, res, truth, outp / "fits" / name, pdir, wall, peak)
                say(f"    -> {_line(row)}")
            io.write_json_atomic(outp / "rows" / f"{name}.json", {"key": key, "row": row},
                                 force=True)
            rows.append(row)
    report = {"config": asdict(cfg),
              "machine": _machine(any(m in NETWORK_METHODS for m in cfg.methods)),
              "rows": rows, "rows_kept": kept, "total_seconds": time.perf_counter() - t_all,
              "study_peak_rss_gb": peak_rss_gb(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    io.write_json_atomic(outp / "report.json", report, force=True)
    io.write_bytes_atomic(outp / "report.md", report_markdown(report).encode(), force=True)
    say(f"patient study: {len(rows)} rows, {report['total_seconds']:.0f} s -> {outp}")
    return report


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:+.1f}"


def _line(r: dict[str, Any]) -> str:
    d = "; ".join(f"{c:.3f}/{w:.3f}" for c, w in r["dice"])
    return (f"Dice {d}, origin {r['origin_err_mm']:.1f} mm, lambda {_pct(r['lambda_err_pct'])} %, "
            f"rho*T {_pct(r['rhoT_err_pct'])} %, forecast Dice {r['forecast_dice']:.3f}, "
            f"{r['wall_s']:.0f} s, {r['peak_gb']:.2f} GB")


def meets_targets(r: dict[str, Any]) -> dict[str, bool]:
    """Which of :data:`TARGETS` a (run) row meets."""
    t = TARGETS
    ok = {"dice": min(w for _, w in r["dice"]) >= t["dice_whole"],
          "origin": r["origin_err_mm"] <= t["origin_mm"],
          "lambda": abs(r["lambda_err_pct"]) <= t["lambda_pct"],
          "rhoT": abs(r["rhoT_err_pct"]) <= t["rhoT_pct"]}
    if r["dw_err_pct"] is not None:
        ok["dw_rho"] = max(abs(r["dw_err_pct"]), abs(r["rho_err_pct"])) <= t["dw_rho_pct"]
    return ok


def _table_row(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return (f"| {r['case']} | {r['method']} | not run: {r['skipped']} |" + " |" * 11)
    d = "; ".join(f"{a:.3f}/{b:.3f}" for a, b in r["dice"])
    nd = ("; ".join(f"{a:.3f}/{b:.3f}" for a, b in r["network_dice"])
          if r["network_dice"] else "—")
    cov = (f"{r['coverage_model']:.3f} / {r['coverage_standard']:.3f}"
           if r["coverage_model"] is not None else "—")
    dw_rho = (f"{r['dw']:.3f} / {r['rho']:.4f}" if r["dw"] is not None else "—")
    met = meets_targets(r)
    return (f"| {r['case']} | {r['method']} | {d} | {nd} | {r['origin_err_mm']:.2f} | "
            f"{r['lambda_mm']:.2f} ({_pct(r['lambda_err_pct'])}) | "
            f"{r['rho_T']:.2f} ({_pct(r['rhoT_err_pct'])}) | {dw_rho} | "
            f"{_pct(r['dw_err_pct'])} / {_pct(r['rho_err_pct'])} | {r['forecast_dice']:.3f} | "
            f"{cov} | {r['wall_s']:.0f} | {r['peak_gb']:.2f} | {sum(met.values())}/{len(met)} |")


def _median(v: list[float]) -> float:
    return statistics.median(v) if v else float("nan")


def recommendation(rows: list[dict[str, Any]]) -> list[str]:
    """Which method to use for what, computed from the run rows (report.md's closing lines)."""
    run = [r for r in rows if "skipped" not in r]
    methods = list(dict.fromkeys(r["method"] for r in run))
    if not methods:
        return ["No method ran."]
    per: dict[str, dict[str, float]] = {}
    lines = ["Per method (medians over its cases; targets met = all of issue 20's targets "
             "in a case):", ""]
    for m in methods:
        rs = [r for r in run if r["method"] == m]
        per[m] = {"ok": sum(all(meets_targets(r).values()) for r in rs), "n": len(rs),
                  "dice": _median([min(w for _, w in r["dice"]) for r in rs]),
                  "lam": _median([abs(r["lambda_err_pct"]) for r in rs]),
                  "origin": _median([r["origin_err_mm"] for r in rs]),
                  "fc": _median([r["forecast_dice"] for r in rs]),
                  "wall": _median([r["wall_s"] for r in rs]),
                  "gb": max(r["peak_gb"] for r in rs)}
        p = per[m]
        lines.append(f"- **{m}**: targets met in {p['ok']:.0f}/{p['n']:.0f} cases; FD model "
                     f"at the estimate whole-tumour Dice {p['dice']:.3f}, |lambda error| "
                     f"{p['lam']:.1f} %, origin {p['origin']:.2f} mm, forecast Dice "
                     f"{p['fc']:.3f}; wall {p['wall']:.0f} s, peak {p['gb']:.2f} GB.")
    best = max(methods, key=lambda m: (per[m]["ok"], per[m]["fc"], -per[m]["wall"]))
    lines += ["", f"Use **{best}** for parameters, forecasts and plans: it meets the most targets "
              f"({per[best]['ok']:.0f}/{per[best]['n']:.0f} cases) and has the best forecast "
              "Dice among those."]
    fail = [m for m in methods if per[m]["dice"] < TARGETS["dice_whole"]]
    if fail:
        lines.append(f"Not for parameters, forecasts or plans: {', '.join(fail)} (the FD model "
                     "at their estimate does not reproduce the scans, whole-tumour Dice < "
                     f"{TARGETS['dice_whole']:g}).")
    nets = [r for r in run if r["network_dice"]]
    for m in dict.fromkeys(r["method"] for r in nets):
        nd = _median([min(w for _, w in r["network_dice"]) for r in nets if r["method"] == m])
        if nd < TARGETS["dice_whole"]:
            lines.append(f"{m}'s own network does not reproduce the segmentations either "
                         f"(median whole-tumour Dice {nd:.3f}).")
            continue
        lines.append(f"{m}'s own network reproduces the segmentations with median whole-tumour "
                     f"Dice {nd:.3f}" + (" while its parameters do not: use its u only as a "
                                          "smooth interpolant of the segmentation."
                                          if m in fail else "."))
    return lines


def report_markdown(rep: dict[str, Any]) -> str:
    """The study's table (one row per case and method) and which method to use for what."""
    c = rep["config"]
    methods = list(c.get("methods", METHODS))
    nets = [m for m in methods if m in NETWORK_METHODS]
    lines = [
        f"# Patient study: {', '.join(methods)} on the same synthetic patients", "",
        f"Machine: {rep['machine']}; {rep['date']}; atlas block-averaged x{c['downsample']}; "
        + (f"network budget {c['pinn_budget']:g} s per fit; " if nets else "")
        + f"label noise {c['label_noise']:g} on the noisy cases; other-solver: Dw/Dg 5, "
        "arithmetic face mean, issue 18's start, 1 mm blur before thresholding. One scan: "
        "lambda and rho*T only are identifiable (the forecast uses the true age, "
        "--assume-days); two scans: Dw and rho.", "",
        "Dice core/whole per scan, the forecast and the plans are the FD solver at each "
        "method's estimate; network Dice is the network's own u. Peak = max RSS of the fit's "
        "process" + ("" if c.get("isolate", True) else " (the study's process so far)") + ".",
        "",
        "| case | method | Dice core/whole per scan | network Dice | origin err [mm] | "
        "lambda mm (%) | rho*T (%) | Dw / rho | Dw % / rho % | forecast Dice | "
        "coverage model / 15 mm | wall [s] | peak [GB] | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_table_row(r) for r in rep["rows"]]
    k = rep.get("rows_kept", 0)
    lines += ["", f"Total {rep['total_seconds']:.0f} s" + (
        f" in this run; {k} of {len(rep['rows'])} rows kept from earlier runs (--resume; their "
        "wall is in their rows)." if k else "."), "", "## Which method for what", ""]
    lines += recommendation(rep["rows"]) + [""]
    return "\n".join(lines)
