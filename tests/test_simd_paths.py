"""The solver's cell update compiled per instruction set (rust/fisher_kpp/simd.rs) gives the same
bits on every path a portable wheel may take: each ISA this CPU has (``_core.available_isas()``),
through plain steps (2D, and 3D step by step) and through the fused temporal-blocking path (3D,
many steps per ``advance``), including the partial step of a snapshot. The reference is the scalar
(baseline-target) path. An ISA that is unknown or missing on this CPU is a ValueError naming it.
"""

from __future__ import annotations

import numpy as np
import pytest
from gbm import _core

ALL_ISAS = ("avx512", "avx2", "scalar")
STEPS = 37  # odd, not a multiple of the fusion depth: fused sweeps plus a plain remainder


def random_problem(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, ...]:
    """Random D (mm^2/day), phi with inactive cells (some against the box edge), and u0."""
    rng = np.random.default_rng(seed)
    diff = rng.uniform(0.01, 0.2, shape)
    phi = rng.uniform(0.05, 1.0, shape)
    phi[rng.random(shape) < 0.15] = 0.0
    phi[(0,) * len(shape)] = 0.0
    u0 = np.where(rng.random(shape) < 0.3, rng.random(shape), 0.0)
    return u0, diff, phi


def run(isa: str, shape: tuple[int, ...], step_by_step: bool,
        seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """State after STEPS steps and the snapshot 0.4 dt later."""
    u0, diff, phi = random_problem(shape, seed)
    s = _core.FisherKpp(u0, diff, phi, [1.0, 0.8, 1.2][:len(shape)], 0.3, isa=isa)
    assert s.isa == isa
    if step_by_step:
        for _ in range(STEPS):
            s.advance(1)  # one step per call: plain steps only
    else:
        s.advance(STEPS)  # 3D: fused sweeps (temporal blocking) for most of them
    assert s.steps == STEPS
    return s.state(), s.state(s.t + 0.4 * s.dt)


def test_available_isas() -> None:
    isas = _core.available_isas()
    assert isas[-1] == "scalar"
    assert list(isas) == [i for i in ALL_ISAS if i in isas]  # best first, known names only
    u0, diff, phi = random_problem((6, 5, 4), 0)
    assert _core.FisherKpp(u0, diff, phi, [1.0] * 3, 0.1).isa == isas[0]  # auto: the best
    assert _core.FisherKpp(u0, diff, phi, [1.0] * 3, 0.1, isa="auto").isa == isas[0]


@pytest.mark.parametrize("isa", _core.available_isas())
@pytest.mark.parametrize("shape", [(23, 17, 19), (31, 27)], ids=["3d", "2d"])
@pytest.mark.parametrize("step_by_step", [False, True], ids=["fused", "plain"])
def test_every_isa_is_bit_identical_to_scalar(isa: str, shape: tuple[int, ...],
                                              step_by_step: bool) -> None:
    ref_u, ref_snap = run("scalar", shape, step_by_step=True)
    u, snap = run(isa, shape, step_by_step)
    assert ref_u.max() > 0.0 and np.count_nonzero(ref_u == 0.0) > 0
    assert np.array_equal(u, ref_u)
    assert np.array_equal(snap, ref_snap)


def test_unavailable_isa_is_refused() -> None:
    u0, diff, phi = random_problem((6, 5, 4), 0)
    missing = [i for i in ALL_ISAS if i not in _core.available_isas()]
    for name in missing:
        with pytest.raises(ValueError, match=f"isa '{name}' is not supported by this CPU"):
            _core.FisherKpp(u0, diff, phi, [1.0] * 3, 0.1, isa=name)
    with pytest.raises(ValueError, match="isa must be one of .*got 'neon'"):
        _core.FisherKpp(u0, diff, phi, [1.0] * 3, 0.1, isa="neon")
