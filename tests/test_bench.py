"""`gbm bench` end to end on a tiny configuration: every table with its columns, every figure,
physically sensible numbers for the FD-based fit, resume, and one-line errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
from gbm.cli import main
from gbm.jobs.bench import BenchConfig, run_bench
from gbm.jobs.bench.metrics import time_to_within
from gbm.jobs.bench.report import ACCURACY_COLUMNS, COMPARISON_COLUMNS, TOLERANCE_COLUMNS

TINY = BenchConfig(domains=("disk", "slice"), noise=(0.0, 0.05), pinn_epochs=40,
                   pinn_fit_iters=10, check_every=5, lbfgs_points=800, extrapolate_epochs=10,
                   threads=1, compile=False, cost_model_3d=True)

FIGURES = ["errors_vs_time_disk.png", "errors_vs_time_slice.png", "fig10_slice_fd_truth.png",
           "fig11_slice_pinn.png", "fig13_14_slice_parameters.png", "fig15_slice_errors.png",
           "fig4_disk_profiles.png", "fig5_6_disk_parameters.png", "fig7_disk_errors.png",
           "fig8_disk_extrapolation.png"]


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "b"
    rep = run_bench(TINY, out, printer=lambda m: None, argv=["bench", "--tiny"])
    return out, rep


def _tables(md: str) -> list[list[str]]:
    """Header rows of the Markdown tables."""
    heads = []
    lines = md.splitlines()
    for a, b in zip(lines, lines[1:]):
        if a.startswith("| ") and b.startswith("|---"):
            heads.append([c.strip() for c in a.strip("|").split("|")])
    return heads


def test_report_tables_and_figures(tiny_bench) -> None:
    out, rep = tiny_bench
    md = (out / "report.md").read_text()
    heads = _tables(md)
    for cols in (TOLERANCE_COLUMNS, COMPARISON_COLUMNS, ACCURACY_COLUMNS):
        assert heads.count(cols) == 2, cols  # one per domain
    assert ["2D spacing [mm]", "steps", "time", "max abs diff", "MSE", "burden diff %"] in heads
    assert heads[-1][0] == "case"  # the cost model
    # the tolerance tables list the paper's tolerances with the paper's (quoted) rows
    assert "| 0.04 |" in md and "700,000" in md and "| 0.07 |" in md and "663,000" in md
    for name in FIGURES:
        png = (out / "figures" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
        assert f"(figures/{name})" in md
    assert sorted(p.name for p in (out / "figures").iterdir()) == FIGURES
    # report.json holds the machine, versions, seed and every run
    j = json.loads((out / "report.json").read_text())
    assert j == json.loads(json.dumps(rep))
    assert j["meta"]["config"]["seed"] == 0 and "cpu" in j["meta"]["versions"]
    assert {r["noise"] for r in j["domains"]["disk"]["runs"]} == {0.0, 0.05}
    cases = [c["case"] for c in j["cost_model"]]
    assert any(c.startswith("3D atlas") for c in cases) and len(cases) == 3
    assert j["conclusions"] and all(isinstance(c, str) for c in j["conclusions"])


def test_fd_fit_and_ground_truth_numbers_are_physical(tiny_bench) -> None:
    _, rep = tiny_bench
    for domain in ("disk", "slice"):
        clean = rep["domains"][domain]["runs"][0]
        assert clean["noise"] == 0
        for key in ("dw_rho", "dw_rho_seed"):
            f = clean["fd"][key]
            assert abs(f["dw_error_pct"]) < 1.0 and abs(f["rho_error_pct"]) < 1.0, (domain, f)
        assert clean["fd"]["dw_rho_seed"]["seed_error_mm"] < 0.5
        # the PINN ran its whole (tiny) budget and reports the same truth
        p = clean["pinn"]
        assert p["epochs"] == TINY.pinn_epochs and p["truth"] == {"dw": 0.13, "rho": 0.025}
    # the radial truth against the 2D solver: refining 1 -> 0.5 mm shrinks the difference
    r = rep["domains"]["disk"]["extras"]["radial_vs_2d"]
    e1, e05 = r[0]["day300"], r[1]["day300"]
    assert e05["max_abs_diff"] < 0.5 * e1["max_abs_diff"]
    assert abs(e05["burden_rel_diff"]) < 0.5 * abs(e1["burden_rel_diff"])
    # extrapolation: the FD solver at the FD-fitted parameters tracks the truth to 450 d
    ext = rep["domains"]["disk"]["extras"]["extrapolation"]
    assert ext["fd"]["mse"] < 1e-4 and ext["horizon2"] == 450.0


def test_resume_reuses_finished_runs_and_continues_an_interrupted_one(tiny_bench) -> None:
    out, rep = tiny_bench
    pinn = out / "runs" / "slice_noise5" / "pinn"
    (pinn / "results.json").unlink()  # as if interrupted after its last checkpoint
    stamp = (out / "runs" / "disk_noise0" / "pinn" / "results.json").stat().st_mtime_ns
    (out / "report.md").unlink()
    lines: list[str] = []
    rep2 = run_bench(BenchConfig(), out, resume=True, printer=lines.append,
                     argv=["bench", "--resume"])
    # only the interrupted run trained again, and it continued from its checkpoint
    resumed = [m for m in lines if "resuming" in m]
    assert len(resumed) == 1 and "slice_noise5" in resumed[0]
    assert f"at epoch {TINY.pinn_epochs}" in resumed[0]
    assert not any("gbm infer: disk" in m or "FD fit" in m for m in lines)
    assert (out / "report.md").is_file()
    assert (out / "runs" / "disk_noise0" / "pinn" / "results.json").stat().st_mtime_ns == stamp
    a = rep["domains"]["slice"]["runs"][1]["pinn"]
    b = rep2["domains"]["slice"]["runs"][1]["pinn"]
    assert (b["dw"], b["rho"], b["epochs"]) == (a["dw"], a["rho"], a["epochs"])
    assert rep2["meta"]["config"] == rep["meta"]["config"]  # the stored settings, not BenchConfig()


FD_FIGURES = ["errors_vs_time_disk.png", "errors_vs_time_slice.png", "fig10_slice_fd_truth.png",
              "fig8_disk_extrapolation.png"]


def test_fd_parts_alone_give_the_same_fd_numbers(tiny_bench, tmp_path) -> None:
    """``methods=("fd",)`` (``gbm bench --methods fd``, no torch needed): the FD-based fits,
    checks and figures only, with the same FD numbers as in the study with the PINN."""
    _, full = tiny_bench
    cfg = dataclasses.replace(TINY, noise=(0.0,), methods=("fd",), fd_fit_seed=False,
                              cost_model_3d=False)
    out = tmp_path / "b"
    rep = run_bench(cfg, out, printer=lambda m: None, argv=["bench", "--methods", "fd"])
    md = (out / "report.md").read_text()
    heads = _tables(md)
    assert TOLERANCE_COLUMNS not in heads  # the Eq. 11 tables are the PINN's
    assert heads.count(COMPARISON_COLUMNS) == 2 and heads.count(ACCURACY_COLUMNS) == 2
    assert sorted(p.name for p in (out / "figures").iterdir()) == FD_FIGURES
    assert rep["meta"]["device"] == "none (no PINN)" and "torch" not in rep["meta"]["versions"]
    for domain in ("disk", "slice"):
        (run,) = rep["domains"][domain]["runs"]
        assert run["pinn"] is None
        f, g = run["fd"]["dw_rho"], full["domains"][domain]["runs"][0]["fd"]["dw_rho"]
        assert (f["dw"], f["rho"], f["solves"]) == (g["dw"], g["rho"], g["solves"])
    # the extrapolation's FD side, on the region gbm extrapolate would use at the FD estimate
    ext = rep["domains"]["disk"]["extras"]["extrapolation"]
    f = rep["domains"]["disk"]["runs"][0]["fd"]["dw_rho"]
    front = 2 * (f["dw"] * f["rho"]) ** 0.5  # Fisher front speed, mm/day
    radius = rep["domains"]["disk"]["region_radius_mm"] + 1.25 * front * (450 - 300)
    assert "pinn" not in ext and ext["fd"]["mse"] < 1e-4
    assert ext["radius_mm"] == pytest.approx(radius, rel=1e-12)
    rows = [r for r in md.splitlines() if r.startswith("| 0 |") or r.startswith("| any |")]
    assert rows and not any("PINN" in r.split("|")[2] for r in rows)
    assert "the PINN was not run (--methods fd)" in rep["conclusions"][0]


def _numbers(rep: dict) -> list:
    """The estimates of a report (no wall times)."""
    out = []
    for d in rep["domains"].values():
        for r in d["runs"]:
            out.append((r["pinn"]["dw"], r["pinn"]["rho"], r["pinn"]["epochs"],
                        [t["epoch"] for t in r["pinn"]["tolerance_table"]]))
            out += [(f["dw"], f["rho"], f["solves"]) for f in r["fd"].values()]
        out.append(d["extras"].get("extrapolation", {}).get("pinn", {}).get("mse"))
    return out


def test_same_seed_same_numbers_with_the_paper_recipe(tmp_path) -> None:
    """Deterministic on CPU for a seed (here with the paper's Adam recipe, halving half-way)."""
    cfg = BenchConfig(domains=("disk",), noise=(0.0,), pinn_optimizer="adam", pinn_epochs=30,
                      check_every=5, extrapolate_epochs=5, threads=1, compile=False,
                      cost_model_3d=False, fd_fit_seed=False)
    a = run_bench(cfg, tmp_path / "a", printer=lambda m: None)
    b = run_bench(cfg, tmp_path / "b", printer=lambda m: None)
    assert _numbers(a) == _numbers(b)
    run_cfg = json.loads((tmp_path / "a" / "runs" / "disk_noise0" / "pinn" / "config.json")
                         .read_text())
    assert run_cfg["optimizer"] == "adam" and run_cfg["halve_every"] == 15
    assert a["domains"]["disk"]["runs"][0]["pinn"]["epochs"] == 30
    c = run_bench(dataclasses.replace(cfg, seed=1), tmp_path / "c", printer=lambda m: None)
    assert _numbers(c) != _numbers(a)


def test_time_to_within() -> None:
    t = [0.0, 1.0, 2.0, 3.0, 4.0]
    assert time_to_within(t, [30, 10, 20, 4, 3], [1, 1, 1, 1, 1], 15) == 3.0
    assert time_to_within(t, [30, 10, 9, 4, 3], [1, 1, 1, 1, 1], 15) == 1.0
    assert time_to_within(t, [30, 10, 9, 4, 16], [1, 1, 1, 1, 1], 15) is None
    assert time_to_within(t, [1, 1, 1, 1, 1], [1, 1, 1, 1, -40], 15) is None


@pytest.mark.parametrize("argv, message", [
    (["--domains", "disk,brain"], "--domains must be a comma-separated subset of disk,slice"),
    (["--noise", "-0.1"], "--noise levels must be in [0, 1)"),
    (["--pinn-epochs", "0"], "--pinn-epochs must be > 0"),
    (["--methods", "pinn"], "--methods must be fd or fd,pinn, got pinn"),
    (["--resume"], "holds no interrupted study"),
])
def test_bench_bad_input_one_line(tmp_path, capsys, argv, message) -> None:
    out = tmp_path / "b"
    assert main(["bench", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gbm: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_bench_refuses_existing_output(tmp_path, capsys) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["bench", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists; use --force" in err and (out / "keep.txt").is_file()


def test_patient_study_fd_alone(tmp_path) -> None:
    """``gbm bench --study patient --methods fd``: the FD-based fits only (no torch needed),
    checked against the synthetic truth; each fit in its own process (its own peak memory)."""
    from gbm.jobs.bench.patient_study import PatientStudyConfig, run_patient_study

    cfg = PatientStudyConfig(downsample=4, cases=("one",), methods=("fd",))
    rep = run_patient_study(cfg, tmp_path / "s", printer=lambda m: None)
    (row,) = rep["rows"]
    assert (row["case"], row["method"], row["network_dice"]) == ("one", "fd", None)
    assert min(row["dice"][0]) >= 0.95 and row["forecast_dice"] >= 0.95
    assert abs(row["lambda_err_pct"]) < 5 and abs(row["rhoT_err_pct"]) < 5
    truth = json.loads((tmp_path / "s" / "patients" / "one" / "truth.json").read_text())
    assert row["lambda_mm"] == pytest.approx(truth["lambda_mm"] * (1 + row["lambda_err_pct"] / 100))
    assert row["origin_err_mm"] < 4.0  # one 4 mm voxel
    assert 0.05 < row["peak_gb"] < rep["study_peak_rss_gb"] + 4.0   # the fit's own process
    assert "torch" not in rep["machine"]
    md = (tmp_path / "s" / "report.md").read_text()
    assert md.startswith("# Patient study: fd on the same synthetic patients")
    assert "Use **fd** for parameters, forecasts and plans" in md
    assert sorted(p.name for p in (tmp_path / "s" / "fits").iterdir()) == ["one-fd"]


def test_patient_study_methods_are_checked(tmp_path) -> None:
    from gbm.errors import InputError
    from gbm.jobs.bench.patient_study import PatientStudyConfig, run_patient_study

    with pytest.raises(InputError, match="--methods must be a comma-separated subset of "
                       "fd,pinn,pinn-gbm,bilo"):
        run_patient_study(PatientStudyConfig(methods=("cnn",)), tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_patient_study_refused_method_row_and_resume(tmp_path, monkeypatch) -> None:
    """A method gbm fit refuses gets a row saying why (the study goes on); ``resume`` keeps the
    rows of fits with the same settings and reruns a fit whose settings changed."""
    from gbm.jobs.bench import patient_study as ps

    real = ps.refusal
    monkeypatch.setattr(ps, "refusal", lambda kw: "--method bilo: not on this install (test)"
                        if kw["method"] == "bilo" else real(kw))
    cfg = ps.PatientStudyConfig(downsample=4, cases=("one",), methods=("fd", "bilo"),
                                isolate=False)
    out = tmp_path / "s"
    rep = ps.run_patient_study(cfg, out, printer=lambda m: None)
    fd, bilo = rep["rows"]
    assert bilo == {"case": "one", "method": "bilo",
                    "skipped": "--method bilo: not on this install (test)"}
    assert fd["method"] == "fd" and abs(fd["lambda_err_pct"]) < 5
    md = (out / "report.md").read_text()
    assert "| one | bilo | not run: --method bilo: not on this install (test) |" in md
    assert sorted(p.name for p in (out / "fits").iterdir()) == ["one-fd"]

    def no_fit(*a, **k):
        raise AssertionError("a kept row was fitted again")

    monkeypatch.setattr(ps, "_run_one", no_fit)
    again = ps.run_patient_study(cfg, out, printer=lambda m: None, resume=True)
    assert again["rows"][0] == json.loads(json.dumps(fd))      # kept, to the digit
    with pytest.raises(AssertionError, match="fitted again"):  # another seed: refitted
        ps.run_patient_study(dataclasses.replace(cfg, seed=1), out, printer=lambda m: None,
                             resume=True)


def _row(method, dice_whole, lam_pct, origin, net=None):
    return {"case": "one", "method": method, "dice": [(0.9, dice_whole)],
            "network_dice": net, "origin_err_mm": origin, "lambda_err_pct": lam_pct,
            "rhoT_err_pct": 1.0, "dw_err_pct": None, "rho_err_pct": None,
            "forecast_dice": dice_whole, "wall_s": 10.0, "peak_gb": 1.0}


def test_patient_study_recommendation_follows_the_numbers() -> None:
    """report.md's "which method for what" comes from the rows: the method that meets issue
    20's targets is recommended, one whose FD model misses the scan is ruled out for
    parameters, and a network that fits the segmentation anyway is named as such."""
    from gbm.jobs.bench.patient_study import meets_targets, recommendation

    good, bad = _row("fd", 0.97, 2.0, 0.1), _row("pinn", 0.2, -60.0, 12.0, [(0.95, 0.97)])
    assert all(meets_targets(good).values())
    assert meets_targets(bad) == {"dice": False, "origin": False, "lambda": False,
                                  "rhoT": True}
    text = "\n".join(recommendation([bad, good, {"case": "one", "method": "bilo",
                                                  "skipped": "refused"}]))
    assert "Use **fd** for parameters, forecasts and plans" in text
    assert "Not for parameters, forecasts or plans: pinn" in text
    assert "pinn's own network reproduces the segmentations with median whole-tumour Dice " \
        "0.970 while its parameters do not" in text
    assert "bilo" not in text       # a method that did not run is not ranked


def test_patient_study_other_solver_case_uses_another_model() -> None:
    """The other-solver patient: Dw/Dg 5, arithmetic face mean, issue 18's start, 1 mm blur,
    two scans; the fits keep gbm's model (Dw/Dg 10)."""
    from pathlib import Path

    from gbm.jobs.bench.patient_study import PatientStudyConfig, fit_kwargs, synth_config

    cfg = PatientStudyConfig()
    s = synth_config(cfg, "other-solver")
    assert (s.ratio, s.face_mean, s.start_peak, s.start_cutoff, s.blur_mm) == (
        5.0, "arithmetic", 0.5, 0.1, 1.0)
    assert s.scan_days == (0.0, 90.0) and s.label_noise == 0.0
    truth = {"recurrence_day": 240.0, "scan_days": [0.0, 90.0], "age_days": 400.0}
    kw = fit_kwargs(cfg, "pinn-gbm", Path("p"), truth)
    assert (kw["method"], kw["recipe"], kw["forecast"]) == ("pinn", "pinn-gbm", [150.0])
    assert "ratio" not in kw and "assume_days" not in kw and kw["patient"] == "p"
