"""The forward PINN (``gbm pinn-forward``) reproduces the FD solution, in 2D and in 3D.

Fixed Dw = 0.13 mm^2/day, rho = 0.025 /day; the PINN trains on the PDE residual alone (Adam on
resampled collocation points, then L-BFGS on a fixed set) and is compared with the reference on
the voxel grid inside the brain (phi >= 0.5) at the report days:

* 2D: the paper's disk (phi = 0.5 + 0.5 tanh(50 - r), pure white matter), T = 100 days; the
  reference is the radial FD solver at dr = 0.1 mm
  (:func:`gbm.problem.density.build.build_problem`), accurate to ~1e-3 in u, so the tolerances
  below measure the PINN's own error.
* 3D: the conftest ball brain (white-matter core of radius 8 mm in a gray-matter ball of 13 mm,
  1 mm voxels, diffuse boundary), seed at its centre, T = 60 days; the reference is the Rust FD
  solver on the 1 mm grid (dt ~ 0.1 of the stability bound). The FD solution itself differs
  from the continuous one by up to ~0.01-0.03 in u at a front on a 1 mm grid (the radial check of
  ``gbm bench``), so the 3D tolerances leave room for that.

Networks and budgets are CI-sized (one CPU thread, no torch.compile, ~30 s per case): 3 x 32
tanh with 16 Fourier features, 300 Adam epochs on 1,000 resampled points, then 600 L-BFGS
iterations on 3,000 fixed points. Measured with exactly these settings (seeded, deterministic on
CPU; 2026-12-03):

    2D disk, day 50:  MSE 5.1e-6, max |error| 0.015, relative L2 0.29
    2D disk, day 100: MSE 6.8e-5, max |error| 0.053, relative L2 0.44
    3D ball, day 60:  MSE 9.2e-5, max |error| 0.023, relative L2 0.65
    untrained network (hard initial condition only): relative L2 12 (2D), 32 (3D)

The tolerances are ~1.5x these figures: they catch a broken residual, scaling, coefficient
interpolation or initial condition (errors of order 1, as the untrained control shows), not
run-to-run noise. The relative L2 error is large at this budget because the tumour is small
against the region (most of ||u_ref|| sits in the front, where the error is); longer training
reduces it (the paper's forward PINN trains 100,000 Adam epochs + L-BFGS).
"""

from __future__ import annotations

import pytest
from conftest import CENTRE_WORLD
from gbm.pinn.config import ForwardPinnConfig
from gbm.pinn.forward import pinn_forward

SMALL = {"width": 32, "depth": 3, "fourier": 16, "sigma_x": 0.75, "threads": 1, "compile": False,
         "time_budget": None, "progress_seconds": 1e9, "check_every": 100, "seed": 0}


def _quiet(_msg: str) -> None:
    pass


def test_forward_pinn_2d_disk_matches_radial_fd(tmp_path) -> None:
    """2D disk, T = 100 d, at T/2 and T: MSE <= 1.5e-4, max |error| <= 0.08, relative L2 <= 0.65
    (measured figures in the module docstring)."""
    cfg = ForwardPinnConfig(problem="disk", horizon=100.0, n_colloc=1000, adam_epochs=300,
                            lbfgs_iters=600, lbfgs_points=3000, report_days=(50.0, 100.0),
                            **SMALL)
    res = pinn_forward(cfg, tmp_path / "fwd", printer=_quiet)
    for day in ("50", "100"):
        m = res["u_vs_fd"][day]
        assert m["mse"] < 1.5e-4, (day, m)
        assert m["max_abs"] < 0.08, (day, m)
        assert m["rel_l2"] < 0.65, (day, m)


def test_forward_pinn_3d_ball_matches_fd(brain_files, tmp_path) -> None:
    """3D ball brain, T = 60 d, at T: MSE <= 2e-4, max |error| <= 0.04, relative L2 <= 0.9
    (measured figures in the module docstring; the FD reference's own error on the 1 mm grid is
    part of the difference)."""
    cfg = ForwardPinnConfig(problem="atlas", wm=str(brain_files["wm"]),
                            gm=str(brain_files["gm"]), three_d=True, seed_mm=CENTRE_WORLD,
                            horizon=60.0, n_colloc=1000, adam_epochs=300, lbfgs_iters=600,
                            lbfgs_points=3000, report_days=(60.0,), **SMALL)
    res = pinn_forward(cfg, tmp_path / "fwd3d", printer=_quiet)
    m = res["u_vs_fd"]["60"]
    assert m["mse"] < 2e-4, m
    assert m["max_abs"] < 0.04, m
    assert m["rel_l2"] < 0.9, m


@pytest.mark.parametrize("dim", [2, 3])
def test_untrained_network_is_far_from_fd(dim, brain_files, tmp_path) -> None:
    """Control: with no training the same comparison fails by a wide margin, so the bounds above
    are informative (the hard initial condition alone does not pass them)."""
    if dim == 2:
        cfg = ForwardPinnConfig(problem="disk", horizon=100.0, adam_epochs=1, lbfgs_iters=0,
                                n_colloc=100, report_days=(100.0,), **SMALL)
        day = "100"
    else:
        cfg = ForwardPinnConfig(problem="atlas", wm=str(brain_files["wm"]),
                                gm=str(brain_files["gm"]), three_d=True, seed_mm=CENTRE_WORLD,
                                horizon=60.0, adam_epochs=1, lbfgs_iters=0, n_colloc=100,
                                report_days=(60.0,), **SMALL)
        day = "60"
    res = pinn_forward(cfg, tmp_path / "untrained", printer=_quiet)
    assert res["u_vs_fd"][day]["rel_l2"] > 5.0
