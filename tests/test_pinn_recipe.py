"""PINN-GBM's recipe (``gbm fit --method pinn --recipe pinn-gbm``, :mod:`gbm.pinn.recipe`): the
radial characteristic fit against gbm's own 2D/3D FD solver, the bounded parameter factors, the
sigmoid segmentation loss against a hand computation, and a short fit on a small 2D patient.
About 40 s on 2 cores."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gbm import _core
from gbm.pinn.recipe_radial import radial_fit, region_radii

torch = pytest.importorskip("torch")

DW, RHO = 0.13, 0.025          # lambda = 2.28 mm
THETA_C, THETA_E = 0.675, 0.25


def _radial_tumour(ndim: int, n: int, times: list[float]) -> list[np.ndarray]:
    """gbm's FD solver (not the radial one) on a homogeneous box from the paper's Gaussian at
    the box centre: u at ``times`` (days), 1 mm voxels."""
    shape = (n,) * ndim
    g = np.meshgrid(*[np.arange(n, dtype=np.float64)] * ndim, indexing="ij")
    c = (n - 1) / 2
    u0 = 0.1 * np.exp(-sum((gi - c) ** 2 for gi in g) / 10.0)
    s = _core.FisherKpp(u0, np.full(shape, DW), np.ones(shape), [1.0] * ndim, RHO, safety=0.5)
    out = []
    for t in times:
        s.advance(s.steps_until(t))
        out.append(s.state())
    return out


@pytest.mark.parametrize("ndim, n", [(2, 161), (3, 81)])
def test_radial_fit_recovers_lambda_and_rho_t_of_a_radial_fd_solution(ndim, n) -> None:
    """One scan: lambda and rho*T from the core and whole-tumour radii within 3 % (measured:
    lambda -0.6 % in 3D, -1.0 % in 2D; rho*T -0.6 %, -0.9 %: the 1 mm voxels of the radii)."""
    (u,) = _radial_tumour(ndim, n, [320.0])
    radii = region_radii(u >= THETA_C, u >= THETA_E, 1.0, ndim)
    fit = radial_fit([radii], [0.0], THETA_C, THETA_E, ndim)
    assert fit.lam == pytest.approx(math.sqrt(DW / RHO), rel=0.03)
    assert fit.rho_t0 == pytest.approx(RHO * 320.0, rel=0.03)
    assert fit.model_core_radii[0] == pytest.approx(radii[0], abs=0.05)   # the root is found
    assert fit.t0 == 100.0 and fit.dw == pytest.approx(fit.lam**2 * fit.rho)


def test_radial_fit_of_two_scans_recovers_dw_rho_and_age() -> None:
    """Two scans 90 days apart (2D): Dw, rho and the age within 5 % (measured -2.3 %, +1.2 %,
    -1.6 %)."""
    us = _radial_tumour(2, 161, [280.0, 370.0])
    radii = [region_radii(u >= THETA_C, u >= THETA_E, 1.0, 2) for u in us]
    fit = radial_fit(radii, [0.0, 90.0], THETA_C, THETA_E, 2)
    assert fit.dw == pytest.approx(DW, rel=0.05)
    assert fit.rho == pytest.approx(RHO, rel=0.05)
    assert fit.t0 == pytest.approx(280.0, rel=0.05)


def test_radial_fit_refuses_a_tumour_that_does_not_grow() -> None:
    from gbm.errors import InputError

    with pytest.raises(InputError, match="whole tumour that grows"):
        radial_fit([(10.0, 20.0), (9.0, 19.0)], [0.0, 90.0], THETA_C, THETA_E, 3)


def _model(factor_range=(0.75, 1.25)):
    from gbm.pinn.network import PinnNet
    from gbm.pinn.recipe_loss import RecipeModel

    net = PinnNet(2, np.zeros(2), 30.0, 100.0, 16, 2, 8, 1.0, 1.0, 0, torch.float64)
    return RecipeModel(net, 0.02, 8.0, None, ((0.675, 0.5, 0.85), (0.25, 0.05, 0.5)),
                       factor_range, torch.float64)


def test_factors_start_at_one_and_stay_in_their_range() -> None:
    """f_D, f_rho start at 1 and stay within [0.75, 1.25] however hard a loss pushes them; so
    lambda stays within sqrt(0.75/1.25) .. sqrt(1.25/0.75) of the radial fit's and rho*T within
    0.75 .. 1.25 of it."""
    m = _model()
    fd, fr = (float(v.detach()) for v in m.factors())
    assert fd == pytest.approx(1.0) and fr == pytest.approx(1.0)
    ph0 = m.physical(30.0, 1.0, 100.0)
    opt = torch.optim.Adam(m.unknowns(), lr=0.5)
    for _ in range(200):     # a loss that wants f_D = 10 and f_rho = 0
        opt.zero_grad()
        fd, fr = m.factors()
        ((fd - 10.0) ** 2 + fr ** 2).backward()
        opt.step()
    fd, fr = (float(v.detach()) for v in m.factors())
    assert 1.24 < fd <= 1.25 and 0.75 <= fr < 0.76
    ph = m.physical(30.0, 1.0, 100.0)
    assert ph["lambda_mm"] / ph0["lambda_mm"] <= math.sqrt(1.25 / 0.75) + 1e-12
    assert 0.75 - 1e-12 <= ph["rho_T"] / ph0["rho_T"] <= 1.25 + 1e-12
    for z in (-1e4, 1e4):    # even at absurd logits
        m.z_d.data.fill_(z)
        assert 0.75 <= float(m.factors()[0].detach()) <= 1.25


def test_prior_is_zero_at_the_start_and_quadratic() -> None:
    m = _model()
    assert float(m.prior(1e-3, 1e-3).detach()) == pytest.approx(0.0, abs=1e-15)
    m.z_d.data.fill_(100.0)      # f_D = 1.25
    assert float(m.prior(1e-3, 1e-3).detach()) == pytest.approx(1e-3 * 0.25**2, rel=1e-9)


def test_sigmoid_segmentation_loss_against_a_hand_computation() -> None:
    """mean((w phi (sigmoid(20 (u - theta)) - m))^2) / mean((w m)^2), by hand."""
    from gbm.pinn.recipe_loss import sigmoid_segmentation_loss

    u = [0.9, 0.3, 0.1, 0.26]
    m = [1.0, 1.0, 0.0, 0.0]
    phi = [1.0, 0.5, 1.0, 0.8]
    w = [1.0, 1.0, 1.0, 0.0]        # the last voxel is ignored
    theta, k = 0.25, 20.0
    sig = [1.0 / (1.0 + math.exp(-k * (ui - theta))) for ui in u]
    num = sum((wi * pi * (si - mi)) ** 2 for si, mi, pi, wi in zip(sig, m, phi, w)) / 4
    den = sum((wi * mi) ** 2 for mi, wi in zip(m, w)) / 4
    t = {k_: torch.tensor(v, dtype=torch.float64) for k_, v in
         dict(u=u, m=m, phi=phi, w=w).items()}
    got = sigmoid_segmentation_loss(t["u"], t["m"], t["phi"], t["w"], theta, k)
    assert float(got) == pytest.approx(num / den, rel=1e-12)
    # the hand numbers: sigmoid(13) ~ 1, sigmoid(1) = 0.731, sigmoid(-3) = 0.0474
    assert num / den == pytest.approx(((1 - sig[0]) ** 2 + (0.5 * (sig[1] - 1)) ** 2
                                       + sig[2] ** 2) / 2, rel=1e-12)


def test_recipe_fit_on_a_small_2d_patient(tmp_path) -> None:
    """A short run on a 4 mm atlas patient's axial slice: the origin stays at the core centroid,
    the estimate within the factors' reach of the radial fit, the thresholds in their bounds, and
    gbm fit's outputs are written (u from the FD solver and the network's own u)."""
    from gbm.cli import main
    from gbm.jobs.synth import SynthConfig, synth

    pdir = tmp_path / "p"
    synth(SynthConfig(downsample=4), pdir)
    out = tmp_path / "fit"
    rc = main(["fit", "--patient", str(pdir), "--slice", "25", "--method", "pinn", "--recipe",
               "pinn-gbm", "--pinn-budget", "12", "--threads", "1", "--no-pinn-compile",
               "--assume-days", "400", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["recipe"] == "pinn-gbm"
    log = res_log(out)
    first = log[0]
    e = res["estimates"]
    lam0, rt0 = float(first["lambda_mm"]), float(first["rho_T"])
    assert math.sqrt(0.75 / 1.25) - 1e-6 <= e["lambda_mm"] / lam0 <= math.sqrt(1.25 / 0.75) + 1e-6
    assert 0.75 - 1e-6 <= e["rho_T"] / rt0 <= 1.25 + 1e-6
    assert 0.5 <= e["theta_c"] <= 0.85 and 0.05 <= e["theta_e"] <= 0.5
    origins = {(r["origin_x_mm"], r["origin_y_mm"]) for r in log}
    assert len(origins) == 1                      # the origin is fixed
    assert (out / "u_pinn_day0.nii.gz").is_file() and (out / "u_day0.nii.gz").is_file()


def res_log(out):
    import csv

    with open(out / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_recipe_is_for_the_pinn_only(tmp_path, capsys) -> None:
    from gbm.cli import main

    out = tmp_path / "fit"
    assert main(["fit", "--patient", str(tmp_path), "--recipe", "pinn-gbm", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gbm: error: --recipe pinn-gbm is for --method pinn" and not out.exists()
