"""`gbm fit --method pinn`: the PINN on segmentations (issue 9).

Patients: `gbm synth` on the ball brain of tests/test_patient_fit.py (white-matter ball of radius
24 mm in a grey shell to 28 mm, 1 mm voxels). The PINN runs a CI-sized budget (a fixed number of
L-BFGS iterations, no torch.compile, 2 threads), so the tests check what must hold after any
number of iterations (files, the written fields against the reported numbers, the origin box, the
identifiability algebra, resume = uninterrupted run, bad input) plus one accuracy floor that the
warm start and 120 iterations reach on this easy patient with a wide margin (whole-tumour Dice of
the network >= 0.8; measured 0.9x, see benches/RESULTS.md for the atlas).

On a 2D patient (an axial slice of a ball patient), the loss object's steps one by one, and the
estimate against the truth and the FD-based fit of the same problem: the network reproduces the
segmentation and the origin, while lambda comes out short (the known limitation).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_nifti
from gbm.cli import main
from gbm.pinn.settings import PinnFitSettings
from gbm.problem.segmentation.model import dice

N = 64
AFF = np.diag([1.0, 1.0, 1.0, 1.0])
AFF[:3, 3] = -(N - 1) / 2
FAST = ["--method", "pinn", "--pinn-iters", "120", "--pinn-colloc", "3000",
        "--pinn-data-points", "6000", "--no-pinn-compile", "--threads", "2"]


def _synth(folder: Path, days: str, age: float, origin: str = "3,-2,1") -> Path:
    c = (N - 1) / 2
    r = np.sqrt(((np.indices((N, N, N)) - c) ** 2).sum(axis=0))
    wm = write_nifti(folder / "wm.nii.gz", (r <= 24).astype(float), AFF)
    gm = write_nifti(folder / "gm.nii.gz", ((r > 24) & (r <= 28)).astype(float), AFF)
    out = folder / "patient"
    assert main(["synth", "--wm", str(wm), "--gm", str(gm), "--origin-mm", origin,
                 "--age-days", str(age), "--scan-days", days, "--out", str(out)]) == 0
    return out


def _load(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def one_scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("pinn1")
    patient = _synth(d, "0", 360.0)
    out = d / "fit"
    assert main(["fit", "--patient", str(patient), *FAST, "--out", str(out)]) == 0
    return patient, out


def test_outputs_and_the_numbers_they_carry(one_scan):
    patient, out = one_scan
    res = json.loads((out / "results.json").read_text())
    assert res["method"].startswith("PINN")
    for f in ("u_day0.nii.gz", "u_pinn_day0.nii.gz", "plan_standard.nii.gz",
              "plan_model.nii.gz", "panels.png", "misfit.png", "log.csv"):
        assert (out / f).is_file(), f
    assert not any(p.name.startswith(".fit.") for p in out.parent.iterdir())  # checkpoint gone
    est = res["estimates"]
    row = res["scans"][0]
    u_net = _load(out / "u_pinn_day0.nii.gz")
    u_fd = _load(out / "u_day0.nii.gz")
    from gbm.problem.segmentation.patient import load_patient

    pd = load_patient(patient_dir=str(patient))
    r = pd.scans[0].regions
    # the reported Dice values are those of the written fields
    assert row["pinn_dice_whole"] == pytest.approx(dice(u_net >= est["theta_e"], r.whole), abs=1e-6)
    assert row["pinn_dice_core"] == pytest.approx(dice(u_net >= est["theta_c"], r.core), abs=1e-6)
    assert row["dice_whole"] == pytest.approx(dice(u_fd >= est["theta_e"], r.whole), abs=1e-6)
    # the network's u is zero outside the model's domain (phi >= 0.5 lies inside r <= 29 mm)
    c = (N - 1) / 2
    rr = np.sqrt(((np.indices((N, N, N)) - c) ** 2).sum(axis=0))
    assert np.all(u_net[rr > 30] == 0)
    # accuracy floor after the warm start and 120 iterations (module docstring)
    assert row["pinn_dice_whole"] >= 0.8
    # the quality check reads the FD model at the estimate, not the network
    q = res["quality"]
    assert q["min_model_dice_whole"] == row["dice_whole"]
    assert (q["warning"] is None) == (row["dice_whole"] >= 0.5)


def test_identifiable_quantities_and_origin_box(one_scan):
    """One scan: lambda and rho*T only (no Dw, rho without an assumption); the origin stays in
    the first scan's whole-tumour box + 5 mm (+1 mm where the start is on its edge)."""
    patient, out = one_scan
    res = json.loads((out / "results.json").read_text())
    est = res["estimates"]
    assert est["dw"] is None and est["rho"] is None
    assert "not identifiable from one scan" in est["dw_rho_basis"]
    assert est["lambda_mm"] > 0 and est["rho_T"] > 0
    assert est["dw_T"] == pytest.approx(est["lambda_mm"] ** 2 * est["rho_T"], rel=1e-9)
    from gbm.problem.segmentation.patient import load_patient

    pd = load_patient(patient_dir=str(patient))
    idx = np.argwhere(pd.scans[0].regions.whole)
    world = (pd.affine[:3, :3] @ idx.T).T + pd.affine[:3, 3]
    lo, hi = world.min(0) - 6.0, world.max(0) + 6.0
    o = np.asarray(est["origin_world_mm"])
    assert np.all(o >= lo) and np.all(o <= hi)
    p = res["pinn"]
    assert p["scan_t_scaled"] == [1.0]
    assert p["iterations"] == 120 and p["device"] == "cpu"
    log = (out / "log.csv").read_text().splitlines()
    stages = {line.split(",")[1] for line in log[1:]}
    assert {"pinn warm", "pinn joint"} <= stages


