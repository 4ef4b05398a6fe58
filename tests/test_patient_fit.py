"""`gbm fit` on synthetic patients: identifiability, accuracy, outputs, bad input.

The patients come from `gbm synth` on a ball-shaped brain (white-matter ball of radius 24 mm in a
grey shell to 28 mm, 1 mm voxels), made with the FD solver at a 4x finer time step than the fit's
(safety 0.25 vs the fit's coarse 0.9 / fine 0.5): not an exact inverse crime in time, and the
coarse stage runs on a 2 mm grid. Tolerances are the issue's: Dice >= 0.9 per scan, origin within
2 mm, lambda and rho*T within 10 %, with two scans Dw and rho within 10 %, forecast Dice(u > 0.25)
>= 0.9 150 days past the last scan.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import write_nifti
from gbm.cli import main
from gbm.problem.segmentation.model import dice

N = 64
AFF = np.diag([1.0, 1.0, 1.0, 1.0])
AFF[:3, 3] = -(N - 1) / 2
ORIGIN = (3.0, -2.0, 1.0)
AGE = 320.0
AGE_ONE = 360.0      # one scan: a little older, so the core is not a 2.5 ml speck


def _maps(folder: Path) -> tuple[Path, Path]:
    c = (N - 1) / 2
    r = np.sqrt(((np.indices((N, N, N)) - c) ** 2).sum(axis=0))
    wm = (r <= 24).astype(float)
    gm = ((r > 24) & (r <= 28)).astype(float)
    return write_nifti(folder / "wm.nii.gz", wm, AFF), write_nifti(folder / "gm.nii.gz", gm, AFF)


def _synth(folder: Path, days: str, age: float = AGE) -> Path:
    wm, gm = _maps(folder)
    out = folder / "patient"
    assert main(["synth", "--wm", str(wm), "--gm", str(gm), "--origin-mm", "3,-2,1",
                 "--age-days", str(age), "--scan-days", days, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def two_scans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("two")
    patient = _synth(d, "0,60")
    out = d / "fit"
    assert main(["fit", "--patient", str(patient), "--forecast", "150", "--out", str(out)]) == 0
    return patient, out


@pytest.fixture(scope="module")
def one_scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("one")
    patient = _synth(d, "0", AGE_ONE)
    out = d / "fit"
    assert main(["fit", "--patient", str(patient), "--assume-days", str(AGE_ONE),
                 "--forecast", "150",
                 "--uncertainty", "--steps", "14", "--burn", "6", "--draws", "6",
                 "--out", str(out)]) == 0
    return patient, out


def _truth(patient: Path) -> dict:
    return json.loads((patient / "truth.json").read_text())


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def test_one_scan_data_depend_only_on_lambda_and_rho_t():
    """u(Dw, rho, T) == u(2 Dw, 2 rho, T / 2) to round-off: the solver's own time step halves
    too, so the two runs take the same steps (why one scan cannot give Dw and rho)."""
    from gbm.model.geometry import disk
    from gbm.problem.segmentation.levels import solve_states
    from gbm.problem.segmentation.unknowns import Physical

    g = disk(radius_mm=20, half_width_mm=24)
    k = np.ascontiguousarray(g.tissue_factor(10.0))
    o = (np.asarray(g.shape) - 1) / 2.0
    p1 = Physical(o, 0.0, 0.0, 0.13, 0.025, 0.0, 0.675, 0.25)
    p2 = Physical(o, 0.0, 0.0, 0.26, 0.05, 0.0, 0.675, 0.25)
    (u1,), n1 = solve_states(g, k, g.phi, p1, o, [200.0])
    (u2,), n2 = solve_states(g, k, g.phi, p2, o, [100.0])
    assert n1 == n2
    np.testing.assert_allclose(u1, u2, rtol=0, atol=1e-12)
    (u3,), _ = solve_states(g, k, g.phi, p2, o, [200.0])
    assert np.abs(u3 - u1).max() > 0.1           # but Dw*T, rho*T changed: a different tumour


def test_two_scans_recover_dw_rho_age_origin(two_scans):
    patient, out = two_scans
    t = _truth(patient)
    r = json.loads((out / "results.json").read_text())
    e = r["estimates"]
    assert math.dist(e["origin_world_mm"], ORIGIN) <= 2.0
    for key, true in (("lambda_mm", t["lambda_mm"]), ("rho_T", t["rho_T"]), ("dw", t["dw"]),
                      ("rho", t["rho"]), ("age_days_at_first_scan", t["age_days"])):
        assert e[key] == pytest.approx(true, rel=0.10), key
    assert "fitted from the scan dates" in e["dw_rho_basis"]
    for s in r["scans"]:
        assert s["dice_core"] >= 0.9 and s["dice_whole"] >= 0.9, s
    assert [s["day"] for s in r["scans"]] == [0.0, 60.0]
    # a fit that reproduces its scans passes the quality check, with no warning
    q = r["quality"]
    assert q["min_model_dice_whole"] == min(s["dice_whole"] for s in r["scans"])
    assert q["warning"] is None and q["threshold"] == 0.5


def test_quality_check_warns_below_half_and_names_the_scan() -> None:
    from gbm.clinical.quality import MIN_MODEL_DICE, check_quality

    assert check_quality([0.0], [0.93]).warning is None
    assert check_quality([0.0], [MIN_MODEL_DICE]).warning is None
    q = check_quality([0.0, 90.0], [0.93, 0.21], method="fd")
    assert q.min_model_dice_whole == 0.21 and q.threshold == 0.5
    assert q.warning.startswith("the model at the estimate does not reproduce the scan of "
                                "day 90 (whole-tumour Dice 0.21 < 0.5)")
    assert "multifocal" in q.warning
    q = check_quality([0.0], [0.14], [0.97], method="pinn")
    assert "network's own u matches it (Dice 0.97)" in q.warning
    assert "the pinn network's known failure" in q.warning
    assert q.warning.endswith("use --method fd")
    q = check_quality([0.0], [0.17], [0.13], method="bilo")
    assert "network's own u does not match it either (Dice 0.13)" in q.warning
    assert "the bilo network did not learn the scan" in q.warning


def test_results_json_reads_back_as_the_typed_report(two_scans, one_scan) -> None:
    """results.json is written from a FitReport; reading it back gives the same report, and
    the typed fields say what the JSON says (two scans: fitted Dw and rho; one scan: assumed,
    with a posterior)."""
    from gbm.jobs.fit import FitConfig, FitReport

    for _, out in (two_scans, one_scan):
        raw = json.loads((out / "results.json").read_text())
        rep = FitReport.read(out / "results.json")
        assert rep.to_json() == raw
        assert FitReport.from_json(rep.to_json()) == rep
        assert isinstance(rep.config, FitConfig) and rep.config.forecast == (150.0,)
        assert rep.estimates.lambda_mm == raw["estimates"]["lambda_mm"]
        assert [s.dice_whole for s in rep.scans] == [s["dice_whole"] for s in raw["scans"]]
        assert rep.total_solves == sum(raw["solves"].values())
    two = FitReport.read(two_scans[1] / "results.json")
    assert two.uncertainty is None and two.pinn is None and two.plans.volumes is not None
    assert two.estimates.dw_rho_basis == "fitted from the scan dates"
    one = FitReport.read(one_scan[1] / "results.json")
    assert one.uncertainty is not None and one.uncertainty.t0_days is None
    assert one.uncertainty.dw is not None                 # from the assumed age
    # the JSON keeps its order: assumed Dw and rho after the origin's intervals
    keys = list(json.loads((one_scan[1] / "results.json").read_text())["uncertainty"])
    assert keys.index("origin_world_mm") < keys.index("dw")


def test_the_fit_builds_one_brain_mask(two_scans) -> None:
    """The brain mask the plans and the figures use is the geometry's own mask."""
    from gbm.jobs.fit import FitConfig, steps

    patient, _ = two_scans
    inputs = steps.load_inputs(FitConfig(patient=str(patient)))
    from_geometry = inputs.geom.to_full(inputs.geom.mask.astype(np.float32)) > 0.5
    np.testing.assert_array_equal(inputs.brain, from_geometry)
    assert inputs.days == [0.0, 60.0] and len(inputs.regions) == 2


