"""Patient figures (gbm.patient_plot): valid PNGs, any axis-aligned orientation, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from gbm import patient_plot as pp
from gbm.errors import InputError

DPI = 110  # gbm.plot.figure_bytes
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
