"""Density figures of forward runs and the paper's experiments (axial planes of box fields): snapshot
panels over the tissue map, one field panel (e.g. the phase field), model / reference / difference
panels.  PNG bytes from :func:`gbm.viz.base.figure_bytes`; callers write them atomically."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gbm.model.geometry import Geometry
from gbm.viz.base import figure_bytes, pyplot


def axial(geom: Geometry, field: np.ndarray, seed_local: np.ndarray | None) -> np.ndarray:
    """The axial plane of a box field through the seed (the field itself in 2D), shape (nx, ny)."""
    if field.ndim == 2:
        return field
    k = field.shape[2] // 2 if seed_local is None else int(round(seed_local[2] / geom.spacing[2]))
    return field[:, :, min(max(k, 0), field.shape[2] - 1)]


def snapshot_panels(geom: Geometry, times: Sequence[float], fields: Sequence[np.ndarray],
                    seed_local: np.ndarray | None, title: str) -> bytes:
    """Tumour density over the tissue map, one axial panel per snapshot (like the paper's Fig. 10).

    Parameters
    ----------
    geom : Geometry
    times : sequence of float
        Days of the snapshots.
    fields : sequence of ndarray, box shape
        u at each snapshot.
    seed_local : ndarray or None
        Seed (local mm); in 3D the panels show the axial plane through it.
    title : str
    """
    plt = pyplot()
    n = len(times)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    tissue = axial(geom, geom.wm + 0.5 * geom.gm, seed_local)
    phi = axial(geom, geom.phi, seed_local) if geom.phi is not None else None
    extent = (0, tissue.shape[0] * geom.spacing[0], 0, tissue.shape[1] * geom.spacing[1])
    im = None
    vmax = max(float(np.max(u)) for u in fields) or 1.0
    for ax, day, u in zip(axes.flat, times, fields):
        ax.imshow(tissue.T, origin="lower", cmap="gray", extent=extent, vmin=0, vmax=1)
        uu = np.ma.masked_less(axial(geom, u, seed_local), 0.01 * vmax)
        im = ax.imshow(uu.T, origin="lower", cmap="turbo", extent=extent, vmin=0, vmax=vmax,
                       alpha=0.8)
        if phi is not None:
            xs = np.arange(phi.shape[0]) * geom.spacing[0]
            ys = np.arange(phi.shape[1]) * geom.spacing[1]
            ax.contour(xs, ys, phi.T, levels=[0.5], colors="c", linewidths=0.5)
        ax.set_title(f"day {day:g} (max u {float(np.max(u)):.2f})", fontsize=9)
        ax.text(0.02, 0.02, "L", transform=ax.transAxes, color="w", fontsize=8)
        ax.text(0.95, 0.02, "R", transform=ax.transAxes, color="w", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.7, label="u (tumour cell density)")
    fig.suptitle(title, fontsize=10)
    return figure_bytes(fig)


def field_panel(geom: Geometry, field: np.ndarray, title: str, label: str) -> bytes:
    """One axial (mid-plane in 3D) image of a box field, e.g. the phase field."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    img = axial(geom, field, None)
    extent = (0, img.shape[0] * geom.spacing[0], 0, img.shape[1] * geom.spacing[1])
    im = ax.imshow(img.T, origin="lower", cmap="viridis", extent=extent)
    fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x (mm, box)")
    ax.set_ylabel("y (mm, box)")
    return figure_bytes(fig)


def u_panels(geom: Geometry, days: Sequence[float], fields: Sequence[np.ndarray],
             ref_fields: Sequence[np.ndarray] | None, seed_local: np.ndarray | None,
             title: str = "", labels: tuple[str, str] = ("PINN", "FD")) -> bytes:
    """Axial panels of a model's u (row 1), the reference (row 2) and their difference (row 3).

    Parameters
    ----------
    geom : Geometry
    days : sequence of float
        Day of each panel column.
    fields, ref_fields : sequence of ndarray, box shape
        The model's u and (optionally) the reference u at ``days``.
    seed_local : ndarray or None
        In 3D the panels show the axial plane through it.
    labels : (str, str)
        Names of the model and the reference in the panel titles.
    """
    plt = pyplot()
    rows = 1 if ref_fields is None else 3
    n = len(days)
    fig, axes = plt.subplots(rows, n, figsize=(3.2 * n, 3.0 * rows), squeeze=False)
    tissue = axial(geom, geom.wm + 0.5 * geom.gm, seed_local)
    for j, day in enumerate(days):
        u = axial(geom, fields[j], seed_local)
        ax = axes[0, j]
        ax.imshow(tissue.T, origin="lower", cmap="gray", vmin=0, vmax=1)
        im = ax.imshow(np.ma.masked_less(u, 1e-3).T, origin="lower", cmap="inferno", vmin=0, vmax=1,
                       alpha=0.85)
        ax.set_title(f"{labels[0]} day {day:g}")
        ax.axis("off")
        if ref_fields is not None:
            r = axial(geom, ref_fields[j], seed_local)
            ax = axes[1, j]
            ax.imshow(tissue.T, origin="lower", cmap="gray", vmin=0, vmax=1)
            ax.imshow(np.ma.masked_less(r, 1e-3).T, origin="lower", cmap="inferno", vmin=0, vmax=1,
                      alpha=0.85)
            ax.set_title(f"{labels[1]} day {day:g}")
            ax.axis("off")
            ax = axes[2, j]
            lim = max(float(np.abs(u - r).max()), 1e-3)
            im2 = ax.imshow((u - r).T, origin="lower", cmap="coolwarm", vmin=-lim, vmax=lim)
            ax.set_title(f"{labels[0]} - {labels[1]} (max {lim:.3f})")
            ax.axis("off")
            fig.colorbar(im2, ax=ax, fraction=0.046)
    fig.colorbar(im, ax=axes[0, -1], fraction=0.046)
    if title:
        fig.suptitle(title)
    return figure_bytes(fig)
