"""The report of ``gbm bench``: ``report.json`` (every figure) and ``report.md`` (tables).

Tables, per domain: the analogue of the paper's Table 2 / 4 (noise-free run, Eq. 11 tolerances,
the paper's rows beside ours, labelled as quoted); one comparison table (method, wall time,
epochs or forward solves, % errors, hardware, the paper's figure); the same-accuracy table (time
until both errors stay within 15 % / 5 %); then the cost model, the disk's ground-truth check and
extrapolation, and a short conclusion generated from the numbers.

Without the PINN (``gbm bench --methods fd``: a run's ``pinn`` is None) the PINN's rows, the
tolerance tables and the PINN columns are left out or shown as "—".
"""

from __future__ import annotations

import math
from typing import Any

from gbm.jobs.bench.metrics import time_to_within
from gbm.jobs.bench.paper import PAPER, PAPER_EXTRAPOLATION, PAPER_FD

__all__ = ["build", "markdown", "COMPARISON_COLUMNS", "TOLERANCE_COLUMNS", "ACCURACY_COLUMNS"]

COMPARISON_COLUMNS = ["noise", "method", "wall time", "epochs / forward solves", "Dw % error",
                      "rho % error", "hardware", "paper (quoted, V100)"]
TOLERANCE_COLUMNS = ["tolerance", "epoch", "minutes", "Dw % error", "rho % error",
                     "paper: epoch", "paper: minutes", "paper: Dw % error",
                     "paper: rho % error"]
ACCURACY_COLUMNS = ["noise", "target", "PINN: time [s]", "FD-based: time [s]", "PINN / FD",
                    "PINN final Dw / rho %", "FD-based final Dw / rho %"]


def _time_to(log: list[dict], pct: float, tkey: str, dkey: str, rkey: str) -> float | None:
    return time_to_within([r[tkey] for r in log], [r[dkey] for r in log],
                          [r[rkey] for r in log], pct)


def _strip(d: dict[str, Any], drop: tuple[str, ...] = ("log", "config", "versions")) -> dict:
    return {k: v for k, v in d.items() if k not in drop}


def _hardware(meta: dict[str, Any], pinn: bool) -> str:
    v = meta["versions"]
    cpu = f"{v.get('cpu', v.get('processor', 'CPU'))}, {v.get('cores', '?')} cores"
    if pinn and meta["device"].startswith("cuda"):
        return f"GPU {v.get('gpu', 'CUDA')}"
    return f"CPU ({cpu}; {meta['threads']} torch threads)" if pinn else f"CPU ({cpu})"


def build(results: dict[str, Any], meta: dict[str, Any], figures: dict[str, str]) -> dict:
    """Assemble ``report.json`` from the study's results."""
    rep: dict[str, Any] = {"meta": meta, "domains": {}, "figures": figures}
    for domain, d in results.items():
        problem = d["problem"]
        runs = []
        for run in d["runs"].values():
            p, fd = run["pinn"], run["fd"]
            r: dict[str, Any] = {
                "noise": run["noise"], "setup_seconds": run["setup_seconds"],
                "pinn": None if p is None else _strip(p) | {
                    "time_to_15pct": _time_to(p["log"], 15, "seconds", "dw_err_pct",
                                              "rho_err_pct"),
                    "time_to_5pct": _time_to(p["log"], 5, "seconds", "dw_err_pct", "rho_err_pct"),
                },
                "fd": {},
            }
            for key, f in fd.items():
                flog = f["log"]
                r["fd"][key] = _strip(f) | {
                    "time_to_15pct": _time_to(flog, 15, "seconds", "dw_err_pct", "rho_err_pct"),
                    "time_to_5pct": _time_to(flog, 5, "seconds", "dw_err_pct", "rho_err_pct"),
                    "solves_to_5pct": _solves_to(flog, 5),
                }
            runs.append(r)
        rep["domains"][domain] = {
            "problem": problem.name, "horizon": problem.horizon,
            "n_observations": len(problem.observations), "truth": list(problem.truth),
            "region_radius_mm": problem.radius, "reference": problem.info.get("reference"),
            "forward": d["forward"], "runs": runs, "extras": d["extras"],
            "paper": PAPER[domain],
        }
    rep["cost_model"] = _cost_model(rep, meta)
    rep["conclusions"] = _conclusions(rep)
    return _jsonable(rep)


def _solves_to(log: list[dict], pct: float) -> int | None:
    t = time_to_within([r["solve"] for r in log], [r["dw_err_pct"] for r in log],
                       [r["rho_err_pct"] for r in log], pct)
    return None if t is None else int(t) + 1


