"""The fit's time stepping (gbm.problem.segmentation.levels.Stepping): the Strang-RKL2 step rule,
the stage count equal to the solver's own, a fixed stepping for the local stage, the written
model equal to the fitted one, and Euler kept as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gbm import _core
from gbm.clinical.forecasts import output_stepping
from gbm.model.geometry import disk
from gbm.problem.segmentation.levels import (
    RHO_DT,
    STEP_SPREAD_MM,
    Stepping,
    rkl2_stages,
    solve_states,
    strang_dt,
)
from gbm.problem.segmentation.unknowns import Physical


@pytest.fixture(scope="module")
def box():
    g = disk(radius_mm=16, half_width_mm=20)
    k = np.ascontiguousarray(g.tissue_factor(10.0))
    o = (np.asarray(g.shape) - 1) / 2.0
    return g, k, o


def _p(o: np.ndarray, dw: float, rho: float, t0: float = 100.0) -> Physical:
    return Physical(o, math.sqrt(dw / rho), rho * t0, dw, rho, t0, 0.675, 0.25)


def test_strang_step_rule() -> None:
    # rho dt = 0.5 while a step spreads the start by at most 2.5 mm, then (2.5 / lambda)^2
    assert strang_dt(2.28, 0.025) == pytest.approx(RHO_DT / 0.025)
    lam_edge = STEP_SPREAD_MM / math.sqrt(RHO_DT)
    assert strang_dt(lam_edge, 0.05) == pytest.approx(RHO_DT / 0.05)
    assert strang_dt(5.0, 0.02) == pytest.approx(0.25 / 0.02)
    assert strang_dt(10.0, 0.02) == pytest.approx((0.25 ** 2) / 0.02)
    for lam in (1.0, 3.0, 5.0, 12.0):       # the spread sqrt(Dw dt) never exceeds 2.5 mm
        rho = 0.03
        assert math.sqrt(lam ** 2 * rho * strang_dt(lam, rho)) <= STEP_SPREAD_MM + 1e-12


@pytest.mark.parametrize("dw, dt", [(0.13, 20.0), (0.5, 3.0), (1.2, 7.5), (0.05, 0.4)])
def test_stage_count_is_the_solvers_own(box, dw: float, dt: float) -> None:
    g, k, o = box
    u0 = g.initial_condition(o)
    s = _core.FisherKpp(u0, dw * k, g.phi, list(g.spacing), 0.025, scheme="strang-rkl2", dt=dt,
                        safety=0.9)
    bound = _core.stable_dt(dw * k, g.phi, list(g.spacing), 0.0)
    assert bound == pytest.approx(s.dt_diffusion, rel=1e-12)
    assert rkl2_stages(dt, bound) == s.stages


def test_default_stepping_is_strang_at_the_rule(box) -> None:
    g, k, o = box
    p = _p(o, 0.13, 0.025)
    opts = Stepping().solver_options(p)
    assert opts["scheme"] == "strang-rkl2" and opts["dt"] == pytest.approx(20.0)
    assert opts["stages"] is None
    euler = Stepping("euler", safety=0.5).solver_options(p)
    assert euler == {"scheme": "euler", "dt": None, "safety": 0.5}


def test_euler_stepping_is_todays_solve(box) -> None:
    """Stepping("euler", safety=s) is the FisherKpp call the fit made before Strang-RKL2."""
    g, k, o = box
    p = _p(o, 0.13, 0.025)
    (u,), n = solve_states(g, k, g.phi, p, o, [150.0], Stepping("euler", safety=0.5))
    s = _core.FisherKpp(g.initial_condition(o), p.dw * k, g.phi, list(g.spacing), p.rho,
                        safety=0.5)
    s.advance(s.steps_until(150.0))
    assert n == s.steps and np.array_equal(u, s.state(150.0))


def test_strang_is_more_accurate_than_euler_at_fewer_sweeps(box) -> None:
    """Against Strang at a 16x smaller step (reference), the default Strang stepping is far
    closer than the old fit's Euler at 0.5 of the bound, with fewer stencil sweeps."""
    g, k, o = box
    p = _p(o, 0.13, 0.025)
    t = [160.0]
    (ref,), _ = solve_states(g, k, g.phi, p, o, t, Stepping(dt=1.25))
    (us,), ns = solve_states(g, k, g.phi, p, o, t)
    (ue,), ne = solve_states(g, k, g.phi, p, o, t, Stepping("euler", safety=0.5))
    stages = rkl2_stages(20.0, _core.stable_dt(p.dw * k, g.phi, list(g.spacing), 0.0))
    assert ns * stages < ne                                     # sweeps
    assert 0.2 < float(ref.max()) and float((ref >= 0.25).mean()) < 0.5   # a front in the box
    err_s, err_e = np.abs(us - ref).max(), np.abs(ue - ref).max()
    assert err_s < 0.002 and err_e > 4 * err_s
    mass = [float(u.sum()) for u in (ref, us, ue)]            # Euler's front lags: less mass
    assert abs(mass[1] / mass[0] - 1) < 3e-3 and mass[2] < mass[0] * (1 - 2e-2)


def test_written_model_reuses_the_fits_stepping(box) -> None:
    """One scan at an assumed age: the fit's fixed stepping, stretched by assumed / nominal age,
    gives the fitted u at the scan (rho dt and Dw dt unchanged)."""
    g, k, o = box
    nominal = _p(o, 0.13 * 4, 0.025 * 4, t0=100.0)          # the fit's nominal age 100 days
    assumed = _p(o, 0.13, 0.025, t0=400.0)
    fit = Stepping(dt=4.0, stages=rkl2_stages(4.0, _core.stable_dt(
        nominal.dw * k, g.phi, list(g.spacing), 0.0)) + 1)
    (u_fit,), n1 = solve_states(g, k, g.phi, nominal, o, [100.0], fit)
    out = output_stepping(fit, Stepping(), 4.0, k, g.phi, g.spacing, assumed)
    assert out == Stepping(dt=16.0, stages=fit.stages)
    (u_out,), n2 = solve_states(g, k, g.phi, assumed, o, [400.0], out)
    assert n1 == n2
    np.testing.assert_allclose(u_out, u_fit, rtol=0, atol=1e-12)
    # on a grid where the fit's stages are not stable any more, more stages, same step
    few = Stepping(dt=16.0, stages=2)
    more = output_stepping(few, Stepping(), 1.0, k, g.phi, g.spacing, assumed)
    assert more.dt == 16.0 and more.stages == rkl2_stages(16.0, _core.stable_dt(
        assumed.dw * k, g.phi, list(g.spacing), 0.0)) > 2
    assert output_stepping(None, Stepping(), 4.0, k, g.phi, g.spacing, assumed) == Stepping()


def test_stepping_round_trips_through_a_checkpoint() -> None:
    st = Stepping("strang-rkl2", 3.5, 7)
    assert Stepping.from_dict(st.to_dict()) == st
    assert Stepping.from_dict(None) is None