def test_two_scans_fit_dw_rho_age_consistently(tmp_path):
    patient = _synth(tmp_path, "0,60", 320.0)
    out = tmp_path / "fit"
    assert main(["fit", "--patient", str(patient), *FAST[:3], "60", *FAST[4:],
                 "--forecast", "30", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    est = res["estimates"]
    t = res["pinn"]["scan_t_scaled"]
    assert 0 < t[0] < t[1] == pytest.approx(1.0)
    # scan k sits at t'_k = q + (1 - q) d_k / 60 and H = 60 / (1 - q): the age is q H
    q = t[0]
    assert est["age_days_at_first_scan"] == pytest.approx(q * 60 / (1 - q), rel=1e-4)
    assert est["dw"] == pytest.approx(est["lambda_mm"] ** 2 * est["rho"], rel=1e-6)
    assert est["rho_T"] == pytest.approx(est["rho"] * est["age_days_at_first_scan"], rel=1e-6)
    assert (out / "u_day90.nii.gz").is_file() and (out / "u_pinn_day60.nii.gz").is_file()


def _fine_problem(tmp_path: Path, age: float = 360.0, origin: str = "3,-2,1",
                  slice_index: int | None = None):
    """A one-scan ball patient's fine level, unknowns and fit settings (API level); 3D, or the
    axial slice ``slice_index`` as a 2D fit."""
    from gbm.model.geometry import DEFAULT_EPSILON_MM
    from gbm.problem.segmentation.levels import box_regions, make_levels, start_and_box
    from gbm.problem.segmentation.patient import load_patient
    from gbm.problem.segmentation.unknowns import PatientFitSettings

    patient = _synth(tmp_path, "0", age, origin)
    pd = load_patient(patient_dir=str(patient))
    geom = pd.geometry(slice_index=slice_index)
    geom = geom.with_phase_field(epsilon=DEFAULT_EPSILON_MM * min(geom.spacing))
    regs = [box_regions(geom, s.regions) for s in pd.scans]
    fs = PatientFitSettings(coarse_mm=0)
    fine = make_levels(geom, regs, fs, None, None, slice_index=slice_index)[-1]
    return fine, start_and_box(fine, geom, regs, list(pd.days_since_first), fs), fs


@pytest.fixture(scope="module")
def slice_patient(tmp_path_factory: pytest.TempPathFactory):
    """The 2D patient: the axial slice through the origin (z = 0.5 mm, voxel 32) of a one-scan
    ball patient, origin (3, -2, 0.5) mm, age 250 days (truth.json: lambda 2.28 mm, rho*T 6.25);
    its fine level is a 52 x 52 box of 1 mm voxels."""
    d = tmp_path_factory.mktemp("pinn2d")
    fine, unk, fs = _fine_problem(d, 250.0, "3,-2,0.5", slice_index=32)
    truth = json.loads((d / "patient" / "truth.json").read_text())
    return fine, unk, fs, truth


def test_the_loss_objects_pieces_on_a_2d_patient(slice_patient):
    """Each step of the patient loss object alone: the scales, the data voxels, the start in
    the network's variables, the loss's decomposition, the step caps."""
    from gbm.pinn.patient_loss import build_patient_loss, data_voxels
    from gbm.problem.segmentation.model import IGNORED
    from gbm.problem.segmentation.unknowns import NOMINAL_DAYS

    fine, unk, fs, _ = slice_patient
    s = PinnFitSettings(width=16, depth=2, fourier=8, colloc=400, data_points=500,
                        warm_iters=30, max_iters=200, check_every=7, redraw_every=12)
    loss = build_patient_loss(fine, unk, fs, s, torch.device("cpu"))
    sc, p0 = loss.scales, unk.physical(unk.x0)
    # L: the farthest whole-tumour voxel from c (the start origin) + the 10 mm margin
    whole = np.argwhere(fine.models[0].whole) * np.asarray(fine.geom.spacing)
    assert np.array_equal(sc.center, p0.origin_local)
    assert sc.length == pytest.approx(np.linalg.norm(whole - sc.center, axis=1).max() + 10.0)
    assert sc.horizon == NOMINAL_DAYS and sc.q0 is None and sc.rel == [1.0]
    # the start in the network's variables is the start: lambda = L sqrt(a/b), rho*T = b
    ph = loss.model.physical(sc.length, sc.span)
    assert ph["lambda_mm"] == pytest.approx(p0.lam, rel=1e-6)
    assert ph["rho_T"] == pytest.approx(p0.rho_t0, rel=1e-6)
    assert np.allclose(loss.net.origin().numpy(), p0.origin_local, atol=1e-5)
    # data voxels: 500 distinct labelled voxels, the same for the same seed
    d = loss.data
    labelled = int((fine.models[0].classes != IGNORED).sum())
    assert d.n == 500 < labelled and np.all(d.models[0].classes != IGNORED)
    assert len(np.unique(d.xs.numpy(), axis=0)) == 500
    again = data_voxels(fine, s, sc, torch.device("cpu"), torch.float32)
    assert torch.equal(again.xs, d.xs)
    # the full loss is residual + w_data * misfit (thresholds fixed: no prior term)
    loss.prepare()
    ps = loss.points
    assert ps is not None and len(ps) == 400 and loss.warm_target is not None
    total, l_res, l_data = (float(v.detach())
                            for v in loss.loss_terms(ps.xs, ps.ts, ps.phi, ps.F, ps.gradF))
    assert total == pytest.approx(l_res + s.w_data * l_data, rel=1e-6)
    assert l_data > 0 and l_res > 0
    # a step ends at the next check (7), redraw (12), end of the warm start (min(30, 200 // 4))
    for epoch, phase, cap in ((0, "warm", 7), (7, "warm", 5), (24, "warm", 4), (29, "warm", 1),
                              (36, "joint", 6), (198, "joint", 2)):
        loss.progress.epoch, loss.phase = epoch, phase
        assert loss.cap() == cap, (epoch, phase)


def test_network_reproduces_the_segmentation_but_lambda_comes_out_short(slice_patient):
    """The PINN's estimate on the 2D patient against the FD-based fit of the same problem (same
    fine box, observation model and unknowns).

    What is true and robust (measured on this case, seeds 0-2, 300 iterations, ~10 s: network
    Dice of the whole tumour 0.955-0.976, origin 0.4-1.1 mm from the truth, lambda 1.21-1.33 mm
    against the FD fit's 3.05 mm, i.e. 56-60 % short; the same numbers with 1 and 2 threads):

    * the network reproduces the segmentation (whole-tumour Dice >= 0.9 on the data voxels);
    * the origin lands within 2.5 mm of the truth and of the FD fit's (which is within 0.1 mm);
    * lambda is shorter than the FD fit's, by 30-75 %. This is the known limitation of the
      PINN on segmentations (module docstring of gbm.pinn.patient, benches/RESULTS.md "PINN on
      segmentations": 56-74 % short on the atlas patients): the loss itself prefers a short
      lambda. A change that removes the bias fails the upper bound of this band -- then
      tighten the band around the FD fit's lambda. (The FD fit's lambda of a 2D slice is not
      the 3D truth's 2.28 mm: the slice of a 3D tumour grows like a 3D one.)
    """
    from gbm.inference.segmentation_fit import fit_segmentations
    from gbm.pinn.patient import fit_segmentations_pinn

    fine, unk, fs, truth = slice_patient
    fd = fit_segmentations([fine], unk, fs)
    s = PinnFitSettings(width=48, fourier=32, colloc=2000, data_points=3000, warm_iters=60,
                        max_iters=300, compile=False, threads=1, time_budget=1e6)
    res, extra = fit_segmentations_pinn(fine, unk, fs, s, None, False, lambda m: None)
    assert extra.iterations == 300 and extra.stopped == "max_iters"
    assert fd.dice[0][1] >= 0.98                     # the reference fits the segmentation
    assert res.dice[0][1] >= 0.9                     # so does the network (Dice on data voxels)
    origin = fine.geom.local_to_world(res.params.origin_local)
    origin_fd = fine.geom.local_to_world(fd.params.origin_local)
    assert math.dist(origin[:2], truth["origin_world_mm"][:2]) < 2.5
    assert math.dist(origin[:2], origin_fd[:2]) < 2.5
    assert 0.25 < res.params.lam / fd.params.lam < 0.7


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """40 iterations, stop, resume to 60 == 60 in one go (checkpoint holds the network, the
    unknowns, the L-BFGS state and the RNG)."""
    from gbm.pinn.patient import PinnFitSettings, fit_segmentations_pinn

    fine, unk, fs = _fine_problem(tmp_path)
    base = dict(colloc=1500, data_points=3000, compile=False, threads=2, warm_iters=10,
                redraw_every=40, checkpoint_every=20, time_budget=1e6)
    ck = tmp_path / "ck.pt"
    say = lambda m: None  # noqa: E731
    fit_segmentations_pinn(fine, unk, fs, PinnFitSettings(max_iters=40, **base), ck, False, say)
    assert ck.is_file()
    res_a, _ = fit_segmentations_pinn(fine, unk, fs, PinnFitSettings(max_iters=60, **base), ck,
                                      True, say)
    res_b, _ = fit_segmentations_pinn(fine, unk, fs, PinnFitSettings(max_iters=60, **base),
                                      None, False, say)
    assert res_a.solves["pinn_iterations"] == res_b.solves["pinn_iterations"] >= 60
    assert res_a.params.lam == res_b.params.lam
    assert res_a.params.rho_t0 == res_b.params.rho_t0
    assert np.array_equal(res_a.params.origin_local, res_b.params.origin_local)
    assert res_a.dice == res_b.dice and len(res_a.dice) == 1   # per scan, at the last check


def test_hold_phase_keeps_the_unknowns_at_their_start(tmp_path):
    """hold_iters: after the warm start the network trains alone on the full loss with the
    unknowns exactly at their start (every check of the warm and hold phases reports the start's
    lambda, rho*T and origin); released, they move."""
    from gbm.pinn.patient import PinnFitSettings, fit_segmentations_pinn

    fine, unk, fs = _fine_problem(tmp_path)
    s = PinnFitSettings(max_iters=90, warm_iters=10, hold_iters=40, check_every=10,
                        colloc=1500, data_points=3000, compile=False, threads=2,
                        redraw_every=1000, time_budget=1e6)
    res, _ = fit_segmentations_pinn(fine, unk, fs, s, None, False, lambda m: None)
    keys = ("lambda_mm", "rho_T", "origin_x_mm", "origin_y_mm", "origin_z_mm")
    start = res.log[0]
    stages = [r["stage"] for r in res.log]
    assert stages.count("pinn hold") >= 3 and stages[-1] == "pinn joint"
    for r in res.log:
        if r["stage"] in ("pinn warm", "pinn hold"):
            assert all(r[k] == start[k] for k in keys), r
            if r["stage"] == "pinn hold":
                assert math.isfinite(r["loss_res"])   # the full loss, residual included
    assert res.log[-1]["lambda_mm"] != start["lambda_mm"]


@pytest.mark.parametrize("case", ["cuda", "uncertainty", "device_fd", "budget"])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    patient = tmp_path / "nope"     # never read: every case fails before loading
    argv = {"cuda": ["--method", "pinn", "--device", "cuda"],
            "uncertainty": ["--method", "pinn", "--uncertainty"],
            "device_fd": ["--device", "cpu"],
            "budget": ["--method", "pinn", "--pinn-budget", "0"]}[case]
    message = {"cuda": "--device cuda: CUDA is not available on this machine",
               "uncertainty": "--uncertainty needs --method fd",
               "device_fd": "--device and --threads are for --method pinn",
               "budget": "--pinn-budget must be > 0"}[case]
    out = tmp_path / "out"
    rc = main(["fit", "--patient", str(patient), *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("gbm: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


def test_infer_with_patient_flags_runs_the_pinn_patient_fit(one_scan, tmp_path):
    """`gbm infer --patient DIR` is `gbm fit --method pinn` (same estimate for the same
    settings: deterministic on CPU)."""
    patient, out = one_scan
    out2 = tmp_path / "infer"
    assert main(["infer", "--patient", str(patient), "--no-compile", "--threads", "2",
                 "--out", str(out2), "--config", str(_toml(tmp_path))]) == 0
    a = json.loads((out / "results.json").read_text())["estimates"]
    b = json.loads((out2 / "results.json").read_text())["estimates"]
    assert b["lambda_mm"] == a["lambda_mm"] and b["rho_T"] == a["rho_T"]
    assert math.isfinite(b["lambda_mm"])


def _toml(folder: Path) -> Path:
    p = folder / "pinn.toml"
    p.write_text("pinn_iters = 120\npinn_colloc = 3000\npinn_data_points = 6000\n")
    return p


def test_patient_study_runs_both_methods_on_the_same_patient(tmp_path):
    """`gbm bench --study patient` (small: one case, atlas at 4 mm, a short PINN budget): one
    row per method for the same synthetic patient, errors against its truth.json, report.md."""
    from gbm.jobs.bench.patient_study import PatientStudyConfig, run_patient_study

    cfg = PatientStudyConfig(downsample=4, cases=("one",), pinn_budget=10.0, pinn_compile=False,
                             threads=2, device="cpu", methods=("fd", "pinn"))
    rep = run_patient_study(cfg, tmp_path / "study", printer=lambda m: None)
    rows = {r["method"]: r for r in rep["rows"]}
    assert set(rows) == {"fd", "pinn"}
    truth = json.loads((tmp_path / "study" / "patients" / "one" / "truth.json").read_text())
    for method, r in rows.items():
        res = json.loads((tmp_path / "study" / "fits" / f"one-{method}" / "results.json")
                         .read_text())
        e = res["estimates"]
        assert r["origin_err_mm"] == pytest.approx(
            math.dist(e["origin_world_mm"], truth["origin_world_mm"]))
        assert r["lambda_err_pct"] == pytest.approx(100 * (e["lambda_mm"] / truth["lambda_mm"]
                                                           - 1))
        assert r["dw_err_pct"] is None      # one scan: Dw only by assumption, not scored
        # the forecast Dice is that of the written forecast against the truth's, at u > 0.25
        day = truth["recurrence_day"]
        u = _load(tmp_path / "study" / "fits" / f"one-{method}" / f"u_day{day:g}.nii.gz")
        ut = _load(tmp_path / "study" / "patients" / "one" / "truth" / f"u_day{day:g}.nii.gz")
        assert r["forecast_dice"] == pytest.approx(dice(u > 0.25, ut > 0.25), abs=1e-12)
    assert rows["fd"]["dice"][0][1] >= 0.9   # the FD fit on a 4 mm atlas patient
    assert rows["pinn"]["network_dice"] is not None and rows["fd"]["network_dice"] is None
    md = (tmp_path / "study" / "report.md").read_text()
    assert md.count("| one | ") == 2 and "lambda mm (%)" in md


def test_fit_flags_default_to_the_pinn_recipe_defaults():
    """FitConfig without --pinn-* flags gives exactly the recipe's settings, and the recipe
    module re-exports the torch-free settings class."""
    from gbm.jobs.fit.run import FitConfig
    from gbm.pinn import patient, settings

    assert patient.PinnFitSettings is settings.PinnFitSettings
    assert FitConfig().pinn_settings() == settings.PinnFitSettings()
