"""Patient figures (gbm.viz.patient): what the pixels show (contours on the segmentation in world
mm, in any axis-aligned orientation, the density wash, plans, the misfit trace's points, the
corner plot's truth lines), the figure size, bad input."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from gbm.errors import InputError
from gbm.viz import patient as pp
from gbm.viz.base import DPI

SHAPE = (24, 28, 12)


def _decode(png: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(io.BytesIO(png), format="png")
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img


def _size_ok(img: np.ndarray, figsize: tuple[float, float], tol: float = 0.15) -> None:
    """figure_bytes saves with a tight bounding box: within ``tol`` of figsize * dpi."""
    h, w = img.shape[:2]
    assert abs(w - figsize[0] * DPI) <= tol * figsize[0] * DPI, (w, figsize)
    assert abs(h - figsize[1] * DPI) <= tol * figsize[1] * DPI, (h, figsize)


@dataclass(frozen=True)
class _Axes:
    title: str
    bbox: Any  # display pixels, origin at the bottom left
    data: Any  # data (world mm) -> display pixels
    legend: Any  # the legend's display box inside the axes, or None


@dataclass(frozen=True)
class _Drawn:
    """A figure as gbm writes it (``png``) and as drawn on the canvas, with where its axes are."""

    png: bytes
    rgb: np.ndarray  # (H, W, 3) in [0, 1], row 0 at the top
    axes: list[_Axes]

    def axes_titled(self, start: str) -> _Axes:
        (hit,) = [a for a in self.axes if a.title.startswith(start)]
        return hit

    def pixels(self, ax: _Axes, colour: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Data coordinates (N, 2) of the pixels of ``colour`` inside ``ax`` (legend excluded)."""
        h = self.rgb.shape[0]
        rows, cols = np.nonzero(colour(self.rgb))
        xy = np.c_[cols + 0.5, h - rows - 0.5]
        x0, y0, x1, y1 = ax.bbox.extents
        keep = (xy[:, 0] > x0) & (xy[:, 0] < x1) & (xy[:, 1] > y0) & (xy[:, 1] < y1)
        if ax.legend is not None:
            lx0, ly0, lx1, ly1 = ax.legend.extents
            keep &= ~((xy[:, 0] > lx0) & (xy[:, 0] < lx1) & (xy[:, 1] > ly0) & (xy[:, 1] < ly1))
        return ax.data.inverted().transform(xy[keep])

    def colour_at(self, ax: _Axes, point: tuple[float, float]) -> np.ndarray:
        x, y = ax.data.transform(np.asarray([point], dtype=float))[0]
        return self.rgb[self.rgb.shape[0] - 1 - int(y), int(x)]

    def px_per_unit(self, ax: _Axes) -> float:
        a, b = ax.data.transform(np.array([[0.0, 0.0], [1.0, 0.0]]))
        return float(abs(b[0] - a[0]))


def _draw(monkeypatch: pytest.MonkeyPatch, make: Callable[[], bytes]) -> _Drawn:
    """Run a gbm.viz.patient function, keeping a canvas copy of its figure at gbm's DPI."""
    real = pp.figure_bytes
    got: dict[str, Any] = {}

    def capture(fig: Any) -> bytes:
        fig.set_dpi(DPI)
        fig.canvas.draw()
        got["rgb"] = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
        r = fig.canvas.get_renderer()
        got["axes"] = [_Axes(ax.get_title(), ax.get_window_extent().frozen(),
                             ax.transData.frozen(),
                             None if ax.get_legend() is None
                             else ax.get_legend().get_window_extent(r).frozen())
                       for ax in fig.axes]
        return real(fig)

    monkeypatch.setattr(pp, "figure_bytes", capture)
    png = make()
    return _Drawn(png, got["rgb"], got["axes"])


def _red(c: np.ndarray) -> np.ndarray:
    return (c[..., 0] > 0.8) & (c[..., 1] < 0.3) & (c[..., 2] < 0.3)


def _yellow(c: np.ndarray) -> np.ndarray:
    return (c[..., 0] > 0.8) & (c[..., 1] > 0.8) & (c[..., 2] < 0.3)


def _cyan(c: np.ndarray) -> np.ndarray:
    return (c[..., 0] < 0.3) & (c[..., 1] > 0.8) & (c[..., 2] > 0.8)