def test_forecast_matches_the_truth(two_scans):
    patient, out = two_scans
    u, aff = _load(out / "u_day210.nii.gz")
    ut, aff_t = _load(patient / "truth" / "u_day210.nii.gz")
    np.testing.assert_allclose(aff, aff_t)
    assert dice(u > 0.25, ut > 0.25) >= 0.9


def test_outputs_on_the_input_grid_and_plans(two_scans):
    patient, out = two_scans
    names = {p.name for p in out.iterdir()}
    assert {"results.json", "log.csv", "panels.png", "misfit.png", "u_day0.nii.gz",
            "u_day60.nii.gz", "u_day210.nii.gz", "plan_standard.nii.gz",
            "plan_model.nii.gz"} <= names
    assert not [n for n in out.parent.iterdir() if n.name.startswith(".")]   # nothing staged
    wm, aff = _load(patient / "tissue_segmentation" / "wm_pbmap.nii.gz")
    std, aff_s = _load(out / "plan_standard.nii.gz")
    mod, _ = _load(out / "plan_model.nii.gz")
    assert std.shape == wm.shape
    np.testing.assert_allclose(aff_s, aff)
    assert std.sum() == mod.sum() > 0                       # same volume, k = |standard|
    # the plans' definitions, checked on the files: standard = core + margin, inside the brain;
    # model = the k highest densities of the brain at the plan day (the last scan, day 60)
    from gbm.model.geometry import brain_mask

    gm, _ = _load(patient / "tissue_segmentation" / "gm_pbmap.nii.gz")
    csf, _ = _load(patient / "tissue_segmentation" / "csf_pbmap.nii.gz")
    brain = brain_mask(wm.astype(float), gm.astype(float), csf.astype(float))
    seg, _ = _load(patient / "tumor_segmentation" / "tumor_seg_day60.nii.gz")
    core = np.isin(seg, (1, 3)) & brain                       # brats2023: necrosis, enhancing
    std, mod = std.astype(bool), mod.astype(bool)
    assert np.all(std[core]) and not np.any(std & ~brain)
    u, _ = _load(out / "u_day60.nii.gz")
    assert not np.any(mod & ~brain)
    rest = brain & ~mod
    if rest.any():   # on this small brain a 15 mm margin can reach the whole brain (then k = all)
        assert u[mod].min() >= u[rest].max()
    else:
        assert np.array_equal(mod, brain)
    r = json.loads((out / "results.json").read_text())
    p = r["plans"]
    for k in ("recurrence_coverage_standard", "recurrence_coverage_model",
              "recurrence_coverage_standard_all", "recurrence_coverage_model_all"):
        assert 0.0 <= p[k] <= 1.0
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + sum(r["solves"].values())         # every solve logged
    assert rows[0].startswith("solve,stage,seconds,misfit")


