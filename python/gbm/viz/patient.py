"""Patient figures: orthogonal slices with contours and targets, the fit's misfit trace, a corner plot.

Conventions
-----------
* Arrays are 3D on the input image grid; ``affine`` maps voxel indices to world millimetres (RAS+, as
  NIfTI world space always is, whatever the voxel order: an LPS-stored image has a negative diagonal).
* Each voxel axis is shown along the world axis it points closest to (nibabel's ``aff2axcodes`` rule);
  the panel coordinates are world mm, exact for axis-aligned affines (oblique ones are shown on the
  nearest world axes, with the true voxel size from the affine's column norms, so aspect is right).
* Neurological convention: patient right on the viewer's right (x increases to the right), anterior up in
  the axial panel, superior up in coronal and sagittal, anterior to the right in the sagittal panel.
  Orientation letters are drawn on every panel and the convention is named in the figure.
* Panels: axial (fixed world z), coronal (fixed y), sagittal (fixed x), through ``center_vox``; u in
  [0, 1] as a colour wash (transparent below 0.01) with iso-lines at ``u_levels``; tumour core contour
  red, whole tumour yellow; plan outlines in distinct colours and line styles; the legend and the colour
  bar sit outside the panels so they never cover the tumour.
* All figures go through :func:`gbm.viz.base.pyplot` (Agg) and come back as PNG bytes
  (:func:`gbm.viz.base.figure_bytes`, 110 dpi, tight bounding box).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gbm.errors import InputError, require
from gbm.viz.base import figure_bytes, pyplot

#: Letters of the negative / positive direction of each world axis (RAS+).
_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))
#: (name, fixed world axis, horizontal world axis, vertical world axis) of the three panels.
_PANELS = (("axial", 2, 0, 1), ("coronal", 1, 0, 2), ("sagittal", 0, 1, 2))
#: Plan outline styles, in order of first appearance of the plan names.
_PLAN_STYLES = (("cyan", "-"), ("magenta", "--"), ("white", "-."), ("orange", ":"),
                ("lime", (0, (5, 1, 1, 1))), ("deepskyblue", (0, (3, 2))))
_CORE_COLOUR = "red"
_WHOLE_COLOUR = "yellow"
_U_CMAP = "viridis"
_U_MIN = 0.01
#: Layout of the orthogonal figures, inches.
_PANEL_H = 3.0
_PANEL_GAP = 0.6
_LEFT = 0.75
_RIGHT = 1.05  # colour bar and its label
_TOP = 0.6  # figure title (two lines)
_ROW_LABEL = 0.3  # a row label line (stacked rows, or a labelled single row)
_PANEL_TITLE = 0.28  # panel titles above the panels
_XLAB = 0.5  # x tick labels and axis label below the panels
_LEGEND = 0.4  # the legend at the bottom of the figure


@dataclass(frozen=True)
class _Orientation:
    """How voxel axes map to world axes: ``vox[w]`` is the voxel axis along world axis ``w``."""

    vox: tuple[int, int, int]
    sign: tuple[int, int, int]  # per voxel axis: +1 if it runs towards R/A/S
    step: tuple[float, float, float]  # per voxel axis: voxel size, mm


def _orientation(affine: Any) -> _Orientation:
    a = np.asarray(affine, dtype=np.float64)
    require(a.shape == (4, 4), f"affine must be a 4x4 matrix, got shape {a.shape}")
    require(bool(np.isfinite(a).all()), "affine has non-finite entries")
    m = a[:3, :3]
    require(abs(float(np.linalg.det(m))) > 1e-12, "affine is singular (zero voxel size?)")
    world_of_vox = [int(np.argmax(np.abs(m[:, v]))) for v in range(3)]
    require(sorted(world_of_vox) == [0, 1, 2],
            "affine is too oblique: two voxel axes point along the same world axis")
    vox = tuple(world_of_vox.index(w) for w in range(3))
    sign = tuple(1 if m[world_of_vox[v], v] > 0 else -1 for v in range(3))
    step = tuple(float(np.linalg.norm(m[:, v])) for v in range(3))
    return _Orientation(vox, sign, step)  # type: ignore[arg-type]


@dataclass
class _Row:
    """A validated orthogonal row: arrays, orientation, centre, limits."""

    background: np.ndarray
    affine: np.ndarray
    orient: _Orientation
    center: tuple[int, int, int]
    world: np.ndarray
    u: np.ndarray | None
    core: np.ndarray | None
    whole: np.ndarray | None
    plans: dict[str, np.ndarray]
    u_levels: tuple[float, ...]
    crop_box: tuple[tuple[int, int], ...]
    vmin: float
    vmax: float
    label: str


def _field(name: str, a: Any, shape: tuple[int, ...], boolean: bool) -> np.ndarray:
    arr = np.asarray(a)
    require(arr.shape == shape, f"{name} has shape {arr.shape}, expected the background's {shape}")
    if boolean:
        return arr.astype(bool, copy=False)
    return np.asarray(arr, dtype=np.float64)


def _row(background: Any, affine: Any, center_vox: Sequence[int], u: Any = None, core: Any = None,
         whole: Any = None, plans: Mapping[str, Any] | None = None,
         u_levels: Sequence[float] = (0.25, 0.675), crop: Any = None, label: str = "") -> _Row:
    bg = np.asarray(background, dtype=np.float64)
    require(bg.ndim == 3, f"background must be a 3D array, got shape {bg.shape}")
    require(min(bg.shape) >= 1, f"background is empty (shape {bg.shape})")
    orient = _orientation(affine)
    try:
        c = tuple(int(v) for v in center_vox)
    except (TypeError, ValueError):
        raise InputError(f"center_vox must be three voxel indices (i, j, k), got {center_vox!r}") from None
    require(len(c) == 3 and all(float(v) == int(v) for v in center_vox),
            f"center_vox must be three integer voxel indices (i, j, k), got {center_vox!r}")
    require(all(0 <= c[a] < bg.shape[a] for a in range(3)),
            f"center_vox {c} is outside the grid of shape {bg.shape}")
    shape = bg.shape
    uu = None if u is None else _field("u", u, shape, False)
    co = None if core is None else _field("core", core, shape, True)
    wh = None if whole is None else _field("whole", whole, shape, True)
    pl = {str(k): _field(f"plan {k!r}", v, shape, True) for k, v in (plans or {}).items()}
    levels = tuple(float(v) for v in u_levels)
    if crop is not None:
        cm = _field("crop", crop, shape, True)
        nz = np.nonzero(cm)
        require(nz[0].size > 0, "crop mask is empty")
        box = tuple((int(nz[a].min()), int(nz[a].max())) for a in range(3))
        inside = bg[cm]
    else:
        box = tuple((0, n - 1) for n in shape)
        inside = bg.ravel()
    inside = inside[np.isfinite(inside)]
    if inside.size:
        p1, vmax = (float(v) for v in np.percentile(inside, [1.0, 99.5]))
        vmin = min(p1, 0.0)  # a tissue map's lowest brain value (e.g. pure GM) must not show as black
    else:
        vmin, vmax = 0.0, 1.0
    if not vmax > vmin:
        vmax = vmin + 1.0
    aff = np.asarray(affine, dtype=np.float64)
    world = aff[:3, :3] @ np.asarray(c, dtype=np.float64) + aff[:3, 3]
    return _Row(bg, aff, orient, c, world, uu, co, wh, pl, levels, box, vmin, vmax, label)  # type: ignore[arg-type]


def _coords(row: _Row, w: int) -> tuple[np.ndarray, int, float]:
    """World coordinates (mm) along world axis ``w`` of the voxel axis that points along it, in
    voxel order, plus that voxel axis and its voxel size."""
    v = row.orient.vox[w]
    h = row.orient.step[v]
    n = row.background.shape[v]
    return row.world[w] + row.orient.sign[v] * h * (np.arange(n) - row.center[v]), v, h


def _slice(row: _Row, arr: np.ndarray, fixed: int, hw: int, vw: int) -> np.ndarray:
    """The 2D plane of ``arr`` through the centre at fixed world axis ``fixed``, indexed
    ``[horizontal, vertical]``, both in increasing world coordinate."""
    o = row.orient
    plane = np.transpose(arr, (o.vox[hw], o.vox[vw], o.vox[fixed]))[:, :, row.center[o.vox[fixed]]]
    if o.sign[o.vox[hw]] < 0:
        plane = plane[::-1, :]
    if o.sign[o.vox[vw]] < 0:
        plane = plane[:, ::-1]
    return plane


def _axis_view(row: _Row, w: int) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Increasing voxel-centre coordinates along world axis ``w``, the image extent and the view
    limits (the crop box, padded by two voxels)."""
    c, v, h = _coords(row, w)
    lo, hi = row.crop_box[v]
    pad = 2 * h
    cl = sorted((float(c[lo]), float(c[hi])))
    view = (cl[0] - h / 2 - pad, cl[1] + h / 2 + pad)
    cs = np.sort(c)
    return cs, (float(cs[0]) - h / 2, float(cs[-1]) + h / 2), view


