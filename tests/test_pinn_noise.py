"""The noise estimate and the PINN's "auto" data weighting (gbm.problem.density.noise,
gbm.pinn.density_loss).

* estimate_noise: on a smooth front + N(0, s^2) noise at 20,000 scattered space-time points the
  estimate is within [1.0, 1.15] s at s = 0.05 (over 200 seeds: mean 1.079 s, sd 0.012 s, so the
  interval is > 6 sd from the mean on either side: false-alarm chance < 1e-8 under normality);
  on the clean field it is below 1e-3; bad inputs raise InputError.
* "auto" on noisy observations: k = ceil((sigma_hat / floor)^2), the data term equals the
  k-neighbour-averaged misfit computed here in numpy, the data-only fit stops by the
  discrepancy principle, and an interrupted run resumes bit-identically.
* "auto" on clean observations is "fixed", bit for bit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from gbm.errors import InputError
from gbm.pinn.checkpoint import load_checkpoint
from gbm.pinn.config import InferConfig
from gbm.pinn.inverse import infer
from gbm.problem.density.noise import estimate_noise, neighbours

N_POINTS = 20_000


def _front(pts: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A radial front moving from 10 to 30 mm, width ~3 mm: u = 1 inside, 0 outside."""
    r = np.linalg.norm(pts, axis=1)
    return 0.5 - 0.5 * np.tanh((r - 10.0 - 20.0 * t) / 3.0)


def _scattered(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-40.0, 40.0, (N_POINTS, 2)), rng.uniform(0.0, 1.0, N_POINTS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_estimate_is_close_to_the_true_sigma(seed) -> None:
    pts, t = _scattered(seed)
    s = 0.05
    u = _front(pts, t) + np.random.default_rng(100 + seed).normal(0.0, s, N_POINTS)
    est = estimate_noise(pts, t, u, (0.0, 0.0), 40.0, 1.0)
    assert 1.0 * s <= est <= 1.15 * s, est


def test_noise_estimate_of_clean_observations_is_small() -> None:
    pts, t = _scattered(0)
    assert estimate_noise(pts, t, _front(pts, t), (0.0, 0.0), 40.0, 1.0) < 1e-3
    # piecewise constant: every nearest neighbour of a flat region has the same value
    u = (np.linalg.norm(pts, axis=1) < 20.0).astype(float)
    assert estimate_noise(pts, t, u, (0.0, 0.0), 40.0, 1.0) == 0.0


def test_noise_estimate_rejects_bad_input() -> None:
    pts, t = _scattered(0)
    with pytest.raises(InputError, match="same N observations"):
        estimate_noise(pts, t[:-1], _front(pts, t), (0.0, 0.0), 40.0, 1.0)
    with pytest.raises(InputError, match="at least 2 observations"):
        estimate_noise(pts[:1], t[:1], np.zeros(1), (0.0, 0.0), 40.0, 1.0)
    with pytest.raises(InputError, match="must be > 0"):
        estimate_noise(pts, t, _front(pts, t), (0.0, 0.0), 0.0, 1.0)


def test_neighbours_start_with_the_point_itself() -> None:
    pts, t = _scattered(0)
    idx = neighbours(pts[:500], t[:500], (0.0, 0.0), 40.0, 1.0, 7)
    assert idx.shape == (500, 7) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx[:, 0], np.arange(500))
    # the second column is the nearest other point in (x / L, t / T)
    z = np.column_stack([pts[:500] / 40.0, t[:500]])
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    np.testing.assert_array_equal(idx[:, 1], d2.argmin(1))
    assert neighbours(pts[:3], t[:3], (0.0, 0.0), 40.0, 1.0, 10).shape == (3, 3)


TINY = {"problem": "disk", "threads": 1, "n_obs": 600, "width": 12, "depth": 2, "fourier": 4,
        "time_budget": None, "checkpoint_every": 5, "progress_seconds": 1e9,
        "report_days": (300.0,), "compile": False, "optimizer": "lbfgs", "fit_iters": 6,
        "redraw_every": 7, "lbfgs_iters_per_step": 3, "lbfgs_points": 300, "check_every": 5,
        "window": 2, "region_radius": 40.0}