def test_existing_output_needs_force(two_scans, capsys):
    patient, out = two_scans
    before = (out / "results.json").read_bytes()
    assert main(["fit", "--patient", str(patient), "--out", str(out)]) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == before


def test_one_scan_identifiable_quantities_and_assumed_age(one_scan):
    patient, out = one_scan
    t = _truth(patient)
    r = json.loads((out / "results.json").read_text())
    e = r["estimates"]
    assert math.dist(e["origin_world_mm"], ORIGIN) <= 2.0
    assert e["lambda_mm"] == pytest.approx(t["lambda_mm"], rel=0.10)
    assert e["rho_T"] == pytest.approx(t["rho_T"], rel=0.10)
    # absolute values only through the assumption (here: the true age)
    assert "assumed age" in e["dw_rho_basis"]
    assert e["rho"] == pytest.approx(e["rho_T"] / AGE_ONE, rel=1e-12)
    assert e["dw"] == pytest.approx(e["lambda_mm"] ** 2 * e["rho"], rel=1e-12)
    assert "one scan fixes the origin, lambda" in r["identifiability"]
    assert r["scans"][0]["dice_whole"] >= 0.9 and r["scans"][0]["dice_core"] >= 0.9


def test_posterior_intervals_and_probability_maps(one_scan):
    patient, out = one_scan
    r = json.loads((out / "results.json").read_text())
    unc = r["uncertainty"]
    truth = _truth(patient)
    # the 90 % interval covers the truth (Dw and rho through the assumed age, the true one)
    for k, true in (("lambda_mm", truth["lambda_mm"]), ("rho_t0", truth["rho_T"]),
                    ("dw", truth["dw"]), ("rho", truth["rho"])):
        lo, hi = unc[k]["ci90"]
        assert lo <= unc[k]["median"] <= hi
        assert lo <= true <= hi, (k, lo, true, hi)
    for a, (st, true) in enumerate(zip(unc["origin_world_mm"], ORIGIN)):
        lo, hi = st["ci90"]
        assert lo <= true <= hi, (a, lo, true, hi)
    assert 0 < unc["acceptance"] < 1
    assert r["solves"]["posterior"] > 0
    pm, _ = _load(out / "prob_u0.25_day0.nii.gz")
    assert pm.min() >= 0 and pm.max() <= 1
    vox = np.round(np.linalg.inv(AFF) @ np.r_[ORIGIN, 1.0])[:3].astype(int)
    assert pm[tuple(vox)] == 1.0                       # deep inside the tumour
    assert pm[2, 2, 2] == 0.0                          # outside the brain
    assert (out / "posterior.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case", ["forecast_one_scan", "margin", "assume_two", "no_scan",
                                  "bad_labels", "days", "other_grid", "outside",
                                  "recurrence_grid"])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    wm, gm = _maps(tmp_path)
    seg = np.zeros((N, N, N), dtype=np.uint8)
    seg[30:36, 30:36, 30:36] = 2
    seg[32:34, 32:34, 32:34] = 3
    s1 = write_nifti(tmp_path / "s1.nii.gz", seg, AFF, dtype=np.uint8)
    s2 = write_nifti(tmp_path / "s2.nii.gz", seg, AFF, dtype=np.uint8)
    base = ["fit", "--wm", str(wm), "--gm", str(gm)]
    out = tmp_path / "out"
    args = {
        "forecast_one_scan": base + ["--scan", f"{s1}@0", "--forecast", "100"],
        "margin": base + ["--scan", f"{s1}@0", "--margin-mm", "0"],
        "assume_two": base + ["--scan", f"{s1}@0", "--scan", f"{s2}@30", "--assume-days", "100"],
        "no_scan": base,
        "bad_labels": base + ["--scan", f"{s1}@0", "--labels", "brats1999"],
        "days": base + ["--scan", f"{s1}@10", "--scan", f"{s2}@5"],
    }
    expect = {"forecast_one_scan": "needs --assume-days", "margin": "--margin-mm",
              "assume_two": "for one scan", "no_scan": "--scan", "bad_labels": "brats1999",
              "days": "increasing", "other_grid": "another", "outside": "outside the brain",
              "recurrence_grid": "another"}
    if case == "other_grid":
        aff2 = AFF.copy()
        aff2[0, 3] += 5
        s3 = write_nifti(tmp_path / "s3.nii.gz", seg, aff2, dtype=np.uint8)
        args[case] = base + ["--scan", f"{s3}@0"]
    elif case == "outside":
        far = np.zeros_like(seg)
        far[0:6, 0:6, 0:6] = 2
        s4 = write_nifti(tmp_path / "s4.nii.gz", far, AFF, dtype=np.uint8)
        args[case] = base + ["--scan", f"{s4}@0"]
    elif case == "recurrence_grid":
        rec = write_nifti(tmp_path / "rec.nii.gz", seg[:-1], AFF, dtype=np.uint8)
        args[case] = base + ["--scan", f"{s1}@0", "--recurrence", str(rec)]
    code = main(args[case] + ["--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("gbm: error: ") and err.count("\n") == 1, err
    assert expect[case] in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_interrupted_fit_resumes_from_its_last_stage_and_is_deterministic(tmp_path, monkeypatch,
                                                                        capsys):
    """Ctrl-C in the local stage leaves no output but a checkpoint of the global stage;
    --resume takes the global stage from it, and the result equals an uninterrupted run's.
    --resume with nothing to resume says so on stderr and starts a new fit."""
    import scipy.optimize
    from gbm.jobs.fit.run import FitConfig, run_fit

    patient = _synth(tmp_path, "0", AGE_ONE)
    cfg = FitConfig(patient=str(patient), global_solves=60, local_solves=10)
    out = tmp_path / "fit"
    real = scipy.optimize.least_squares

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(scipy.optimize, "least_squares", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_fit(cfg, out, printer=lambda m: None)
    assert not out.exists()
    ck = tmp_path / ".fit.checkpoint.json"
    assert set(json.loads(ck.read_text())["stages"]) == {"global"}
    monkeypatch.setattr(scipy.optimize, "least_squares", real)
    capsys.readouterr()
    resumed = run_fit(cfg, out, printer=lambda m: None, resume=True)
    assert "nothing to resume" not in capsys.readouterr().err
    assert resumed["resumed_stages"] == ["global"]
    assert not ck.exists()
    fresh = run_fit(cfg, tmp_path / "fresh", printer=lambda m: None, resume=True)
    assert capsys.readouterr().err == (f"gbm fit: note: --resume: nothing to resume in "
                                       f"{tmp_path / 'fresh'} (no checkpoint), starting a new "
                                       "fit\n")
    assert fresh["resumed_stages"] == []
    assert fresh["search"]["x"] == resumed["search"]["x"]          # bit-identical estimate
    assert fresh["solves"] == resumed["solves"]
    log_a = (out / "log.csv").read_text().splitlines()
    log_b = (tmp_path / "fresh" / "log.csv").read_text().splitlines()
    assert len(log_a) == len(log_b)


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path) -> None:
    """A checkpoint is taken only by a run with the same settings and inputs; otherwise the
    checkpoint says why there is nothing to resume."""
    from gbm.jobs.fit.checkpoint import FileCheckpoint
    from gbm.jobs.fit.config import FitConfig

    wm, gm = _maps(tmp_path)
    cfg = FitConfig(wm=str(wm), gm=str(gm), scans=(f"{wm}@0",), global_solves=60)
    out = tmp_path / "fit"
    assert FileCheckpoint(out, cfg, resume=True).nothing_to_resume == "no checkpoint"
    FileCheckpoint(out, cfg, resume=False).save("global", {"x": [1.0]})
    same = FileCheckpoint(out, cfg, resume=True)
    assert same.nothing_to_resume is None and same.load("global") == {"x": [1.0]}
    assert same.resumed == ["global"]
    other = FileCheckpoint(out, FitConfig(wm=str(wm), gm=str(gm), scans=(f"{wm}@0",),
                                          global_solves=61), resume=True)
    assert other.load("global") is None
    assert other.nothing_to_resume == "its checkpoint is for other settings or inputs"
    assert FileCheckpoint(out, cfg, resume=False).nothing_to_resume is None  # not asked
