"""The cohort report: ``report.md`` and ``figures/*.png`` from the cohort table.

Figures (matplotlib Agg via :func:`gbm.viz.base.pyplot`, written atomically): ``lambda.png`` and
``rho_T.png`` (distributions of lambda = sqrt(Dw/rho), mm, and rho*T over the patients fitted
without failure), ``coverage.png`` (recurrence coverage of the model plan against the standard
plan, per patient, enhancing and all-label recurrence, with the diagonal: points above it are
patients whose model plan covers more of the recurrence), ``runtime.png`` (histogram of the wall
time per patient, seconds, by status).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gbm import io
from gbm.clinical.quality import MIN_MODEL_DICE
from gbm.viz.base import figure_bytes, pyplot

__all__ = ["write_report"]

_DONE = ("ok", "skipped-existing")


def _values(rows: Sequence[dict[str, Any]], col: str, statuses: Sequence[str] = _DONE
            ) -> np.ndarray:
    v = [r.get(col) for r in rows if r.get("status") in statuses]
    return np.array([float(x) for x in v if x is not None], dtype=float)


def _hist(values: np.ndarray, xlabel: str, title: str) -> bytes:

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    if values.size:
        ax.hist(values, bins=max(5, min(30, int(np.sqrt(values.size)) * 2)), color="tab:blue",
                edgecolor="white")
        ax.axvline(float(np.median(values)), color="k", lw=1, ls="--",
                   label=f"median {np.median(values):.3g}")
        ax.legend(frameon=False)
    else:
        ax.text(0.5, 0.5, "no fitted patient", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("patients")
    ax.set_title(title)
    return figure_bytes(fig)


def _coverage(rows: Sequence[dict[str, Any]]) -> bytes:

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    any_point = False
    for suffix, marker, label in (("", "o", "enhancing recurrence"),
                                  ("_all", "x", "all recurrence labels")):
        pts = [(r[f"coverage_standard{suffix}"], r[f"coverage_model{suffix}"]) for r in rows
               if r.get("status") in _DONE and r.get(f"coverage_standard{suffix}") is not None
               and r.get(f"coverage_model{suffix}") is not None]
        if pts:
            a = np.array(pts, dtype=float)
            ax.scatter(a[:, 0], a[:, 1], marker=marker, s=28, label=f"{label} ({len(a)})")
            any_point = True
    ax.plot([0, 1], [0, 1], color="0.4", lw=1, ls="--", label="model = standard")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("coverage, standard plan")
    ax.set_ylabel("coverage, model plan")
    ax.set_title("recurrence coverage per patient")
    if not any_point:
        ax.text(0.5, 0.6, "no recurrence segmentation in this cohort", ha="center",
                va="center", transform=ax.transAxes)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return figure_bytes(fig)


def _runtime(rows: Sequence[dict[str, Any]]) -> bytes:

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    groups = [(s, _values(rows, "wall_seconds", (s,))) for s in ("ok", "skipped-existing",
                                                                  "failed")]
    groups = [(s, v) for s, v in groups if v.size]
    if groups:
        allv = np.concatenate([v for _, v in groups])
        bins = np.linspace(0.0, float(allv.max()) * 1.05 + 1e-9, max(6, min(30, allv.size + 1)))
        ax.hist([v for _, v in groups], bins=bins, stacked=True,
                label=[f"{s} ({v.size})" for s, v in groups])
        ax.legend(frameon=False, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no run times", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("wall time per patient [s]")
    ax.set_ylabel("patients")
    ax.set_title("run time (skipped: time of their original fit)")
    return figure_bytes(fig)


def _below(rows: Sequence[dict[str, Any]]) -> str:
    """'k of n': fits whose model misses a scan (quality check of :mod:`gbm.clinical.quality`)."""
    v = _values(rows, "model_dice_min")
    return f"{int((v < MIN_MODEL_DICE).sum())} of {v.size}" if v.size else "-"


def _stat(v: np.ndarray, fmt: str = ".3g") -> str:
    if not v.size:
        return "-"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{med:{fmt}} ({q1:{fmt}}-{q3:{fmt}})"


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def write_report(out: Path, rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> dict[
        str, Any]:
    """Write ``out/report.md`` and ``out/figures/*.png``; returns the file names written."""
    figs = {
        "lambda.png": _hist(_values(rows, "lambda_mm"), "lambda = sqrt(Dw/rho) [mm]",
                            "lambda over the cohort"),
        "rho_T.png": _hist(_values(rows, "rho_T"), "rho*T (rho x age at the first scan)",
                           "rho*T over the cohort"),
        "coverage.png": _coverage(rows),
        "runtime.png": _runtime(rows),
    }
    for name, data in figs.items():
        io.write_bytes_atomic(out / "figures" / name, data, force=True)
    t = summary["totals"]
    rate = (f"{t['patients_per_hour']:.1f} patients/hour" if t.get("patients_per_hour")
            else "-")
    lines = [
        "# gbm cohort report", "",
        f"Source `{summary['source']}` ({summary['source_kind']}), method `{summary['method']}`, "
        f"engine `{summary['engine']}`"
        + (f" ({summary['ray_cluster']} cluster)" if summary.get("ray_cluster") else "")
        + f", {summary['workers']} worker(s) x {summary['threads_per_patient']} thread(s); "
        f"{summary['versions'].get('cpu', summary['versions'].get('processor', ''))}, "
        f"{summary['versions'].get('cores', '?')} cores.", "",
        ("| patients | ok | failed | skipped (existing) | fitted this run | wall time | "
         "throughput |"),
        "|---|---|---|---|---|---|---|",
        (f"| {summary['patients']} | {t['ok']} | {t['failed']} | {t['skipped-existing']} | "
         f"{t['fitted_this_run']} | {t['wall_seconds']:.1f} s | {rate} |"), "",
        "## Estimates (median, interquartile range; ok and skipped patients)", "",
        "| quantity | value |", "|---|---|",
        f"| lambda = sqrt(Dw/rho) [mm] | {_stat(_values(rows, 'lambda_mm'))} |",
        f"| rho*T | {_stat(_values(rows, 'rho_T'))} |",
        f"| Dw [mm^2/day] | {_stat(_values(rows, 'dw'))} |",
        f"| rho [1/day] | {_stat(_values(rows, 'rho'))} |",
        f"| Dice core, last scan | {_stat(_values(rows, 'dice_core_last'))} |",
        f"| Dice whole tumour, last scan | {_stat(_values(rows, 'dice_whole_last'))} |",
        f"| fits the scans do not support (model Dice < {MIN_MODEL_DICE:g} on a scan; "
        f"`gbm fit` quality check) | {_below(rows)} |",
        f"| wall time per fit [s] | {_stat(_values(rows, 'wall_seconds', ('ok',)), '.1f')} |",
        "",
        "## Recurrence coverage (standard plan: core + margin; model plan: top-k density)", "",
        "| recurrence | patients | standard (mean) | model (mean) | model >= standard |",
        "|---|---|---|---|---|",
    ]
    for suffix, name in (("", "enhancing"), ("_all", "all labels")):
        s = _values(rows, f"coverage_standard{suffix}")
        m = _values(rows, f"coverage_model{suffix}")
        pairs = [(r[f"coverage_standard{suffix}"], r[f"coverage_model{suffix}"]) for r in rows
                 if r.get("status") in _DONE and r.get(f"coverage_standard{suffix}") is not None
                 and r.get(f"coverage_model{suffix}") is not None]
        better = sum(b >= a for a, b in pairs)
        lines.append(f"| {name} | {len(pairs)} | {s.mean():.3f} | {m.mean():.3f} | "
                     f"{better}/{len(pairs)} |" if pairs else f"| {name} | 0 | - | - | - |")
    lines += ["", "## Figures", ""]
    lines += [f"![{n[:-4]}](figures/{n})" for n in figs]
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        lines += ["", "## Failed patients", "", "| patient | error |", "|---|---|"]
        lines += [f"| {_md_cell(r['id'])} | {_md_cell(r['error'])} |" for r in failed]
    if summary.get("ignored_folders"):
        lines += ["", "Ignored sub-folders (no patient layout): "
                  + ", ".join(f"`{n}`" for n in summary["ignored_folders"])]
    lines += ["", "Table: `cohort.csv`" + (", `cohort.parquet`" if "cohort.parquet" in
                                           summary["tables"] else " (pyarrow not installed: "
                                           "no Parquet)") + "; per-patient outputs in "
              "`patients/<id>/`. Units: mm, days, Dw mm^2/day, rho 1/day, ml, s.", ""]
    io.write_bytes_atomic(out / "report.md", "\n".join(lines).encode(), force=True)
    return {"markdown": "report.md", "figures": [f"figures/{n}" for n in figs]}
