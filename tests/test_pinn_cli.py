"""PINN commands: bad observation inputs give one-line errors; a tiny run writes its outputs;
an interrupted run resumed from its checkpoint continues bit-identically on CPU."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from gbm.cli import main
from gbm.pinn.checkpoint import load_checkpoint
from gbm.pinn.config import InferConfig
from gbm.pinn.inverse import infer

TINY = ["--problem", "disk", "--threads", "1", "--n-obs", "500", "--check-every", "5",
        "--window", "2"]
TINY_CFG = dict(problem="disk", threads=1, n_obs=500, check_every=5, window=2, width=12, depth=2,
                fourier=4, n_colloc=200, time_budget=None, checkpoint_every=5,
                progress_seconds=1e9, report_days=(300.0,), compile=False, optimizer="adam")


def _err(capsys) -> str:
    return capsys.readouterr().err.strip()


def _disk_world(x_local: float, y_local: float) -> tuple[float, float, float]:
    # gbm.geometry.disk(): world origin at the disk centre (local (60, 60) mm)
    return x_local - 60.0, y_local - 60.0, 0.0


@pytest.mark.parametrize(
    "rows, message",
    [
        (["x,y,z,t,u", "0,0,0,100,0.5", "1,1,0,100,nan"], "NaN"),
        (["x,y,z,t,u", "0,0,0,100,1.5"], "in [0, 1]"),
        (["x,y,z,t,u", "0,0,0,0,0.5"], "outside (0, T"),
        (["x,y,z,t,u", "0,0,0,301,0.5"], "outside (0, T"),
        (["x,y,z,t,u", "55,0,0,100,0.1"], "outside the brain"),
        (["x,y,z,t,u", "500,0,0,100,0.1"], "outside the brain"),
        (["a,b,c", "1,2,3"], "header"),
        (["x,y,z,t,u", "1,2,zz,4,0.1"], "non-numeric"),
    ],
)
def test_bad_csv_observations(tmp_path, capsys, rows, message) -> None:
    f = tmp_path / "obs.csv"
    f.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["infer", *TINY, "--observations", str(f), "--out", str(out)]) == 2
    err = _err(capsys)
    assert err.startswith("gbm: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_missing_observation_file(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["infer", *TINY, "--observations", str(tmp_path / "nope.csv"),
                 "--out", str(out)]) == 2
    assert "file not found" in _err(capsys)
    assert main(["infer", *TINY, "--observations", str(tmp_path / "nope.nii.gz"), "--days", "100",
                 "--out", str(out)]) == 2
    assert "file not found" in _err(capsys)
    assert not out.exists()


def _nifti(path, data) -> None:
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = (-60.0, -60.0, 0.0)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), aff), str(path))


@pytest.mark.parametrize(
    "shape, fill, days, message",
    [
        ((100, 121, 1), 0.2, ["100"], "shape"),
        ((121, 121, 1), np.nan, ["100"], "NaN"),
        ((121, 121, 1), 2.0, ["100"], "in [0, 1]"),
        ((121, 121, 1), 0.2, ["400"], "outside (0, T"),
        ((121, 121, 1), 0.2, ["100", "200"], "one day per map"),
    ],
)
def test_bad_nifti_observations(tmp_path, capsys, shape, fill, days, message) -> None:
    f = tmp_path / "u.nii.gz"
    _nifti(f, np.full(shape, fill))
    out = tmp_path / "run"
    assert main(["infer", *TINY, "--observations", str(f), "--days", *days,
                 "--out", str(out)]) == 2
    err = _err(capsys)
    assert message in err, err
    assert not out.exists()


def test_nifti_observations_need_days(tmp_path, capsys) -> None:
    f = tmp_path / "u.nii.gz"
    _nifti(f, np.full((121, 121, 1), 0.2))
    assert main(["infer", *TINY, "--observations", str(f), "--out", str(tmp_path / "r")]) == 2
    assert "--days" in _err(capsys)


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
    for name in ["results.json", "log.csv", "parameters.png", "errors.png", "loss.png",
                 "table.md", "checkpoint.pt", "u_pinn_day300.nii.gz", "u_pinn.png"]:
        assert (out / name).is_file(), name
    js = json.loads((out / "results.json").read_text())
    assert js["epochs"] == 10 and js["truth"] == {"dw": 0.13, "rho": 0.025}
    assert js["dw"] == pytest.approx(res["dw"]) and js["device"] == "cpu"
    assert len(js["tolerance_table"]) == 2
    lines = (out / "log.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,seconds,loss,loss_res,loss_data,dw,rho")
    assert len(lines) == 1 + 3  # checks at epochs 0, 5, 10
    img = nib.load(str(out / "u_pinn_day300.nii.gz"))
    assert img.shape == (121, 121, 1)
    # refuses to overwrite without --force
    from gbm.errors import InputError

    with pytest.raises(InputError, match="exists"):
        infer(cfg, out, printer=lambda m: None)


def test_pinn_forward_and_extrapolate_smoke(tmp_path, capsys) -> None:
    """The forward and extrapolation commands run end to end on a tiny disk problem."""
    from gbm.pinn.config import ExtrapolateConfig, ForwardPinnConfig
    from gbm.pinn.forward import extrapolate, load_network, pinn_forward

    fcfg = ForwardPinnConfig(problem="disk", horizon=100.0, width=12, depth=2, fourier=4,
                             n_colloc=200, lbfgs_points=300, adam_epochs=10, lbfgs_iters=10,
                             check_every=5, threads=1, compile=False, report_days=(100.0,),
                             progress_seconds=1e9, time_budget=None)
    res = pinn_forward(fcfg, tmp_path / "fwd", printer=lambda m: None)
    assert res["epochs"] >= 20 and np.isfinite(res["u_vs_fd"]["100"]["mse"])
    assert (tmp_path / "fwd" / "u_pinn_day100.nii.gz").is_file()
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
    assert ext["dw"] == pytest.approx(float(torch.exp(st["log_dw"])))
    assert ext["horizon2"] == 150.0 and np.isfinite(ext["mse_vs_fd"])
    assert (tmp_path / "ext" / "u_extrapolated_day150.nii.gz").is_file()
    # CLI: a bad --run folder is a one-line error
    assert main(["extrapolate", "--run", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "e2")]) == 2
    assert "no checkpoint.pt" in _err(capsys)


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
    assert js["config"]["width"] == 12 and js["config"]["max_epochs"] == 8
    assert js["epochs"] >= 8
    assert main(["infer", "--resume", str(out), "--max-epochs", "16"]) == 0
    js = json.loads((out / "results.json").read_text())
    assert js["epochs"] >= 16 and js["config"]["width"] == 12
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_setting = 1\n")
    assert main(["infer", "--config", str(bad), "--out", str(tmp_path / "r2")]) == 2
    assert "unknown setting" in _err(capsys)


def test_float64_run(tmp_path) -> None:
    cfg = InferConfig(**{**TINY_CFG, "dtype": "float64", "optimizer": "lbfgs", "fit_iters": 3,
                         "lbfgs_points": 200, "lbfgs_iters_per_step": 3},
                      max_epochs=9)  # type: ignore[arg-type]
    res = infer(cfg, tmp_path / "run", printer=lambda m: None)
    assert res["dtype"] == "float64" and np.isfinite(res["final_loss"])
    st = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert st["log_dw"].dtype == torch.float64