def test_auto_averages_the_misfit_over_k_neighbours(tmp_path) -> None:
    from gbm.pinn.inverse import make_network, train_settings
    from gbm.pinn.train import Trainer
    from gbm.problem.density.build import build_problem

    cfg = InferConfig(**{**TINY, "noise": 0.05, "data_weight": "auto"},  # type: ignore[arg-type]
                      max_epochs=3)
    problem = build_problem(cfg)
    obs = problem.observations
    assert obs is not None
    net = make_network(cfg, problem, torch.float64)
    tr = Trainer(net, problem.domain, train_settings(cfg), cfg.dw0, cfg.rho0, problem.radius,
                 problem.horizon, (obs.points, obs.t, obs.u), dtype=torch.float64,
                 printer=lambda m: None)
    sig = estimate_noise(obs.points, obs.t, obs.u, problem.domain.center, problem.radius,
                         problem.horizon)
    assert tr.noise_estimate == sig and 0.04 < sig < 0.07
    k = math.ceil((sig / 0.005) ** 2)
    assert tr.average_k == k and tr.noisy and tr.noise_level() == sig**2 / k
    idx = neighbours(obs.points, obs.t, problem.domain.center, problem.radius, problem.horizon, k)
    _, _, l_data = tr._compute(tr._lbfgs_points(), None, use_res=False)[:3]
    assert tr.obs is not None
    with torch.no_grad():
        d = (net(tr.obs.ps.xs, tr.obs.ps.ts) - tr.obs.u).numpy()
    np.testing.assert_allclose(float(l_data.detach()), np.mean(d[idx].mean(1) ** 2), rtol=1e-12)
    # a data batch (Adam recipe): the averaged terms of the batch's observations, each over its
    # own k neighbours (not the plain misfit of the batch)
    batch = torch.tensor([5, 17, 17, 300], dtype=torch.int64)
    _, _, l_batch = tr._compute(tr._lbfgs_points(), batch, use_res=False)[:3]
    np.testing.assert_allclose(float(l_batch.detach()),
                               np.mean(d[idx[batch.numpy()]].mean(1) ** 2), rtol=1e-12)


def test_auto_fit_stops_at_the_noise_and_resumes_bit_identically(tmp_path) -> None:
    cfg = InferConfig(**{**TINY, "noise": 0.05, "data_weight": "auto",  # type: ignore[arg-type]
                         "fit_iters": 1000}, max_epochs=300)
    lines: list[str] = []
    full = infer(cfg, tmp_path / "full", printer=lines.append)
    w = full["data_weighting"]
    k = math.ceil((w["noise_estimate"] / 0.005) ** 2)
    assert w["rule"] == "auto" and w["average_k"] == k and w["w_data"] == 10.0
    end = [ln for ln in lines if ln.startswith("data-only fit ends")]
    assert len(end) == 1 and f"k = {k} neighbours" in end[0]
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert a["phase"] == "lbfgs" and a["average_k"] == k
    # the data-only fit ended long before its 1000 iterations (discrepancy principle), at a
    # multiple of the L-BFGS step, with its data term <= sigma_hat^2 / k
    stop = w["fit_stop"]
    assert stop["epoch"] < 1000 and stop["epoch"] % 3 == 0
    assert stop["data_term"] <= stop["noise_level"] == w["noise_estimate"] ** 2 / k
    assert max(r["epoch"] for r in a["log"] if r["phase"] == 2.0) <= stop["epoch"]
    # interrupted inside the data-only fit (at the end of an L-BFGS step: where a step is cut
    # changes the L-BFGS iterates, "fixed" too), resumed across its end: the same numbers
    infer(dataclasses.replace(cfg, max_epochs=99), tmp_path / "part", printer=lines.append)
    resumed = infer(cfg, tmp_path / "part", resume=tmp_path / "part", printer=lines.append)
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert a["epoch"] == b["epoch"]
    for key in a["net"]:
        assert torch.equal(a["net"][key], b["net"][key]), key
    assert full["dw"] == resumed["dw"] and full["rho"] == resumed["rho"]


def test_auto_on_clean_observations_is_fixed(tmp_path) -> None:
    cfg = InferConfig(**{**TINY, "data_weight": "auto"}, max_epochs=20)  # type: ignore[arg-type]
    auto = infer(cfg, tmp_path / "auto", printer=lambda m: None)
    fixed = infer(dataclasses.replace(cfg, data_weight="fixed"), tmp_path / "fixed",
                  printer=lambda m: None)
    assert auto["data_weighting"]["noise_estimate"] < 0.005
    assert auto["data_weighting"]["average_k"] == fixed["data_weighting"]["average_k"] == 1
    assert auto["dw"] == fixed["dw"] and auto["rho"] == fixed["rho"]
    assert auto["final_loss"] == fixed["final_loss"]


def test_unknown_data_weight_is_refused() -> None:
    with pytest.raises(InputError, match="--data-weight must be auto or fixed"):
        InferConfig(data_weight="kendall").validate()