def _magenta(c: np.ndarray) -> np.ndarray:
    return (c[..., 0] > 0.8) & (c[..., 1] < 0.3) & (c[..., 2] > 0.8)


def _world_ball(affine: np.ndarray, centre_vox: tuple[int, int, int], radius: float) -> np.ndarray:
    """Voxels whose centre lies within ``radius`` mm (world) of the centre voxel's."""
    idx = np.indices(SHAPE).reshape(3, -1).astype(float)
    world = affine[:3, :3] @ idx
    c = affine[:3, :3] @ np.asarray(centre_vox, dtype=float)
    return (np.linalg.norm(world - c[:, None], axis=0) <= radius).reshape(SHAPE)


def _case(shape: tuple[int, int, int] = SHAPE) -> dict[str, np.ndarray]:
    idx = np.indices(shape).astype(float)
    c = (np.asarray(shape) - 1) / 2
    r = np.sqrt(sum(((idx[a] - c[a]) / (shape[a] / 2)) ** 2 for a in range(3)))
    brain = r <= 0.9
    u = np.exp(-(((idx[0] - 9) ** 2 + (idx[1] - 15) ** 2) / 20 + (idx[2] - 6) ** 2 / 4)) * brain
    return {"background": np.where(brain, 0.6 + 0.4 * (r < 0.5), 0.0), "u": u, "core": u >= 0.675,
            "whole": u >= 0.25, "brain": brain}


