"""PINN commands: bad observation inputs give one-line errors; a tiny run writes its outputs;
an interrupted run resumed from its checkpoint continues bit-identically on CPU."""

from __future__ import annotations

import csv
import dataclasses
import json
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from gbm.cli import main
from gbm.pinn.checkpoint import load_checkpoint
from gbm.pinn.config import InferConfig
from gbm.pinn.inverse import infer
from PIL import Image

TINY = ["--problem", "disk", "--threads", "1", "--n-obs", "500", "--check-every", "5",
        "--window", "2"]
TINY_CFG = dict(problem="disk", threads=1, n_obs=500, check_every=5, window=2, width=12, depth=2,
                fourier=4, n_colloc=200, time_budget=None, checkpoint_every=5,
                progress_seconds=1e9, report_days=(300.0,), compile=False, optimizer="adam")


def _err(capsys) -> str:
    return capsys.readouterr().err.strip()


#: The disk problem's NIfTI grid: 1 mm voxels, world origin at the disk centre (local (60, 60)).
DISK_AFFINE = np.array([[1.0, 0, 0, -60.0], [0, 1.0, 0, -60.0], [0, 0, 1.0, 0.0], [0, 0, 0, 1]])


def _png(path) -> np.ndarray:
    """The PNG's pixels, after checking it is a real figure: not blank, many colours."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    px = np.asarray(Image.open(path).convert("RGB"))
    assert px.shape[0] >= 200 and px.shape[1] >= 200, px.shape
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 20, path  # lines/colours drawn
    return px


def _disk_u(path, radius_mm: float) -> np.ndarray:
    """A PINN density NIfTI of the disk problem: on the disk grid, in [0, 1], zero beyond the
    trained region (``radius_mm`` around the centre) and nonzero inside it."""
    img = nib.load(str(path))
    assert img.shape == (121, 121, 1)
    np.testing.assert_array_equal(img.affine, DISK_AFFINE)
    u = np.asarray(img.dataobj, dtype=float)[:, :, 0]
    r = np.hypot(*np.meshgrid(np.arange(121) - 60.0, np.arange(121) - 60.0, indexing="ij"))
    assert u.min() >= 0 and u.max() <= 1
    assert np.all(u[r > radius_mm + 1e-9] == 0) and u[r <= radius_mm - 1].max() > 0
    return u


CSV = "gbm: error: --observations {f}: "


@pytest.mark.parametrize(
    "rows, message",
    [
        (["x,y,z,t,u", "0,0,0,100,0.5", "1,1,0,100,nan"], "contains NaN or Inf values"),
        (["x,y,z,t,u", "0,0,0,100,1.5"],
         "tumour densities must be in [0, 1], found range [1.5, 1.5]"),
        (["x,y,z,t,u", "0,0,0,0,0.5"], "observation time 0 d is outside (0, T = 300 d]"),
        (["x,y,z,t,u", "0,0,0,301,0.5"], "observation time 301 d is outside (0, T = 300 d]"),
        (["x,y,z,t,u", "55,0,0,100,0.1"], r"point \(.*55.*\) mm \(row 2\) is outside the brain"),
        (["x,y,z,t,u", "500,0,0,100,0.1"],
         r"point \(.*500.*\) mm \(row 2\) is outside the brain"),
        (["a,b,c", "1,2,3"], "header must be x,y,z,t,u (or x,y,t,u for a 2D slice), got a,b,c"),
        (["x,y,z,t,u", "1,2,zz,4,0.1"], "non-numeric value in the data rows"),
    ],
)
def test_bad_csv_observations(tmp_path, capsys, rows, message) -> None:
    f = tmp_path / "obs.csv"
    f.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["infer", *TINY, "--observations", str(f), "--out", str(out)]) == 2
    err = _err(capsys)
    pattern = message if message.startswith("point") else re.escape(message)
    assert re.fullmatch(re.escape(CSV.format(f=f)) + pattern, err), err
    assert not out.exists()


def test_missing_observation_file(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    csv, nii = tmp_path / "nope.csv", tmp_path / "nope.nii.gz"
    assert main(["infer", *TINY, "--observations", str(csv), "--out", str(out)]) == 2
    assert _err(capsys) == f"gbm: error: --observations {csv}: file not found"
    assert main(["infer", *TINY, "--observations", str(nii), "--days", "100",
                 "--out", str(out)]) == 2
    assert _err(capsys) == f"gbm: error: --observations {nii}: file not found: {nii}"
    assert not out.exists()


def _nifti(path, data) -> None:
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = (-60.0, -60.0, 0.0)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), aff), str(path))


@pytest.mark.parametrize(
    "shape, fill, days, message",
    [
        ((100, 121, 1), 0.2, ["100"], "--observations {f}: shape (100, 121, 1) differs from the "
         "tissue maps' grid (121, 121, 1)"),
        ((121, 121, 1), np.nan, ["100"], "--observations {f}: {f} contains NaN or Inf values"),
        ((121, 121, 1), 2.0, ["100"],
         "--observations {f}: tumour densities must be in [0, 1], found range [2, 2]"),
        ((121, 121, 1), 0.2, ["400"], "--days: observation time 400 d is outside (0, T = 300 d]"),
        ((121, 121, 1), 0.2, ["100", "200"],
         "--days: 2 day(s) given for 1 observation map(s); give one day per map"),
    ],
)
def test_bad_nifti_observations(tmp_path, capsys, shape, fill, days, message) -> None:
    f = tmp_path / "u.nii.gz"
    _nifti(f, np.full(shape, fill))
    out = tmp_path / "run"
    assert main(["infer", *TINY, "--observations", str(f), "--days", *days,
                 "--out", str(out)]) == 2
    assert _err(capsys) == "gbm: error: " + message.format(f=f)
    assert not out.exists()


def test_nifti_observations_need_days(tmp_path, capsys) -> None:
    f = tmp_path / "u.nii.gz"
    _nifti(f, np.full((121, 121, 1), 0.2))
    assert main(["infer", *TINY, "--observations", str(f), "--out", str(tmp_path / "r")]) == 2
    assert _err(capsys) == ("gbm: error: --observations with NIfTI maps needs --days (one day "
                            "per map)")


LBFGS = dict(optimizer="lbfgs", fit_iters=6, redraw_every=7, lbfgs_iters_per_step=3,
             lbfgs_points=300)


@pytest.mark.parametrize("recipe", [{}, LBFGS], ids=["adam", "lbfgs"])
def test_resume_is_bit_identical_on_cpu(tmp_path, recipe) -> None:
    cfg = InferConfig(**{**TINY_CFG, **recipe}, max_epochs=22)  # type: ignore[arg-type]
    lines: list[str] = []
    full = infer(cfg, tmp_path / "full", printer=lines.append)
    # interrupted run: stop at epoch 10 (a checkpoint epoch), then resume to 20
    half = dataclasses.replace(cfg, max_epochs=11)
    infer(half, tmp_path / "part", printer=lines.append)
    resumed = infer(cfg, tmp_path / "part", resume=tmp_path / "part", printer=lines.append)
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] >= 22
    for k in a["net"]:
        assert torch.equal(a["net"][k], b["net"][k]), k
    assert torch.equal(a["log_dw"], b["log_dw"]) and torch.equal(a["log_rho"], b["log_rho"])
    if recipe:
        assert a["phase"] == b["phase"] == "lbfgs"
        for k in ("d", "t", "prev_loss"):
            sa, sb = a["lbfgs"]["state"][0][k], b["lbfgs"]["state"][0][k]
            assert torch.equal(torch.as_tensor(sa), torch.as_tensor(sb)), k
    for sa, sb in zip(a["opt"]["state"].values(), b["opt"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    cols = ["epoch", "loss", "loss_res", "loss_data", "dw", "rho"]
    np.testing.assert_array_equal([[r[c] for c in cols] for r in a["log"]],
                                  [[r[c] for c in cols] for r in b["log"]])
    assert full["dw"] == resumed["dw"] and full["rho"] == resumed["rho"]


def test_infer_writes_outputs(tmp_path) -> None:
    cfg = InferConfig(**TINY_CFG, max_epochs=10, tolerances=(0.5, 0.01))  # type: ignore[arg-type]
    out = tmp_path / "run"
    res = infer(cfg, out, printer=lambda m: None)
    js = json.loads((out / "results.json").read_text())
    assert js["epochs"] == 10 and js["truth"] == {"dw": 0.13, "rho": 0.025}
    assert js["device"] == "cpu" and js["stopped"] == "max_epochs"
    # the estimates are the checkpoint's parameters; the errors are against the truth
    st = load_checkpoint(out / "checkpoint.pt")
    assert st["epoch"] == 10
    assert js["dw"] == res["dw"] == pytest.approx(float(torch.exp(st["log_dw"])), rel=1e-6)
    assert js["rho"] == pytest.approx(float(torch.exp(st["log_rho"])), rel=1e-6)
    assert js["dw_error_pct"] == pytest.approx(100 * (js["dw"] / 0.13 - 1), rel=1e-9)
    assert js["rho_error_pct"] == pytest.approx(100 * (js["rho"] / 0.025 - 1), rel=1e-9)
    # the tolerance table: 0.5 met at the last check with the final estimates, 0.01 not
    t_met, t_not = js["tolerance_table"]
    assert (t_met["tol"], t_met["epoch"], t_met["dw"]) == (0.5, 10, js["dw"])
    assert (t_not["tol"], t_not["epoch"], t_not["dw"]) == (0.01, None, None)
    table = (out / "table.md").read_text().splitlines()
    assert table[2].startswith("| 0.5 | 10 | ") and f"| {js['dw']:.3g} |" in table[2]
    assert table[3].startswith("| 0.01 | not reached |")
    # log.csv: the checks at epochs 0, 5, 10, from the initial guess to the final estimates
    rows = list(csv.DictReader((out / "log.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [0, 5, 10]
    assert (float(rows[0]["dw"]), float(rows[0]["rho"])) == (cfg.dw0, cfg.rho0)
    assert float(rows[-1]["dw"]) == pytest.approx(js["dw"], rel=1e-5)
    assert float(rows[-1]["loss"]) == pytest.approx(js["final_loss"], rel=1e-5)
    u = _disk_u(out / "u_pinn_day300.nii.gz", js["problem"]["radius"])
    m = js["u_vs_reference"]["300"]
    assert 0 < m["mse"] <= m["max_abs"] ** 2 and m["max_abs"] <= 1
    assert u.max() <= 1
    for name in ["parameters.png", "errors.png", "loss.png", "u_pinn.png"]:
        _png(out / name)
    # refuses to overwrite without --force
    from gbm.errors import InputError

    with pytest.raises(InputError, match="exists"):
        infer(cfg, out, printer=lambda m: None)


def test_pinn_forward_and_extrapolate(tmp_path, capsys) -> None:
    """The forward and extrapolation commands on a tiny disk problem: what they write is what
    they report."""
    from gbm.pinn.config import ExtrapolateConfig, ForwardPinnConfig
    from gbm.pinn.forward import extrapolate, load_network, pinn_forward
    from gbm.problem.density.build import build_problem, reference_grid

    fcfg = ForwardPinnConfig(problem="disk", horizon=100.0, width=12, depth=2, fourier=4,
                             n_colloc=200, lbfgs_points=300, adam_epochs=10, lbfgs_iters=10,
                             check_every=5, threads=1, compile=False, report_days=(100.0,),
                             progress_seconds=1e9, time_budget=None)
    res = pinn_forward(fcfg, tmp_path / "fwd", printer=lambda m: None)
    js = json.loads((tmp_path / "fwd" / "results.json").read_text())
    assert js["epochs"] == res["epochs"] >= 20 and js["u_vs_fd"] == res["u_vs_fd"]
    assert js["config"]["dw"] == 0.13 and js["config"]["horizon"] == 100.0
    rows = list(csv.DictReader((tmp_path / "fwd" / "log.csv").read_text().splitlines()))
    assert int(rows[-1]["epoch"]) == js["epochs"]
    assert float(rows[-1]["loss"]) == pytest.approx(js["final_loss"], rel=1e-5)
    # the NIfTI holds the u whose MSE against the FD solution results.json reports
    u = _disk_u(tmp_path / "fwd" / "u_pinn_day100.nii.gz", js["radius_mm"])
    problem = build_problem(fcfg, with_observations=False)
    ref, inside = reference_grid(problem)(100.0), problem.domain.phi >= 0.5
    diff = (u.reshape(ref.shape) - ref)[inside]
    m = js["u_vs_fd"]["100"]
    assert np.mean(diff ** 2) == pytest.approx(m["mse"], rel=1e-4)
    assert np.abs(diff).max() == pytest.approx(m["max_abs"], rel=1e-4)
    _png(tmp_path / "fwd" / "u_pinn.png")
    _png(tmp_path / "fwd" / "loss.png")
    net = load_network(tmp_path / "fwd" / "checkpoint.pt")
    assert net.horizon == 100.0
    # a tiny inference run, then its extrapolation to day 150 with the parameters held fixed
    icfg = InferConfig(**{**TINY_CFG, "horizon": 100.0, "report_days": (100.0,)},
                       max_epochs=10)  # type: ignore[arg-type]
    infer(icfg, tmp_path / "inf", printer=lambda m: None)
    ecfg = ExtrapolateConfig(horizon2=150.0, adam_epochs=0, lbfgs_iters=10, lbfgs_points=300,
                             check_every=5, threads=1, compile=False, progress_seconds=1e9,
                             time_budget=None)
    ext = extrapolate(tmp_path / "inf", ecfg, tmp_path / "ext", printer=lambda m: None)
    st = load_checkpoint(tmp_path / "inf" / "checkpoint.pt")
    dw, rho = float(torch.exp(st["log_dw"])), float(torch.exp(st["log_rho"]))
    ejs = json.loads((tmp_path / "ext" / "results.json").read_text())
    assert ejs["dw"] == ext["dw"] == pytest.approx(dw, rel=1e-6)
    assert ejs["rho"] == pytest.approx(rho, rel=1e-6)
    assert (ejs["horizon"], ejs["horizon2"]) == (100.0, 150.0)
    assert ejs["truth"] == {"dw": 0.13, "rho": 0.025}
    assert 0 <= ejs["mse_vs_fd"] <= 1
    # the region widens by the Fisher front's travel 2 sqrt(Dw rho) (T2 - T), with margin 1.25
    radius = json.loads((tmp_path / "inf" / "results.json").read_text())["problem"]["radius"]
    assert ejs["radius_mm"] == pytest.approx(radius + 1.25 * 2 * np.sqrt(dw * rho) * 50.0)
    # snapshots at the three days splitting (T, T2]
    assert sorted(ejs["u_vs_fd"]) == ["116.667", "133.333", "150"]
    _disk_u(tmp_path / "ext" / "u_extrapolated_day150.nii.gz", ejs["radius_mm"])
    # CLI: a bad --run folder is a one-line error
    assert main(["extrapolate", "--run", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "e2")]) == 2
    assert _err(capsys) == (f"gbm: error: --run: no checkpoint.pt in {tmp_path / 'nope'} (run "
                            "`gbm infer` first)")
    assert not (tmp_path / "e2").exists()


def test_config_file_and_cli_resume(tmp_path, capsys) -> None:
    """--config TOML values apply (flags override them); --resume continues a run from the CLI."""
    toml = tmp_path / "pinn.toml"
    toml.write_text('problem = "disk"\nwidth = 12\ndepth = 2\nfourier = 4\nn_colloc = 200\n'
                    'lbfgs_points = 300\nfit_iters = 4\nn_obs = 400\ncompile = false\n'
                    'max_epochs = 30\nreport_days = [300.0]\ncheckpoint_every = 5\n')
    out = tmp_path / "run"
    assert main(["infer", "--config", str(toml), "--max-epochs", "8", "--check-every", "4",
                 "--threads", "1", "--out", str(out)]) == 0
    js = json.loads((out / "results.json").read_text())
    c = js["config"]
    assert c["max_epochs"] == 8 and c["check_every"] == 4 and c["threads"] == 1   # flags
    assert (c["width"], c["n_obs"], c["report_days"]) == (12, 400, [300.0])      # TOML
    assert c["dw_true"] == InferConfig().dw_true                                   # default
    assert js["epochs"] == 8 and js["problem"]["n_observations"] == 400
    assert (out / "u_pinn_day300.nii.gz").is_file()
    assert main(["infer", "--resume", str(out), "--max-epochs", "16"]) == 0
    js = json.loads((out / "results.json").read_text())
    assert js["epochs"] == 16 and js["config"]["width"] == 12 and js["config"]["max_epochs"] == 16
    epochs = [int(r["epoch"]) for r in csv.DictReader((out / "log.csv").read_text().splitlines())]
    assert epochs[:3] == [0, 4, 8] and epochs[-1] == 16 and epochs == sorted(set(epochs))
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_setting = 1\n")
    assert main(["infer", "--config", str(bad), "--out", str(tmp_path / "r2")]) == 2
    assert _err(capsys) == "gbm: error: --config: unknown setting 'no_such_setting'"


def test_float64_run(tmp_path) -> None:
    cfg = InferConfig(**{**TINY_CFG, "dtype": "float64", "optimizer": "lbfgs", "fit_iters": 3,
                         "lbfgs_points": 200, "lbfgs_iters_per_step": 3},
                      max_epochs=9)  # type: ignore[arg-type]
    res = infer(cfg, tmp_path / "run", printer=lambda m: None)
    assert res["dtype"] == "float64" and np.isfinite(res["final_loss"])
    st = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert st["log_dw"].dtype == torch.float64
