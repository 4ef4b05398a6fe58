"""The on-disk phase-field cache (gbm.model.phase_cache): bit-identical to a fresh solve, keyed by
what the solve reads, robust to a damaged entry, switched off by GBM_CACHE_DIR=off, --no-cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_maps
from gbm.model.geometry import Geometry, from_maps
from gbm.model.phase_cache import PhaseFieldCache, cache_key, default_cache


def _geom() -> Geometry:
    """A small ball-shaped brain (WM core, GM shell), 1 mm."""
    wm, gm = synthetic_maps((20, 22, 16), r_brain=7.0, r_wm=4.0)
    return from_maps(wm, gm, np.eye(4), margin=2)


def test_cached_phase_field_is_bit_identical_and_reused(tmp_path: Path) -> None:
    cache = PhaseFieldCache(tmp_path)
    fresh = _geom().with_phase_field(epsilon=1.0)
    first = _geom().with_phase_field(epsilon=1.0, cache=cache)
    second = _geom().with_phase_field(epsilon=1.0, cache=cache)
    assert first.phase_field_info["cached"] is False
    assert second.phase_field_info["cached"] is True
    assert np.array_equal(fresh.phi, first.phi) and np.array_equal(fresh.phi, second.phi)
    assert second.phi.dtype == np.float64 and second.phi.flags.c_contiguous
    # the solver's own figures come back with the entry
    assert second.phase_field_info["steps"] == fresh.phase_field_info["steps"]
    assert len(list((tmp_path / "phase_field").glob("*.npz"))) == 1


def test_key_depends_on_everything_the_solve_reads() -> None:
    g = _geom()
    m = g.mask
    k = cache_key(m, g.spacing, 1.0, {})
    assert k == cache_key(m.copy(), tuple(g.spacing), 1.0, {})
    flipped = m.copy()
    flipped[0, 0] = ~flipped[0, 0]
    others = {cache_key(flipped, g.spacing, 1.0, {}),
              cache_key(m, (1.0, 1.0 + 1e-12), 1.0, {}),
              cache_key(m, g.spacing, 1.5, {}),
              cache_key(m, g.spacing, 1.0, {"tol": 1e-7}),
              cache_key(m.reshape(m.shape[1], m.shape[0]) if m.shape[0] != m.shape[1]
                        else m[:, :-1], g.spacing, 1.0, {})}
    assert k not in others and len(others) == 5


def test_damaged_entry_is_solved_again_and_replaced(tmp_path: Path) -> None:
    cache = PhaseFieldCache(tmp_path)
    ref = _geom().with_phase_field(epsilon=1.0, cache=cache)
    (entry,) = (tmp_path / "phase_field").glob("*.npz")
    entry.write_bytes(b"not a zip file")
    again = _geom().with_phase_field(epsilon=1.0, cache=cache)
    assert again.phase_field_info["cached"] is False
    assert np.array_equal(again.phi, ref.phi)
    assert _geom().with_phase_field(epsilon=1.0, cache=cache).phase_field_info["cached"] is True


def test_unwritable_cache_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")                    # the cache root is a file: nothing can be stored
    g = _geom().with_phase_field(epsilon=1.0, cache=PhaseFieldCache(blocker))
    assert g.phase_field_info["cached"] is False
    assert np.array_equal(g.phi, _geom().with_phase_field(epsilon=1.0).phi)


def test_default_cache_location_and_off_switch(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("GBM_CACHE_DIR", str(tmp_path / "c"))
    c = default_cache()
    assert c is not None and c.root == tmp_path / "c"
    for off in ("off", "OFF", "none", "0", ""):
        monkeypatch.setenv("GBM_CACHE_DIR", off)
        assert default_cache() is None
    monkeypatch.delenv("GBM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    c = default_cache()
    assert c is not None and c.root == tmp_path / "xdg" / "gbm"
    # cache=True uses the default one
    g = _geom().with_phase_field(epsilon=1.0, cache=True)
    assert g.phase_field_info["cached"] is False
    assert len(list((tmp_path / "xdg" / "gbm" / "phase_field").glob("*.npz"))) == 1


def test_no_cache_flag_reaches_the_fit_config() -> None:
    from gbm.cli import build_parser
    from gbm.cli.common import config_from
    from gbm.cli.fit import FIELDS
    from gbm.jobs.fit import FitConfig

    p = build_parser()
    on = config_from(FitConfig, p.parse_args(["fit", "--patient", "x"]), FIELDS)
    off = config_from(FitConfig, p.parse_args(["fit", "--patient", "x", "--no-cache"]), FIELDS)
    assert on.phase_cache is True and off.phase_cache is False
    assert off.fit_settings().phase_cache is False