AFFINES = {
    "ras": np.diag([1.0, 1.0, 1.0, 1.0]),
    "anisotropic": np.array([[1.2, 0, 0, -14.0], [0, 0.9, 0, -12.0], [0, 0, 3.0, -18.0], [0, 0, 0, 1]]),
    "lps": np.array([[-1.0, 0, 0, 12.0], [0, -1.0, 0, 14.0], [0, 0, 1.0, -6.0], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_orthogonal_panels_png(name: str) -> None:
    d = _case()
    aff = AFFINES[name]
    plans = {"standard CTV (15 mm)": d["whole"] | d["core"], "model CTV": d["u"] >= 0.1}
    png = pp.orthogonal_panels(d["background"], aff, (9, 15, 6), u=d["u"], core=d["core"],
                               whole=d["whole"], plans=plans, title=f"case {name}", crop=d["brain"])
    img = _decode(png)
    row = pp._row(d["background"], aff, (9, 15, 6), crop=d["brain"])
    w, h, _ = pp._layout([row])
    _size_ok(img, (w, h))
    if name == "ras":  # only the background: still a figure (no colour bar, no legend)
        _decode(pp.orthogonal_panels(d["background"], aff, (0, 0, 0)))


@pytest.mark.parametrize("name", ["ras", "lps"])
def test_contours_and_plans_are_drawn_on_the_regions(name: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each contour's pixels lie on its region's boundary, in world mm, in every panel: core red
    (3 mm ball), whole tumour yellow (5 mm), plans cyan (8 mm) and magenta (10 mm); the same
    world picture for a RAS- and an LPS-stored image."""
    d = _case()
    aff = AFFINES[name]
    c = (9, 15, 6)
    centre = aff[:3, :3] @ np.asarray(c, float) + aff[:3, 3]
    radii = {"core": 3.0, "whole": 5.0, "model CTV": 8.0, "standard CTV (15 mm)": 10.0}
    balls = {k: _world_ball(aff, c, r) for k, r in radii.items()}
    plans = {"model CTV": balls["model CTV"],
             "standard CTV (15 mm)": balls["standard CTV (15 mm)"]}
    fig = _draw(monkeypatch, lambda: pp.orthogonal_panels(
        d["background"], aff, c, core=balls["core"], whole=balls["whole"], plans=plans,
        crop=d["brain"]))
    colours = {"core": _red, "whole": _yellow, "model CTV": _cyan,
               "standard CTV (15 mm)": _magenta}
    for panel, _, hw, vw in pp._PANELS:
        ax = fig.axes_titled(panel)
        ppm = fig.px_per_unit(ax)
        for region, colour in colours.items():
            xy = fig.pixels(ax, colour)
            dist = np.hypot(xy[:, 0] - centre[hw], xy[:, 1] - centre[vw])
            r = radii[region]
            # a visible outline: at least a third of a one-pixel circle (the 10 mm ball is cut
            # by the 12-voxel z extent in the coronal and sagittal panels; dashed plans)
            assert len(xy) > 2 * np.pi * r * ppm / 3, (panel, region, len(xy))
            # the 0.5 iso-line of a voxelised ball lies within a voxel of its radius
            assert np.all(np.abs(dist - r) <= 1.2), (panel, region, dist.min(), dist.max())
    # the written PNG shows the same outlines: cropped to the tight bounding box, which shifts
    # the anti-aliasing by a fraction of a pixel (about 10 % of the pure-colour pixels)
    png = _decode(fig.png)[..., :3]
    for colour in colours.values():
        n_png, n_canvas = int(colour(png).sum()), int(colour(fig.rgb).sum())
        assert abs(n_png - n_canvas) <= 0.2 * n_canvas


def test_density_wash_where_u_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """The u colour wash covers the tumour; brain where u < 0.01 stays grey."""
    d = _case()
    fig = _draw(monkeypatch, lambda: pp.orthogonal_panels(d["background"], AFFINES["ras"],
                                                          (9, 15, 6), u=d["u"], crop=d["brain"]))
    import matplotlib

    ax = fig.axes_titled("axial")
    # voxel (10, 16, 6), off the centre's cross-hair: viridis(u) at alpha 0.6 over white (the
    # background there is its 99.5th percentile)
    u = float(d["u"][10, 16, 6])
    expect = 0.6 * np.asarray(matplotlib.colormaps["viridis"](u)[:3]) + 0.4 * 1.0
    np.testing.assert_allclose(fig.colour_at(ax, (10.0, 16.0)), expect, atol=0.03)
    assert d["u"][18, 6, 6] < 0.01 and d["brain"][18, 6, 6]
    far = fig.colour_at(ax, (18.0, 6.0))
    assert np.ptp(far) < 0.02 and far[0] > 0.3  # grey (R = G = B), not black
    assert not fig.pixels(ax, _red).size and not fig.pixels(ax, _cyan).size  # no contours given


def test_anisotropic_panels_keep_mm_aspect() -> None:
    d = _case()
    row = pp._row(d["background"], AFFINES["anisotropic"], (9, 15, 6))
    # coronal view: x spans 24 * 1.2 mm, z spans 12 * 3 mm (plus the two-voxel pad on each side)
    _, xext, _ = pp._axis_view(row, 0)
    zs, zext, _ = pp._axis_view(row, 2)
    assert xext[1] - xext[0] == pytest.approx(24 * 1.2)
    assert zext[1] - zext[0] == pytest.approx(12 * 3.0)
    assert np.diff(zs) == pytest.approx(np.full(11, 3.0))
    ratio = pp._panel_ratios(row)[1]
    assert ratio == pytest.approx((24 * 1.2 + 4 * 1.2) / (12 * 3.0 + 4 * 3.0))
    assert row.world == pytest.approx([9 * 1.2 - 14.0, 15 * 0.9 - 12.0, 6 * 3.0 - 18.0])


def test_lps_storage_shows_the_same_world_picture() -> None:
    """The same image stored RAS and LPS (x, y reversed) gives identical planes and coordinates."""
    d = _case()
    ras = AFFINES["ras"].copy()
    lps = ras.copy()
    lps[0, 0] = lps[1, 1] = -1.0
    lps[:3, 3] = [SHAPE[0] - 1, SHAPE[1] - 1, 0.0]  # voxel (n-1, m-1, 0) of the LPS copy = origin

    def flip(a: np.ndarray) -> np.ndarray:
        return a[::-1, ::-1, :]

    c = (9, 15, 6)
    c_lps = (SHAPE[0] - 1 - 9, SHAPE[1] - 1 - 15, 6)
    a = pp._row(d["background"], ras, c, u=d["u"], core=d["core"])
    b = pp._row(flip(d["background"]), lps, c_lps, u=flip(d["u"]), core=flip(d["core"]))
    np.testing.assert_allclose(a.world, b.world)
    for name, fixed, hw, vw in pp._PANELS:
        for field in ("background", "u", "core"):
            np.testing.assert_array_equal(pp._slice(a, getattr(a, field), fixed, hw, vw),
                                          pp._slice(b, getattr(b, field), fixed, hw, vw), err_msg=name)
        for w in (hw, vw):
            np.testing.assert_allclose(pp._axis_view(a, w)[0], pp._axis_view(b, w)[0])
    # the LPS copy stores the tumour at i = 14, j = 12; its axial plane, in increasing world x and y,
    # has it where the RAS copy has it (world x = 9, y = 15 mm)
    plane = pp._slice(b, b.u, 2, 0, 1)
    assert np.unravel_index(np.argmax(plane), plane.shape) == (9, 15)
    _decode(pp.orthogonal_panels(flip(d["background"]), lps, c_lps, u=flip(d["u"]), title="LPS"))


def test_orthogonal_panels_bad_input() -> None:
    d = _case()
    aff = AFFINES["ras"]
    with pytest.raises(InputError, match="center_vox"):
        pp.orthogonal_panels(d["background"], aff, (24, 0, 0))
    with pytest.raises(InputError, match="center_vox"):
        pp.orthogonal_panels(d["background"], aff, (0, -1, 0))
    with pytest.raises(InputError, match="center_vox"):
        pp.orthogonal_panels(d["background"], aff, (1, 2))
    with pytest.raises(InputError, match="u has shape"):
        pp.orthogonal_panels(d["background"], aff, (1, 2, 3), u=d["u"][:, :, :5])
    with pytest.raises(InputError, match="plan 'model CTV' has shape"):
        pp.orthogonal_panels(d["background"], aff, (1, 2, 3), plans={"model CTV": d["core"][1:]})
    with pytest.raises(InputError, match="background must be a 3D"):
        pp.orthogonal_panels(d["background"][:, :, 0], aff, (1, 2, 3))
    with pytest.raises(InputError, match="affine"):
        pp.orthogonal_panels(d["background"], aff[:3], (1, 2, 3))
    with pytest.raises(InputError, match="crop mask is empty"):
        pp.orthogonal_panels(d["background"], aff, (1, 2, 3), crop=np.zeros(SHAPE, dtype=bool))


def test_stacked_panels() -> None:
    d = _case()
    aff = AFFINES["anisotropic"]
    common = {"background": d["background"], "affine": aff, "center_vox": (9, 15, 6),
              "crop": d["brain"]}
    rows = [{**common, "u": d["u"], "core": d["core"], "whole": d["whole"], "label": "scan 1, day 0"},
            {**common, "u": np.clip(1.4 * d["u"], 0, 1), "plans": {"model CTV": d["u"] >= 0.1},
             "label": "forecast day 150"}]
    img = _decode(pp.stacked_panels(rows, title="stack"))
    built = [pp._row(**{k: v for k, v in r.items() if k not in ("u", "core", "whole", "plans")})
             for r in rows]
    w, h, _ = pp._layout(built)
    _size_ok(img, (w, h))
    assert h > 1.8 * pp._layout(built[:1])[1] - 2.0
    _decode(pp.stacked_panels([{**rows[0], "title": "T1"}]))  # a row's title joins its label
    with pytest.raises(InputError, match="row 1: missing keys"):
        pp.stacked_panels([rows[0], {"background": d["background"], "affine": aff}])
    with pytest.raises(InputError, match="unknown keys"):
        pp.stacked_panels([dict(rows[0], colour="red")])
    with pytest.raises(InputError, match="center_vox"):
        pp.stacked_panels([dict(rows[0], center_vox=(0, 0, 12))])


def test_misfit_trace() -> None:
    log = []
    for s in range(40):
        stage = "global (2 mm)" if s < 25 else ("local (1 mm)" if s < 35 else "posterior")
        log.append({"solve": s, "stage": stage, "misfit": 1.0 / (1 + s) + 0.01 * (s % 3),
                    "dice_core": s / 40, "dice_whole": min(1.0, s / 30)})
    log[3]["misfit"] = float("nan")  # a failed solve
    _size_ok(_decode(pp.misfit_trace(log, title="fit")), (11.0, 3.8))
    bare = [{k: r[k] for k in ("solve", "stage", "misfit")} for r in log]
    _size_ok(_decode(pp.misfit_trace(bare)), (6.0, 3.8))
    with pytest.raises(InputError, match="empty"):
        pp.misfit_trace([])
    with pytest.raises(InputError, match="'misfit'"):
        pp.misfit_trace([{"solve": 0, "stage": "global"}])
    with pytest.raises(InputError, match="row 0"):
        pp.misfit_trace([{"solve": 0, "stage": "global", "misfit": "high"}])


def test_posterior_corner() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)) * [1.0, 0.1, 3.0] + [10.0, 1.0, 20.0]
    names = ["lambda (mm)", "rho*T", "x0 (mm)"]
    size = 1.9 * 3 + 0.7
    _size_ok(_decode(pp.posterior_corner(x, names, truth=[10.2, 0.95, 21.0], title="post")),
             (size, size))
    _decode(pp.posterior_corner(x[:, :1], names[:1]))
    _decode(pp.posterior_corner(np.ones((5, 2)), names[:2]))  # constant samples still plot
    with pytest.raises(InputError, match="names"):
        pp.posterior_corner(x, names[:2])
    with pytest.raises(InputError, match="truth"):
        pp.posterior_corner(x, names, truth=[1.0])
    with pytest.raises(InputError, match="samples"):
        pp.posterior_corner(x[:, 0], names[:1])
    with pytest.raises(InputError, match="non-finite"):
        pp.posterior_corner(np.full((3, 3), np.nan), names)


def _reddish(c: np.ndarray) -> np.ndarray:
    """Red at any opacity over white: R high, G = B lower."""
    return (c[..., 0] > 0.9) & (c[..., 1] < 0.65) & (np.abs(c[..., 1] - c[..., 2]) < 0.08)


def _steelblue(c: np.ndarray) -> np.ndarray:
    return (c[..., 2] > 0.6) & (c[..., 2] - c[..., 0] > 0.2)


def test_misfit_trace_draws_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The best solve is starred in black at its misfit; the core Dice points (red) sit at
    (solve, dice_core) and every one of them is drawn."""
    log = [{"solve": s, "stage": "global" if s < 25 else "local",
            "misfit": 1.0 / (1 + s) + 0.01 * (s % 3), "dice_core": s / 40,
            "dice_whole": min(1.0, s / 30)} for s in range(40)]
    fig = _draw(monkeypatch, lambda: pp.misfit_trace(log, title="fit"))
    ax = fig.axes_titled("misfit per solve")
    best = min(log, key=lambda r: r["misfit"])
    assert best["solve"] == 39
    assert np.all(fig.colour_at(ax, (39.0, best["misfit"])) < 0.15)  # the black star
    ax = fig.axes_titled("Dice")
    pts = ax.data.transform(np.array([[r["solve"], r["dice_core"]] for r in log], dtype=float))
    red = ax.data.transform(fig.pixels(ax, _reddish))
    gap = np.linalg.norm(red[:, None, :] - pts[None, :, :], axis=2)
    assert len(red) > 40 and np.all(gap.min(axis=1) <= 4.0)  # each red pixel is on a point
    # every point but the first (s = 0: the whole-tumour point is drawn over it) shows red
    assert np.all(gap.min(axis=0)[1:] <= 2.0)


def test_posterior_corner_draws_truth_and_histograms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Truth lines (red) at the true values; each histogram's mass where the samples are."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 2)) * [1.0, 0.1] + [10.0, 1.0]
    truth = [11.0, 0.9]
    names = ["lambda (mm)", "rho*T"]
    fig = _draw(monkeypatch, lambda: pp.posterior_corner(x, names, truth=truth))
    for i, name in enumerate(names):
        ax = fig.axes_titled(name)
        ppu = fig.px_per_unit(ax)
        red = fig.pixels(ax, _reddish)
        assert len(red) > 50 and np.all(np.abs(red[:, 0] - truth[i]) * ppu <= 1.5)
        blue = fig.pixels(ax, _steelblue)
        width = np.ptp(x[:, i]) / 40  # one bin at most (sqrt(2000) -> 40 bins)
        assert abs(np.median(blue[:, 0]) - np.median(x[:, i])) <= width
        assert abs(np.mean(blue[:, 0]) - np.mean(x[:, i])) <= width