def _cost_model(rep: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    n = PAPER_FD["solves"]
    rows = []
    for domain, d in rep["domains"].items():
        f = d["forward"]
        rows.append({"case": f"2D {domain} {'x'.join(map(str, f['shape']))}, {f['days']:g} d",
                     "seconds": f["seconds"], "steps": f["steps"], "dt": f["dt"],
                     "calibration_hours": n * f["seconds"] / 3600,
                     "paper_seconds": PAPER_FD["seconds_2d"], "paper_label": "estimate, 2D"})
    f3 = meta.get("forward_3d")
    if f3:
        rows.append({"case": f"3D atlas {'x'.join(map(str, f3['shape']))}, {f3['days']:g} d",
                     "seconds": f3["seconds"], "steps": f3["steps"], "dt": f3["dt"],
                     "calibration_hours": n * f3["seconds"] / 3600,
                     "paper_seconds": PAPER_FD["seconds_3d"], "paper_label": "quoted, 3D"})
    return rows


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:+.2f}"


def _secs(v: float | None) -> str:
    if v is None:
        return "not reached"
    if v < 1:
        return f"{1000 * v:.0f} ms"
    if v < 600:
        return f"{v:.1f} s"
    return f"{v / 60:.1f} min"


def _paper_row(domain: str, tol: float) -> str:
    row = PAPER[domain]["rows"].get(tol)
    if row is None:
        return "—"
    e, m, a, b = row
    return f"{e:,} ep, {m} min, {a:.2f} / {b:.2f} %"


def _weight_note(p: dict[str, Any]) -> str:
    """The PINN's noise estimate and data averaging (gbm.pinn.train, "auto")."""
    w = p.get("data_weighting")
    if not w:
        return ""
    note = f" (data weight {w['w_data']:.3g}"
    if w.get("noise_estimate") is not None:
        note += f", sigma_hat {w['noise_estimate']:.3g}"
    if w.get("average_k", 1) > 1:
        note += f", misfit averaged over k = {w['average_k']}"
    return note + ")"


def _weight_rule(d: dict[str, Any]) -> str:
    """One line stating the PINN's data-weighting rule, with this study's numbers."""
    p = d["runs"][0]["pinn"]
    if p is None:
        return "PINN: not run (--methods fd)."
    w = p.get("data_weighting") or {}
    if w.get("rule") != "auto":
        return "PINN data weight: fixed."
    w0, fl = w["w_data_clean"], w["noise_floor"]
    return (f"PINN data term (`--data-weight auto`): w_data {w0:g} mean_i((1/k) sum_(j in N_k(i)) "
            f"(u_j - u_obs,j))^2, the misfit averaged over the k = ceil((sigma_hat / {fl:g})^2) "
            "nearest observations (k = 1, the plain misfit, when sigma_hat <= "
            f"{fl:g}); sigma_hat = the observations' noise level from nearest-neighbour "
            "differences (median); the data-only fit stops once its term is <= sigma_hat^2 / k.")


def _pinn_comparison_rows(domain: str, noise: str, clean: bool, p: dict[str, Any],
                          meta: dict[str, Any]) -> list[list[str]]:
    """The PINN's rows of the comparison table: each Eq. 11 tolerance, the end of the budget."""
    rows = []
    for t in p["tolerance_table"]:
        if t["epoch"] is None:
            rows.append([noise, f"PINN, Eq. 11 tol {t['tol']:g}", "not reached", "—", "—",
                         "—", _hardware(meta, True),
                         _paper_row(domain, t["tol"]) if clean else "—"])
        else:
            rows.append([noise, f"PINN, Eq. 11 tol {t['tol']:g}", _secs(t["minutes"] * 60),
                         f"{t['epoch']:,} epochs", _pct(t["dw_err_pct"]),
                         _pct(t["rho_err_pct"]), _hardware(meta, True),
                         _paper_row(domain, t["tol"]) if clean else "—"])
    fin = PAPER[domain]["final_error_pct"]
    rows.append([noise, "PINN, end of budget" + _weight_note(p), _secs(p["wall_seconds"]),
                 f"{p['epochs']:,} epochs", _pct(p["dw_error_pct"]), _pct(p["rho_error_pct"]),
                 _hardware(meta, True),
                 f"800,000 ep, {PAPER[domain]['total_minutes']} min, ~{fin[0]:g} / "
                 f"~{fin[1]:g} %" if clean else "—"])
    return rows


