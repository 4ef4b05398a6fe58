"""Outputs of PINN runs: CSV log, figures (matplotlib Agg, PNG bytes), tolerance table, u fields.

Figures follow the paper: parameters against epochs with the truth and the epochs where Eq. 11
would have stopped for each tolerance (Figs. 5, 6, 13, 14), relative errors against epochs
(Figs. 7, 15), the loss history (Fig. 12) and axial panels of u at chosen days (Figs. 10, 11).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gbm import io
from gbm.model.geometry import grid_points
from gbm.pinn.network import PinnNet
from gbm.pinn.stopping import first_stop
from gbm.pinn.train import PHASES, trainable_checks
from gbm.viz.base import figure_bytes as _png
from gbm.viz.base import pyplot as _plt

__all__ = [
    "log_csv_bytes",
    "parameter_figure",
    "error_figure",
    "loss_figure",
    "u_on_grid",
    "table_markdown",
]

_COLORS = ["tab:red", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]


def log_csv_bytes(log: Sequence[dict], truth: tuple[float, float] | None = None) -> bytes:
    """The check log as CSV (:func:`gbm.io.csv_bytes`, 6 significant digits): epoch, seconds,
    loss, loss_res, loss_data, dw, rho, lr, phase (and dw_err_pct, rho_err_pct when the truth is
    known)."""
    cols = ["epoch", "seconds", "loss", "loss_res", "loss_data", "dw", "rho", "lr", "phase"]
    if truth is not None:
        cols += ["dw_err_pct", "rho_err_pct"]
    names = {v: k for k, v in PHASES.items()}
    rows = []
    for r in log:
        row = dict(r)
        row["epoch"] = int(r["epoch"])
        row["phase"] = names.get(r.get("phase", 0.0), "adam")
        if truth is not None:
            row["dw_err_pct"] = 100.0 * (r["dw"] / truth[0] - 1.0)
            row["rho_err_pct"] = 100.0 * (r["rho"] / truth[1] - 1.0)
        rows.append(row)
    return io.csv_bytes(rows, cols, digits=6)


def _crossings(log, tolerances, window):
    dw = [r["dw"] for r in log]
    rho = [r["rho"] for r in log]
    valid = trainable_checks(log)
    out = []
    for tol in tolerances:
        i = first_stop(dw, rho, tol, window, valid)
        if i is not None:
            out.append((tol, log[i]["epoch"]))
    return out


def parameter_figure(log, truth, tolerances, window: int = 10, title: str = "") -> bytes:
    """Dw and rho against epochs, truth dashed, tolerance crossings as vertical lines."""
    plt = _plt()
    ep = np.array([r["epoch"] for r in log])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    cross = _crossings(log, tolerances, window)
    panels = ((axes[0], "dw", "Dw [mm$^2$/day]", 0), (axes[1], "rho", "rho [1/day]", 1))
    for ax, key, lab, k in panels:
        ax.plot(ep, [r[key] for r in log], color="k", lw=1.5, label="PINN")
        if truth is not None:
            ax.axhline(truth[k], color="tab:blue", ls="--", lw=1, label="truth")
        for j, (tol, e) in enumerate(cross):
            ax.axvline(e, color=_COLORS[j % len(_COLORS)], lw=1,
                       label=f"tol {tol:g}: epoch {int(e)}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    return _png(fig)


def error_figure(log, truth, tolerances, window: int = 10, title: str = "") -> bytes:
    """|relative error| of Dw and rho against epochs (log scale), like the paper's Fig. 7."""
    plt = _plt()
    ep = np.array([r["epoch"] for r in log])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.semilogy(ep, [abs(r["dw"] / truth[0] - 1) for r in log], label="Dw")
    ax.semilogy(ep, [abs(r["rho"] / truth[1] - 1) for r in log], label="rho")
    ax.axhline(0.15, color="gray", ls=":", lw=1, label="15 %")
    for j, (tol, e) in enumerate(_crossings(log, tolerances, window)):
        ax.axvline(e, color=_COLORS[j % len(_COLORS)], lw=1, label=f"tol {tol:g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("relative error")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _png(fig)


def loss_figure(log, title: str = "") -> bytes:
    """Total, residual and data losses against epochs."""
    plt = _plt()
    ep = np.array([r["epoch"] for r in log])[1:]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, lab in (("loss", "total"), ("loss_res", "residual (scaled)"), ("loss_data", "data")):
        v = np.array([r[key] for r in log])[1:]
        if np.any(np.isfinite(v) & (v > 0)):
            ax.semilogy(ep, v, label=lab)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _png(fig)


@torch.no_grad()
def u_on_grid(net: PinnNet, domain, day: float, radius: float, phi_min: float = 0.5,
              batch: int = 65536) -> np.ndarray:
    """The PINN's u at ``day`` on the box grid (float64, box shape).

    u is clipped to [0, 1] and set to 0 outside the brain (phi < phi_min) and farther than
    ``radius`` mm from the seed, where the network was never trained.
    """
    pts = grid_points(domain.phi.shape, domain.spacing)
    keep = (domain.phi.reshape(-1) >= phi_min) & (
        np.linalg.norm(pts - domain.center, axis=1) <= radius)
    out = np.zeros(len(pts))
    idx = np.nonzero(keep)[0]
    p = next(net.parameters())
    for s in range(0, len(idx), batch):
        sel = idx[s : s + batch]
        x = torch.as_tensor(pts[sel], dtype=p.dtype, device=p.device)
        t = torch.full((len(sel),), float(day), dtype=p.dtype, device=p.device)
        out[sel] = net.u(x, t).double().cpu().numpy()
    return np.clip(out, 0.0, 1.0).reshape(domain.phi.shape)


def table_markdown(rows: Sequence[dict], truth_known: bool) -> str:
    """The Table-4-like tolerance table as Markdown."""
    head = "| tolerance | epoch | minutes | Dw | rho |"
    sep = "|---|---|---|---|---|"
    if truth_known:
        head += " Dw % error | rho % error |"
        sep += "---|---|"
    lines = [head, sep]
    for r in rows:
        if r["epoch"] is None:
            cells = [f"{r['tol']:g}", "not reached", "", "", ""]
            if truth_known:
                cells += ["", ""]
        else:
            cells = [f"{r['tol']:g}", str(r["epoch"]), f"{r['minutes']:.2f}", f"{r['dw']:.4f}",
                     f"{r['rho']:.5f}"]
            if truth_known:
                cells += [f"{r['dw_err_pct']:+.2f}", f"{r['rho_err_pct']:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
