"""`gbm fit --method bilo`: bilevel local operator learning on segmentations (issue 20).

A 2D disk patient at 2 mm (white-matter disk of radius 36 mm in a grey ring to 42 mm) whose
segmentation is the 2D FD model itself thresholded at the default levels (truth: origin (4, -6)
mm, Dw 0.13, rho 0.025, age 300 d: lambda 2.28 mm, rho*T 7.5), so the truth is exactly
representable. What is checked:

* the bilevel gradient: the upper level's gradient of the data misfit through du/dtheta of the
  network against central differences of the same network's misfit (float64);
* the lower level's parameter-gradient term: dR/dtheta per point by autograd against central
  differences of R;
* each level moves only its own variables, and the pre-training fits the network to the FD
  solution at the start;
* resume after an interrupt = the uninterrupted trajectory (CPU);
* the CUDA path (skipped without a GPU);
* `gbm fit --method bilo` end to end (files, the reported numbers against the written fields) and
  the one-line missing-extra error without torch;
* the issue's accuracy targets on the disk (~10 min, opt-in with GBM_TEST_BILO_TARGETS=1 since
  CI runs slow tests too; a strict xfail: measured, BiLO misses them, benches/RESULTS.md "BiLO").
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_nifti
from gbm.cli import main
from gbm.pinn.bilo_settings import BiloSettings
from gbm.problem.segmentation.model import dice

TRUTH = {"origin": (4.0, -6.0), "dw": 0.13, "rho": 0.025, "age": 300.0}
SMALL = dict(width=16, depth=2, fourier=8, colloc=300, data_points=400, threads=2,
             time_budget=1e6, check_every=10, redraw_every=15, checkpoint_every=10)


def _disk(n: int = 48, h: float = 2.0):
    """The 2D disk patient (module docstring): (fine level, unknowns, fit settings, truth)."""
    from gbm.model.geometry import DEFAULT_EPSILON_MM, from_maps
    from gbm.problem.segmentation.levels import Regions, make_levels, solve_states, start_and_box
    from gbm.problem.segmentation.unknowns import PatientFitSettings, Physical

    c = (n - 1) / 2
    r = np.sqrt(((np.indices((n, n)) - c) ** 2).sum(axis=0)) * h
    wm = (r <= 36).astype(float)[:, :, None]
    gm = ((r > 36) & (r <= 42)).astype(float)[:, :, None]
    aff = np.diag([h, h, h, 1.0])
    aff[:3, 3] = [-c * h, -c * h, 0.0]
    geom = from_maps(wm, gm, aff, slice_index=0, margin=2)
    geom = geom.with_phase_field(epsilon=DEFAULT_EPSILON_MM * min(geom.spacing))
    o = geom.world_to_local(np.array([*TRUTH["origin"], 0.0]))
    dw, rho, age = TRUTH["dw"], TRUTH["rho"], TRUTH["age"]
    p = Physical(o, math.sqrt(dw / rho), rho * age, dw, rho, age, 0.675, 0.25)
    (u,), _ = solve_states(geom, geom.tissue_factor(10.0), geom.phi, p, o, [age])
    regs = [Regions(core=u >= 0.675, whole=u >= 0.25, cavity=np.zeros(u.shape, bool))]
    fs = PatientFitSettings(coarse_mm=0)
    fine = make_levels(geom, regs, fs, None, None, slice_index=0)[-1]
    return fine, start_and_box(fine, geom, regs, [0.0], fs), fs, p


@pytest.fixture(scope="module")
def disk():
    return _disk()


def _loss(disk, dtype=torch.float64, device="cpu", **kw):
    from gbm.pinn.bilo_loss import build_bilo_loss

    fine, unk, fs, _ = disk
    s = BiloSettings(**dict(SMALL, **kw))
    loss = build_bilo_loss(fine, unk, fs, s, torch.device(device), dtype)
    loss.prepare()
    return loss


def _set(params, flat):
    with torch.no_grad():
        j = 0
        for p in params:
            p.copy_(flat[j:j + p.numel()].reshape(p.shape))
            j += p.numel()


def test_upper_gradient_through_the_network_equals_finite_differences(disk):
    """d misfit / d(log a, log b, z_origin) by autograd through du/dtheta of the network (the
    upper level's gradient) = central differences of the same network's misfit, float64; the
    misfit (a squared hinge) is C1, so the difference quotient converges at O(h^2)."""
    loss = _loss(disk)
    for _ in range(3):   # a few pre-training iterations: a network that is not at its init
        loss.before_step()
        loss.progress.epoch += loss.step()
    unk = loss.model.unknowns()
    # move off the start so every unknown's misfit derivative is non-trivial
    flat = torch.cat([p.detach().reshape(-1) for p in unk]) + torch.tensor(
        [0.15, -0.2, 0.3, -0.25], dtype=torch.float64)
    _set(unk, flat)
    for p in unk:
        p.requires_grad_(True)
    grad = torch.autograd.grad(loss.data_loss(loss.theta()), unk)
    grad = torch.cat([g.reshape(-1) for g in grad]).numpy()
    for p in unk:
        p.requires_grad_(False)
    h = 1e-5
    fd = []
    for i in range(len(flat)):
        vals = []
        for sgn in (1.0, -1.0):
            v = flat.clone()
            v[i] += sgn * h
            _set(unk, v)
            with torch.no_grad():
                vals.append(float(loss.data_loss(loss.theta())))
        fd.append((vals[0] - vals[1]) / (2 * h))
    assert np.all(np.abs(grad) > 1e-7), grad
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-12)


def test_lower_level_parameter_gradient_is_dR_dtheta(disk):
    """The lower level's second term: dR/dtheta' per point (autograd through the forward
    Laplacian, total derivative through u and a, b) = central differences of R in each
    parameter, times the input scale; float64."""
    loss = _loss(disk)
    ps = loss.points
    theta = loss.theta().detach() + torch.tensor([0.1, -0.1, 0.02, -0.03], dtype=torch.float64)
    _, r0, g = loss.residual_and_gradient(ps, theta)
    h = 1e-6
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = h
        _, rp, _ = loss.residual_and_gradient(ps, theta + e)
        _, rm, _ = loss.residual_and_gradient(ps, theta - e)
        fd = (rp - rm).detach() / (2 * h) * loss.net.theta_scale[i]
        np.testing.assert_allclose(g[:, i].detach().numpy(), fd.numpy(), rtol=1e-5,
                                   atol=1e-7 * float(fd.abs().max()))
    assert float(r0.detach().abs().max()) > 0


def test_each_level_moves_only_its_own_variables_and_pretraining_fits_the_start(disk):
    """A lower step changes the weights, never the parameters; an upper step the parameters,
    never the weights; after pre-training the network is the FD solution at the start."""
    loss = _loss(disk, pre_iters=40, max_iters=200, lower_steps=2, redraw_every=100,
                 colloc=600, w_grad=1.0)
    with torch.no_grad():
        u0 = loss.net.field(loss.points.xs, loss.points.ts, loss.theta())
    rms0 = float((u0 - loss.target).square().mean().sqrt())
    while loss.epoch < 40:
        loss.before_step()
        loss.progress.epoch += loss.step()
    loss.before_step()
    assert loss.phase == "bilevel"
    with torch.no_grad():
        u = loss.net.field(loss.points.xs, loss.points.ts, loss.theta())
    rms = float((u - loss.target).square().mean().sqrt())
    # u_FD peaks at ~0.9; 40 iterations of a 16-wide network (w_grad 1): measured rms 0.048,
    # from 0.31 at the initialisation
    assert rms < 0.06 and rms < rms0 / 4, (rms, rms0)
    weights = [p.detach().clone() for p in loss.net.mlp.parameters()]
    unk = [p.detach().clone() for p in loss.model.unknowns()]
    loss._lower_step()
    assert all(torch.equal(a, b) for a, b in zip(unk, loss.model.unknowns()))
    assert not all(torch.equal(a, b) for a, b in zip(weights, loss.net.mlp.parameters()))
    weights = [p.detach().clone() for p in loss.net.mlp.parameters()]
    loss._upper_step()
    assert all(torch.equal(a, b) for a, b in zip(weights, loss.net.mlp.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(unk, loss.model.unknowns()))
    # the outputs' network evaluates at the new parameters
    assert torch.equal(loss.net.theta_now, loss.theta().detach())


def test_resumed_run_equals_an_uninterrupted_one(disk, tmp_path):
    """40 steps, stop, resume to 60 == 60 in one go (pre-training 15 L-BFGS iterations, then
    bilevel; the checkpoint holds the network, the parameters, both Adam states, the L-BFGS
    state and the RNG)."""
    from gbm.pinn.bilo import fit_segmentations_bilo

    fine, unk, fs, _ = disk
    base = dict(SMALL, pre_iters=15, lower_steps=3, threads=1)
    ck = tmp_path / "ck.pt"
    say = lambda m: None  # noqa: E731
    fit_segmentations_bilo(fine, unk, fs, BiloSettings(max_iters=40, **base), ck, False, say)
    assert ck.is_file()
    a, _ = fit_segmentations_bilo(fine, unk, fs, BiloSettings(max_iters=60, **base), ck, True,
                                  say)
    b, _ = fit_segmentations_bilo(fine, unk, fs, BiloSettings(max_iters=60, **base), None,
                                  False, say)
    assert a.solves == b.solves and b.solves["bilo_steps"] == 60
    assert b.solves["bilo_upper_steps"] == (60 - 15) // 3
    assert a.params.lam == b.params.lam and a.params.rho_t0 == b.params.rho_t0
    assert np.array_equal(a.params.origin_local, b.params.origin_local)
    assert [r["misfit"] for r in a.log] == [r["misfit"] for r in b.log]
    assert a.params.lam != unk.physical(unk.x0).lam     # the parameters did move


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_path_follows_the_cpu_path(disk):
    """The same steps on CUDA and CPU in float64 give the same losses and parameters (to
    rounding)."""
    out = {}
    for dev in ("cpu", "cuda"):
        loss = _loss(disk, device=dev, pre_iters=10, max_iters=40, lower_steps=2)
        for _ in range(20):
            loss.before_step()
            loss.progress.epoch += loss.step()
        out[dev] = (loss.last["l_res"], loss.theta().detach().cpu().numpy())
        assert loss.net.center.device.type == dev
    assert out["cuda"][0] == pytest.approx(out["cpu"][0], rel=1e-4)
    np.testing.assert_allclose(out["cuda"][1], out["cpu"][1], rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- the command

N = 64
AFF = np.diag([1.0, 1.0, 1.0, 1.0])
AFF[:3, 3] = -(N - 1) / 2


@pytest.fixture(scope="module")
def ball_patient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-scan ball patient (tests/test_pinn_patient.py's), fitted on its axial slice 32."""
    d = tmp_path_factory.mktemp("bilo_ball")
    c = (N - 1) / 2
    r = np.sqrt(((np.indices((N, N, N)) - c) ** 2).sum(axis=0))
    wm = write_nifti(d / "wm.nii.gz", (r <= 24).astype(float), AFF)
    gm = write_nifti(d / "gm.nii.gz", ((r > 24) & (r <= 28)).astype(float), AFF)
    out = d / "patient"
    assert main(["synth", "--wm", str(wm), "--gm", str(gm), "--origin-mm", "3,-2,0.5",
                 "--age-days", "360", "--scan-days", "0", "--out", str(out)]) == 0
    return out


def _load(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj)


def test_gbm_fit_method_bilo_writes_the_fd_outputs_and_the_networks_u(ball_patient, tmp_path):
    out = tmp_path / "fit"
    assert main(["fit", "--patient", str(ball_patient), "--slice", "32", "--method", "bilo",
                 "--pinn-iters", "40", "--pinn-colloc", "400", "--pinn-data-points", "600",
                 "--threads", "2", "--device", "cpu", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["method"].startswith("BiLO")
    for f in ("u_day0.nii.gz", "u_pinn_day0.nii.gz", "plan_standard.nii.gz",
              "plan_model.nii.gz", "panels.png", "misfit.png", "log.csv"):
        assert (out / f).is_file(), f
    assert not any(p.name.startswith(".fit.") for p in out.parent.iterdir())  # checkpoint gone
    assert res["config"]["method"] == "bilo" and res["pinn"]["iterations"] == 40
    assert res["pinn"]["device"] == "cpu" and res["pinn"]["collocation_points"] == 400
    est, row = res["estimates"], res["scans"][0]
    from gbm.problem.segmentation.patient import load_patient

    r = load_patient(patient_dir=str(ball_patient)).scans[0].regions
    only = np.zeros(r.whole.shape, bool)
    only[:, :, 32] = True
    u_net, u_fd = _load(out / "u_pinn_day0.nii.gz"), _load(out / "u_day0.nii.gz")
    assert row["pinn_dice_whole"] == pytest.approx(dice(u_net >= est["theta_e"], r.whole & only),
                                                   abs=1e-6)
    assert row["dice_whole"] == pytest.approx(dice(u_fd >= est["theta_e"], r.whole & only),
                                              abs=1e-6)
    assert est["dw_T"] == pytest.approx(est["lambda_mm"] ** 2 * est["rho_T"], rel=1e-9)
    stages = {line.split(",")[1] for line in (out / "log.csv").read_text().splitlines()[1:]}
    assert {"bilo pre", "bilo bilevel"} <= stages


def test_without_torch_method_bilo_is_one_line_and_exit_2(tmp_path):
    """As tests/test_install.py does for --method pinn: torch blocked by a sitecustomize."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'torch':\n"
        "            raise ImportError('blocked')\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Block())\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + [p for p in [env.get("PYTHONPATH")] if p])
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([sys.executable, "-m", "gbm", "fit", "--patient", str(tmp_path / "p"),
                        "--method", "bilo", "--out", "out"], env=env, cwd=work,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("gbm: error: --method bilo")
    assert line.endswith("needs the optional extra 'pinn' (torch not installed): "
                         'pip install "gbm[pinn]"'), line
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--fit-thresholds"], "--fit-thresholds is not supported by --method bilo"),
    (["--uncertainty"], "--uncertainty needs --method fd"),
    (["--pinn-budget", "0"], "--pinn-budget must be > 0"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    rc = main(["fit", "--patient", str(tmp_path / "nope"), "--method", "bilo", *argv,
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("gbm: error: ") and err.count("\n") == 1, err
    assert message in err and not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GBM_TEST_BILO_TARGETS") != "1",
                    reason="~10 min: run with GBM_TEST_BILO_TARGETS=1 (CI runs every test, "
                    "slow ones included)")
@pytest.mark.xfail(strict=True, reason="measured: BiLO's estimate misses the issue's targets on "
                   "this disk (see the module docstring of gbm.pinn.bilo, 'Measured')")
def test_bilo_estimate_meets_the_issue_targets_on_the_disk(disk):
    """Issue 20's targets: origin within 3 mm, lambda and rho*T within 15 %, the FD model at
    the estimate reproduces the segmentation (whole-tumour Dice >= 0.9). BiLO's default settings,
    600 s on 2 threads."""
    from gbm.pinn.bilo import fit_segmentations_bilo
    from gbm.problem.segmentation.levels import solve_states

    fine, unk, fs, truth = disk
    s = BiloSettings(threads=2, max_iters=3000, time_budget=600, upper_u="fd")
    res, _ = fit_segmentations_bilo(fine, unk, fs, s, None, False, lambda m: None)
    p = res.params
    (u,), _ = solve_states(fine.geom, fine.kfac, fine.phi, p, p.origin_local, unk.times(p))
    assert np.linalg.norm(p.origin_local - truth.origin_local) < 3.0
    assert abs(p.lam / truth.lam - 1) < 0.15 and abs(p.rho_t0 / truth.rho_t0 - 1) < 0.15
    assert dice(u >= 0.25, fine.models[0].whole) >= 0.9