def _comparison_rows(domain: str, d: dict[str, Any], meta: dict[str, Any]) -> list[list[str]]:
    rows = []
    n, (lo, hi) = PAPER_FD["solves"], PAPER_FD["seconds_2d"]
    paper_fd = (f"{n:,} solves x {lo:g}-{hi:g} s = {n * lo / 3600:.0f}-{n * hi / 3600:.0f} h "
                "(the paper's estimate, not run)")
    for j, run in enumerate(d["runs"]):
        noise = f"{run['noise']:g}"
        if run["pinn"] is not None:
            rows += _pinn_comparison_rows(domain, noise, run["noise"] == 0, run["pinn"], meta)
        for key, label in (("dw_rho", "FD-based least squares (Dw, rho)"),
                           ("dw_rho_seed", "FD-based least squares (Dw, rho, seed)")):
            f = run["fd"].get(key)
            if f is None:
                continue
            extra = f", seed off by {f['seed_error_mm']:.2f} mm" if "seed_error_mm" in f else ""
            rows.append([noise, label + extra, _secs(f["wall_seconds"]),
                         f"{f['solves']} solves", _pct(f["dw_error_pct"]),
                         _pct(f["rho_error_pct"]), _hardware(meta, False), "—"])
        if j == 0:
            rows.append(["any", f"FD-based Bayesian calibration: cost model, {n:,} x one solve "
                         "measured here (not run)", _secs(n * d["forward"]["seconds"]),
                         f"{n:,} solves", "—", "—", _hardware(meta, False), paper_fd])
    return rows


def _accuracy_rows(d: dict[str, Any]) -> list[list[str]]:
    rows = []
    for run in d["runs"]:
        p, f = run["pinn"], run["fd"]["dw_rho"]
        for pct in (15, 5):
            tf = f[f"time_to_{pct}pct"]
            fd_final = f"{_pct(f['dw_error_pct'])} / {_pct(f['rho_error_pct'])}"
            if p is None:  # the PINN did not run (--methods fd)
                rows.append([f"{run['noise']:g}", f"{pct} %", "—", _secs(tf), "—", "—",
                             fd_final])
                continue
            tp = p[f"time_to_{pct}pct"]
            ratio = f"{tp / tf:,.0f}x" if tp is not None and tf else "—"
            rows.append([f"{run['noise']:g}", f"{pct} %", _secs(tp), _secs(tf), ratio,
                         f"{_pct(p['dw_error_pct'])} / {_pct(p['rho_error_pct'])}", fd_final])
    return rows


def _tolerance_rows(domain: str, d: dict[str, Any]) -> list[list[str]]:
    run = d["runs"][0]
    rows = []
    for t in run["pinn"]["tolerance_table"]:
        pe = PAPER[domain]["rows"].get(t["tol"])
        paper = [f"{pe[0]:,}", f"{pe[1]}", f"{pe[2]:.2f}", f"{pe[3]:.2f}"] if pe else ["—"] * 4
        if t["epoch"] is None:
            rows.append([f"{t['tol']:g}", "not reached", "—", "—", "—"] + paper)
        else:
            rows.append([f"{t['tol']:g}", f"{t['epoch']:,}", f"{t['minutes']:.2f}",
                         _pct(t["dw_err_pct"]), _pct(t["rho_err_pct"])] + paper)
    return rows