def _panel_ratios(row: _Row) -> list[float]:
    """Width / height of each panel's view."""
    out = []
    for _, _, hw, vw in _PANELS:
        vh = _axis_view(row, hw)[2]
        vv = _axis_view(row, vw)[2]
        out.append(min(max((vh[1] - vh[0]) / max(vv[1] - vv[0], 1e-9), 0.3), 3.0))
    return out


def _plan_style(names: Sequence[str]) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    for n in names:
        if n not in out:
            out[n] = _PLAN_STYLES[len(out) % len(_PLAN_STYLES)]
    return out


def _contour(ax: Any, xs: np.ndarray, ys: np.ndarray, plane: np.ndarray, **kw: Any) -> bool:
    if min(plane.shape) < 2:
        return False
    f = plane.astype(np.float64)
    if not (f.max() > 0.5 > f.min()):
        return False
    ax.contour(xs, ys, f.T, levels=[0.5], **kw)
    return True


def _draw_panel(ax: Any, row: _Row, panel: tuple[str, int, int, int],
                styles: Mapping[str, tuple[str, Any]]) -> Any:
    name, fixed, hw, vw = panel
    xs, xext, xview = _axis_view(row, hw)
    ys, yext, yview = _axis_view(row, vw)
    extent = (xext[0], xext[1], yext[0], yext[1])
    ax.set_facecolor("black")
    ax.imshow(_slice(row, row.background, fixed, hw, vw).T, origin="lower", extent=extent,
              cmap="gray", vmin=row.vmin, vmax=row.vmax, interpolation="nearest")
    im = None
    if row.u is not None:
        up = _slice(row, row.u, fixed, hw, vw)
        im = ax.imshow(np.ma.masked_less(up, _U_MIN).T, origin="lower", extent=extent, cmap=_U_CMAP,
                       vmin=0.0, vmax=1.0, alpha=0.6, interpolation="nearest")
        levels = sorted(lv for lv in row.u_levels if 0 < lv < 1)
        if levels and min(up.shape) >= 2 and float(up.max()) > levels[0]:
            ax.contour(xs, ys, up.T, levels=levels, colors="white", linewidths=0.7, alpha=0.8)
    if row.whole is not None:
        _contour(ax, xs, ys, _slice(row, row.whole, fixed, hw, vw), colors=_WHOLE_COLOUR,
                 linewidths=1.3)
    if row.core is not None:
        _contour(ax, xs, ys, _slice(row, row.core, fixed, hw, vw), colors=_CORE_COLOUR,
                 linewidths=1.3)
    for pname, mask in row.plans.items():
        colour, style = styles[pname]
        _contour(ax, xs, ys, _slice(row, mask, fixed, hw, vw), colors=colour, linestyles=[style],
                 linewidths=1.6)
    ax.axvline(row.world[hw], color="white", lw=0.5, alpha=0.35)
    ax.axhline(row.world[vw], color="white", lw=0.5, alpha=0.35)
    ax.set_xlim(*xview)
    ax.set_ylim(*yview)
    ax.set_aspect("equal", adjustable="box", anchor="C")
    ax.tick_params(labelsize=7, length=2)
    axis_names = ("x", "y", "z")
    ax.set_xlabel(f"{axis_names[hw]} (mm)", fontsize=8, labelpad=1)
    ax.set_ylabel(f"{axis_names[vw]} (mm)", fontsize=8, labelpad=1)
    ax.set_title(f"{name}  {axis_names[fixed]} = {row.world[fixed]:.1f} mm", fontsize=9, pad=3)
    box = {"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.6, "edgecolor": "none"}
    kw = {"transform": ax.transAxes, "color": "white", "fontsize": 10, "fontweight": "bold",
          "bbox": box}
    ax.text(0.02, 0.5, _LETTERS[hw][0], ha="left", va="center", **kw)
    ax.text(0.98, 0.5, _LETTERS[hw][1], ha="right", va="center", **kw)
    ax.text(0.5, 0.98, _LETTERS[vw][1], ha="center", va="top", **kw)
    ax.text(0.5, 0.02, _LETTERS[vw][0], ha="center", va="bottom", **kw)
    return im


def _labelled(rows: Sequence[_Row]) -> bool:
    return len(rows) > 1 or bool(rows[0].label)


def _row_height(rows: Sequence[_Row]) -> float:
    return (_ROW_LABEL if _labelled(rows) else 0.0) + _PANEL_TITLE + _PANEL_H + _XLAB


def _layout(rows: Sequence[_Row]) -> tuple[float, float, list[float]]:
    """Figure width, height (inches) and the panel widths (inches) of a stack of orthogonal rows."""
    ratios = [max(r) for r in zip(*(_panel_ratios(row) for row in rows))]
    widths = [_PANEL_H * q for q in ratios]
    width = _LEFT + sum(widths) + 2 * _PANEL_GAP + _RIGHT
    height = _TOP + len(rows) * _row_height(rows) + _LEGEND
    return width, height, widths


def _figure(rows: Sequence[_Row], title: str) -> bytes:
    plt = pyplot()
    from matplotlib.lines import Line2D

    width, height, widths = _layout(rows)
    fig = plt.figure(figsize=(width, height))
    names: list[str] = [n for row in rows for n in row.plans]
    styles = _plan_style(names)
    im = None
    for r, row in enumerate(rows):
        bottom = _LEGEND + (len(rows) - 1 - r) * _row_height(rows) + _XLAB
        left = _LEFT
        for p, panel in enumerate(_PANELS):
            ax = fig.add_axes((left / width, bottom / height, widths[p] / width, _PANEL_H / height))
            got = _draw_panel(ax, row, panel, styles)
            im = got if got is not None else im
            left += widths[p] + _PANEL_GAP
        x, y, z = row.world
        i, j, k = row.center
        line = f"centre voxel ({i}, {j}, {k}) = world ({x:.1f}, {y:.1f}, {z:.1f}) mm"
        if _labelled(rows):
            line = f"{row.label}   {line}" if row.label else line
            fig.text(_LEFT / width, (bottom + _PANEL_H + _PANEL_TITLE + _ROW_LABEL - 0.03) / height,
                     line, fontsize=9, fontweight="bold", ha="left", va="top")
    head = title.strip()
    if not _labelled(rows):
        x, y, z = rows[0].world
        i, j, k = rows[0].center
        coord = f"centre voxel ({i}, {j}, {k}) = world ({x:.1f}, {y:.1f}, {z:.1f}) mm"
        head = f"{head}   {coord}" if head else coord
    head = f"{head}\nneurological view (patient right on the right)" if head else \
        "neurological view (patient right on the right)"
    fig.text(0.5, 1 - 0.06 / height, head, fontsize=10, ha="center", va="top")
    if im is not None:
        lo = _LEGEND + _XLAB + 0.2
        hi = height - _TOP - (_ROW_LABEL if _labelled(rows) else 0.0) - _PANEL_TITLE - 0.2
        cax = fig.add_axes(((width - _RIGHT + 0.25) / width, lo / height, 0.14 / width,
                            (hi - lo) / height))
        cb = fig.colorbar(im, cax=cax)
        cb.set_label("u (tumour cell density)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
        levels = sorted({lv for row in rows for lv in row.u_levels if 0 < lv < 1})
        for lv in levels:
            cb.ax.axhline(lv, color="white", lw=1.0)
    handles: list[Any] = []
    if any(row.core is not None for row in rows):
        handles.append(Line2D([], [], color=_CORE_COLOUR, lw=1.5, label="tumour core"))
    if any(row.whole is not None for row in rows):
        handles.append(Line2D([], [], color=_WHOLE_COLOUR, lw=1.5, label="whole tumour"))
    for n, (colour, style) in styles.items():
        handles.append(Line2D([], [], color=colour, ls=style, lw=1.8, label=n))
    if any(row.u is not None for row in rows):
        levels = sorted({lv for row in rows for lv in row.u_levels if 0 < lv < 1})
        if levels:
            handles.append(Line2D([], [], color="white", lw=0.9,
                                  label="u = " + ", ".join(f"{v:g}" for v in levels)))
    if handles:
        leg = fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8,
                         frameon=True, facecolor="0.25", edgecolor="0.25", labelcolor="white",
                         bbox_to_anchor=(0.5, 0.0))
        leg.get_frame().set_alpha(1.0)
    return figure_bytes(fig)


def orthogonal_panels(background: np.ndarray, affine: np.ndarray, center_vox: Sequence[int],
                      u: np.ndarray | None = None, core: np.ndarray | None = None,
                      whole: np.ndarray | None = None, plans: dict[str, np.ndarray] | None = None,
                      title: str = "", u_levels: Sequence[float] = (0.25, 0.675),
                      crop: np.ndarray | None = None) -> bytes:
    """Axial, coronal and sagittal panels through one voxel, with the density, contours and plans.

    Parameters
    ----------
    background : ndarray, float, shape (nx, ny, nz)
        Grey-scale image on the full input grid (e.g. a T1, or ``wm + 0.5 * gm``); shown from
        min(0, 1st percentile) to the 99.5th percentile (inside ``crop`` when given).
    affine : ndarray, shape (4, 4)
        Voxel -> world mm of that grid (any axis-aligned orientation; oblique shown approximately).
    center_vox : (int, int, int)
        Voxel (i, j, k) the three planes pass through.
    u : ndarray, float, same shape, or None
        Tumour cell density in [0, 1]: colour wash (transparent below 0.01) and iso-lines at
        ``u_levels``.
    core, whole : ndarray, bool, same shape, or None
        Segmentation: tumour core (red contour) and whole tumour (yellow contour).
    plans : dict of str -> ndarray, bool, same shape, or None
        Target outlines by name, e.g. ``{"standard CTV (15 mm)": ..., "model CTV": ...}``.
    title : str
        First title line (the centre's world coordinates are appended).
    u_levels : sequence of float
        Density iso-lines (those in (0, 1) are drawn).
    crop : ndarray, bool, same shape, or None
        The view is limited to this mask's bounding box (e.g. the brain mask).

    Returns
    -------
    bytes
        PNG image.

    Raises
    ------
    InputError
        A non-3D background, a bad affine, a centre outside the grid, an array of another shape or an
        empty crop.
    """
    row = _row(background, affine, center_vox, u=u, core=core, whole=whole, plans=plans,
               u_levels=u_levels, crop=crop)
    return _figure([row], title)


def stacked_panels(rows: Sequence[Mapping[str, Any]], title: str = "") -> bytes:
    """Several orthogonal rows in one figure (one per scan or forecast day).

    Parameters
    ----------
    rows : sequence of dict
        Each holds :func:`orthogonal_panels`' keyword arguments (``background``, ``affine``,
        ``center_vox``, and optionally ``u``, ``core``, ``whole``, ``plans``, ``u_levels``, ``crop``,
        ``title``) plus ``"label"`` (e.g. ``"scan 1, day 0"``); label and title are shown on the
        row's first line with its centre coordinates.
    title : str

    Returns
    -------
    bytes
        PNG image; one shared legend and colour bar.
    """
    require(len(rows) > 0, "stacked_panels needs at least one row")
    allowed = {"background", "affine", "center_vox", "u", "core", "whole", "plans", "u_levels",
               "crop", "label", "title"}
    built = []
    for n, spec in enumerate(rows):
        unknown = set(spec) - allowed
        require(not unknown, f"row {n}: unknown keys {sorted(unknown)}")
        missing = {"background", "affine", "center_vox"} - set(spec)
        require(not missing, f"row {n}: missing keys {sorted(missing)}")
        kw = dict(spec)
        parts = [str(kw.pop(key, "") or "").strip() for key in ("label", "title")]
        kw["label"] = " - ".join(p for p in parts if p) or f"row {n + 1}"
        built.append(_row(**kw))
    return _figure(built, title)


def misfit_trace(log: Sequence[Mapping[str, Any]], title: str = "") -> bytes:
    """The fit's misfit per solve (left) and the Dice of both regions (right, when logged).

    Parameters
    ----------
    log : sequence of dict
        One row per solve: ``"solve"`` (int), ``"stage"`` (str, e.g. ``"global (2 mm)"``),
        ``"misfit"`` (float), optionally ``"dice_core"``, ``"dice_whole"`` (floats).  Non-finite
        misfits (failed solves) are counted in the title and not drawn.
    title : str

    Returns
    -------
    bytes
        PNG image: misfit on a log scale (linear when some misfit is <= 0), one colour per stage, and
        the best-so-far misfit within each stage as a step line.
    """
    require(len(log) > 0, "the solve log is empty")
    solves, stages, misfits, dc, dw = [], [], [], [], []
    for n, r in enumerate(log):
        for key in ("solve", "stage", "misfit"):
            require(key in r, f"solve log row {n} has no {key!r}")
        try:
            solves.append(int(r["solve"]))
            stages.append(str(r["stage"]))
            misfits.append(float(r["misfit"]))
            dc.append(float(r["dice_core"]) if r.get("dice_core") is not None else math.nan)
            dw.append(float(r["dice_whole"]) if r.get("dice_whole") is not None else math.nan)
        except (TypeError, ValueError):
            raise InputError(f"solve log row {n}: solve, misfit and Dice must be numbers") from None
    s = np.asarray(solves)
    f = np.asarray(misfits)
    dice_c, dice_w = np.asarray(dc), np.asarray(dw)
    has_dice = bool(np.isfinite(dice_c).any() or np.isfinite(dice_w).any())
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if has_dice else 1, figsize=(11.0 if has_dice else 6.0, 3.8),
                             squeeze=False, layout="constrained")
    ax = axes[0, 0]
    order = list(dict.fromkeys(stages))
    colours = plt.get_cmap("tab10")
    ok = np.isfinite(f)
    for n, st in enumerate(order):
        sel = np.asarray([x == st for x in stages]) & ok
        if not sel.any():
            continue
        idx = np.argsort(s[sel], kind="stable")
        ss, ff = s[sel][idx], f[sel][idx]
        col = colours(n % 10)
        ax.scatter(ss, ff, s=9, color=col, alpha=0.6, label=f"{st} ({sel.sum()})", lw=0)
        ax.step(ss, np.minimum.accumulate(ff), where="post", color=col, lw=1.4)
    if ok.any():
        b = int(np.nanargmin(np.where(ok, f, np.nan)))
        ax.scatter([s[b]], [f[b]], marker="*", s=90, color="black", zorder=5,
                   label=f"best {f[b]:.4g} (solve {s[b]})")
        if (f[ok] > 0).all():
            ax.set_yscale("log")
    ax.set_xlabel("solve")
    ax.set_ylabel("misfit")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper right")
    failed = int((~ok).sum())
    ax.set_title("misfit per solve (line: best so far in the stage)"
                 + (f"; {failed} failed" if failed else ""), fontsize=9)
    if has_dice:
        ax = axes[0, 1]
        for d, name, col in ((dice_c, "tumour core", _CORE_COLOUR), (dice_w, "whole tumour", "goldenrod")):
            sel = np.isfinite(d)
            if sel.any():
                ax.scatter(s[sel], d[sel], s=9, color=col, alpha=0.6, lw=0,
                           label=f"{name} (max {np.max(d[sel]):.3f})")
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("solve")
        ax.set_ylabel("Dice")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title("Dice of the thresholded model vs the segmentation", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return figure_bytes(fig)


def posterior_corner(samples: np.ndarray, names: Sequence[str], truth: Sequence[float] | None = None,
                     title: str = "") -> bytes:
    """A corner plot of posterior samples: histograms on the diagonal, pair scatter below.

    Parameters
    ----------
    samples : ndarray, float, shape (n, d)
        Posterior (or ensemble) samples, one row per sample; at most 4000 are drawn in the scatter
        panels (evenly spaced rows), all enter the histograms.
    names : sequence of str, length d
        Parameter names with units, e.g. ``"lambda (mm)"``.
    truth : sequence of float, length d, or None
        True values (synthetic patients), drawn as lines.
    title : str

    Returns
    -------
    bytes
        PNG image; each diagonal panel is titled with the median and the 5-95 % interval.
    """
    x = np.asarray(samples, dtype=np.float64)
    require(x.ndim == 2 and x.shape[0] >= 1 and x.shape[1] >= 1,
            f"samples must be an (n, d) array with n, d >= 1, got shape {x.shape}")
    require(bool(np.isfinite(x).all()), "samples have non-finite values")
    n, d = x.shape
    require(len(names) == d, f"names has {len(names)} entries, samples have {d} columns")
    t = None
    if truth is not None:
        t = np.asarray(truth, dtype=np.float64).ravel()
        require(t.size == d, f"truth has {t.size} entries, samples have {d} columns")
    lims = []
    for a in range(d):
        lo, hi = float(x[:, a].min()), float(x[:, a].max())
        if t is not None and np.isfinite(t[a]):
            lo, hi = min(lo, float(t[a])), max(hi, float(t[a]))
        span = hi - lo
        pad = 0.05 * span if span > 0 else max(0.05 * abs(lo), 1e-6)
        lims.append((lo - pad, hi + pad))
    sub = x[np.unique(np.linspace(0, n - 1, min(n, 4000)).round().astype(int))]
    bins = int(min(40, max(10, round(math.sqrt(n)))))
    plt = pyplot()
    size = 1.9 * d + 0.7
    fig, axes = plt.subplots(d, d, figsize=(size, size), squeeze=False, layout="constrained")
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(x[:, i], bins=bins, range=lims[i], color="steelblue", alpha=0.8)
                q5, q50, q95 = np.percentile(x[:, i], [5, 50, 95])
                ax.set_title(f"{names[i]}\n{q50:.3g} [{q5:.3g}, {q95:.3g}]", fontsize=7)
                ax.set_yticks([])
                if t is not None:
                    ax.axvline(t[i], color="red", lw=1.2)
            else:
                ax.scatter(sub[:, j], sub[:, i], s=3, alpha=0.3, color="steelblue", lw=0)
                ax.set_ylim(*lims[i])
                if t is not None:
                    ax.axvline(t[j], color="red", lw=0.8)
                    ax.axhline(t[i], color="red", lw=0.8)
                    ax.plot([t[j]], [t[i]], "s", color="red", ms=3)
            ax.set_xlim(*lims[j])
            ax.tick_params(labelsize=6)
            if i == d - 1:
                ax.set_xlabel(names[j], fontsize=7)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i], fontsize=7)
            elif i != j:
                ax.set_yticklabels([])
    head = f"{title}\n" if title else ""
    fig.suptitle(f"{head}{n} samples; median [5 %, 95 %]" + ("; red: truth" if t is not None else ""),
                 fontsize=9)
    return figure_bytes(fig)