def _table(cols: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _domain_conclusions(domain: str, d: dict[str, Any]) -> list[str]:
    """One sentence per noise level: where each method ended (and when it got within 15 %)."""
    out = []
    run = d["runs"][0]
    p, f = run["pinn"], run["fd"]["dw_rho"]
    s = (f"{domain}, noise {run['noise']:g}: the FD-based fit ended at Dw "
         f"{_pct(f['dw_error_pct'])} %, rho {_pct(f['rho_error_pct'])} % after "
         f"{f['solves']} forward solves in {_secs(f['wall_seconds'])}")
    tf = f["time_to_15pct"]
    if p is None:
        s += "; the PINN was not run (--methods fd)."
        if tf:
            s += f" The FD-based fit was within 15 % after {_secs(tf)}."
    else:
        s += (f"; the PINN ended at Dw {_pct(p['dw_error_pct'])} %, rho "
              f"{_pct(p['rho_error_pct'])} % after {p['epochs']:,} epochs in "
              f"{_secs(p['wall_seconds'])}.")
        tp = p["time_to_15pct"]
        if tp is not None and tf:
            s += (f" Both errors within 15 % (and staying there): PINN after {_secs(tp)}, FD-based "
                  f"after {_secs(tf)} ({tp / tf:,.0f}x).")
        elif tf:
            s += (f" The FD-based fit was within 15 % after {_secs(tf)}; the PINN did not stay "
                  "within 15 % by the end of its budget.")
    out.append(s)
    for run in d["runs"][1:]:
        p, f = run["pinn"], run["fd"]["dw_rho"]
        pinn = ("" if p is None else
                f"PINN {_pct(p['dw_error_pct'])} / {_pct(p['rho_error_pct'])} %, ")
        out.append(f"{domain}, noise {run['noise']:g}: {pinn}FD-based {_pct(f['dw_error_pct'])} "
                   f"/ {_pct(f['rho_error_pct'])} % (Dw / rho).")
    return out


def _conclusions(rep: dict[str, Any]) -> list[str]:
    out = []
    for domain, d in rep["domains"].items():
        out += _domain_conclusions(domain, d)
    for c in rep["cost_model"]:
        lo, hi = c["paper_seconds"]
        out.append(f"Cost model ({c['case']}): one FD solve takes {_secs(c['seconds'])} here, so "
                   f"{PAPER_FD['solves']:,} solves take {_secs(3600 * c['calibration_hours'])}; "
                   "the paper "
                   f"assumes {lo:g}-{hi:g} s per solve ({c['paper_label']}), "
                   f"{PAPER_FD['solves'] * lo / 3600:.0f}-{PAPER_FD['solves'] * hi / 3600:.0f} h.")
    ext = rep["domains"].get("disk", {}).get("extras", {}).get("extrapolation")
    if ext:
        pinn = (f"PINN {ext['pinn']['mse']:.2e} ({_secs(ext['pinn']['wall_seconds'])}), "
                if "pinn" in ext else "")
        out.append(f"Extrapolation 300 -> 450 d (disk): MSE against the truth {pinn}FD solver at "
                   f"the FD-fitted parameters {ext['fd']['mse']:.2e} "
                   f"({_secs(ext['fd']['wall_seconds'])}); paper {PAPER_EXTRAPOLATION['mse']:.2e} "
                   f"({PAPER_EXTRAPOLATION['minutes']:g} min, V100).")
    return out


def _with_pinn(meta: dict[str, Any]) -> bool:
    """Whether the study ran the PINN (reports from before ``methods`` existed did)."""
    return "pinn" in meta["config"].get("methods", ("fd", "pinn"))


def _header(m: dict[str, Any]) -> list[str]:
    """Title, command, machine, versions and the set-up shared by both methods."""
    v = m["versions"]
    if _with_pinn(m):
        title = "# gbm bench: the paper's experiments, PINN vs FD-based inference"
        machine = ((f", GPU {v['gpu']}" if v.get("gpu") else ", no GPU")
                   + f"; PINN on {m['device']} with {m['threads']} torch threads.")
        vers = (f"Versions: gbm {v.get('gbm')}, torch {v.get('torch')}, numpy {v.get('numpy')}, "
                f"Python {v.get('python')}, scipy {v.get('scipy')}. Seed {m['config']['seed']}; "
                f"PINN recipe {m['config']['pinn_optimizer']}, budgets {m['budgets']}.")
        who = "Both methods get"
    else:
        title = ("# gbm bench: the paper's experiments, FD-based inference (the PINN not run: "
                 "--methods fd)")
        machine = "; FD-based fits only."
        vers = (f"Versions: gbm {v.get('gbm')}, numpy {v.get('numpy')}, Python "
                f"{v.get('python')}, scipy {v.get('scipy')}. Seed {m['config']['seed']}.")
        who = "The FD-based fit gets"
    return [
        title, "",
        f"Command: `{m['command']}` ({m['mode']} mode), started {m['started']}, "
        f"{_secs(m['wall_seconds'])} in all.",
        f"Machine: {v.get('cpu', v.get('processor'))}, {v.get('cores')} cores" + machine,
        vers, "",
        f"{who} the same synthetic observations (Rust FD ground truth for the slice, "
        "the radial solver for the disk) and the paper's initial guesses Dw 0.1 mm^2/day, "
        "rho 0.01 /day; truth Dw 0.13, rho 0.025. Wall times exclude the shared set-up. The "
        "paper's figures are quoted from its Tables 2 and 4 (NVIDIA V100), not measured here. "
        "Noise: Gaussian, standard deviation in units of u (0.01 = 1 %).",
        "",
    ]


def _domain_section(domain: str, d: dict[str, Any], m: dict[str, Any]) -> list[str]:
    """A domain's tables: Table 2 / 4 analogue (with the PINN), comparison, same accuracy."""
    pp = d["paper"]
    lines = [f"## {d['problem']} (paper Sec. {pp['section']})", "",
             f"T = {d['horizon']:g} days, {d['n_observations']:,} observations, region radius "
             f"{d['region_radius_mm']:.1f} mm; ground truth: {d['reference']}.", ""]
    if d["runs"][0]["pinn"] is not None:
        lines += [f"### Table {pp['table']} analogue (noise {d['runs'][0]['noise']:g}; Eq. 11, "
                  "window 10 checks)", "", _table(TOLERANCE_COLUMNS, _tolerance_rows(domain, d)),
                  ""]
    return lines + [
        "### Comparison", "", _weight_rule(d), "",
        _table(COMPARISON_COLUMNS, _comparison_rows(domain, d, m)), "",
        "### Same accuracy target (time until both errors stay within it)", "",
        _table(ACCURACY_COLUMNS, _accuracy_rows(d)), "",
    ]


def _extras_section(d: dict[str, Any]) -> list[str]:
    """The radial-vs-2D check, the extrapolation table, the PINN's u against the truth."""
    lines: list[str] = []
    ex = d["extras"]
    if "radial_vs_2d" in ex:
        rows = []
        for r in ex["radial_vs_2d"]:
            e = r[f"day{d['horizon']:g}"]
            rows.append([f"{r['spacing_mm']:g}", str(r["steps"]), _secs(r["seconds"]),
                         f"{e['max_abs_diff']:.4f}", f"{e['mse']:.2e}",
                         f"{100 * e['burden_rel_diff']:+.2f}"])
        lines += ["### Ground truth check: radial solver vs the 2D FD solver at day "
                  f"{d['horizon']:g}", "",
                  _table(["2D spacing [mm]", "steps", "time", "max abs diff", "MSE",
                          "burden diff %"], rows), ""]
    if "extrapolation" in ex:
        e = ex["extrapolation"]
        paper = (f"{PAPER_EXTRAPOLATION['mse']:.2e}, {PAPER_EXTRAPOLATION['minutes']:g} min "
                 "(V100)")
        rows = [[f"PINN ({e['pinn']['epochs']:,} epochs)", f"{e['pinn']['mse']:.2e}",
                 _secs(e["pinn"]["wall_seconds"]), paper]] if "pinn" in e else []
        rows.append(["FD solver at the FD-fitted parameters", f"{e['fd']['mse']:.2e}",
                     _secs(e["fd"]["wall_seconds"]), "—"])
        lines += ["### Extrapolation 300 -> 450 days (parameters held fixed)", "",
                  _table(["method", "MSE vs truth on (300, 450] d", "wall time", "paper"], rows),
                  "", f"({e['test_points']:,} test points within {e['radius_mm']:.1f} mm, "
                  "times uniform in (300, 450] d.)", ""]
    if "u_vs_truth" in ex:
        lines += ["PINN u against the truth on the slice (inside phi >= 0.5): " + ", ".join(
            f"day {k}: MSE {v['mse']:.2e}, max {v['max_abs']:.3f}"
            for k, v in ex["u_vs_truth"].items()) + ".", ""]
    return lines


def markdown(rep: dict[str, Any]) -> str:
    """``report.md``."""
    lines = _header(rep["meta"])
    for domain, d in rep["domains"].items():
        lines += _domain_section(domain, d, rep["meta"]) + _extras_section(d)
        for name, cap in rep["figures"].items():
            if f"_{domain}" in name:
                lines += [f"![{cap}](figures/{name})", "", f"*{cap}.*", ""]
    lines += ["## The paper's cost model with measured FD times", "",
              f"The paper (Sec. 4) prices FD-based calibration at {PAPER_FD['solves']:,} forward "
              "solves (ref. [3]) x the time of one solve.", "",
              _table(["case", "one solve here", "steps (dt)", f"{PAPER_FD['solves']:,} solves",
                      "paper: one solve", f"paper: {PAPER_FD['solves']:,} solves"],
                     [[c["case"], _secs(c["seconds"]), f"{c['steps']} ({c['dt']:.3g} d)",
                       _secs(3600 * c["calibration_hours"]),
                       f"{c['paper_seconds'][0]:g}-{c['paper_seconds'][1]:g} s "
                       f"({c['paper_label']})",
                       f"{PAPER_FD['solves'] * c['paper_seconds'][0] / 3600:.0f}-"
                       f"{PAPER_FD['solves'] * c['paper_seconds'][1] / 3600:.0f} h"]
                      for c in rep["cost_model"]]), "",
              "## Conclusion (generated from the numbers above)", ""]
    lines += [f"- {c}" for c in rep["conclusions"]]
    return "\n".join(lines) + "\n"


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o
