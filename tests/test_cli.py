"""End-to-end CLI on a small synthetic brain, the one-line errors for bad input, and the shared
flag helpers of :mod:`gbm.cli.common` (float lists, TOML + flags -> config)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import AFFINE, CENTRE_WORLD, synthetic_maps, write_nifti
from gbm.cli import build_parser, main
from gbm.cli import cohort as cohort_cli
from gbm.cli import fit as fit_cli
from gbm.cli.common import FIT_FLAGS, config_from, float_list, floats, world_point
from gbm.errors import InputError
from gbm.jobs.fit.run import FitConfig
from gbm.jobs.forward import ForwardConfig
from PIL import Image

SEED = ",".join(str(v) for v in CENTRE_WORLD)
SHAPE = (40, 44, 30)  # the synthetic maps' grid (conftest)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _nifti(path) -> np.ndarray:
    """The image's data (float64), after checking it lies on the input maps' grid."""
    img = nib.load(str(path))
    assert img.shape == SHAPE, path
    np.testing.assert_array_equal(img.affine, AFFINE)
    return np.asarray(img.dataobj, dtype=float)


def _png(path) -> np.ndarray:
    """The PNG's pixels, after checking it is a real figure: not blank, many colours."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    px = np.asarray(Image.open(path).convert("RGB"))
    assert px.shape[0] >= 200 and px.shape[1] >= 200, px.shape
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 50  # not blank: a colour map is drawn
    return px


def _forward_line(s: dict, out) -> str:
    """The line ``gbm forward`` prints, from its summary.json."""
    last, sv, g = s["snapshots"][-1], s["solver"], s["geometry"]
    return (f"gbm forward: {g['dimension']}D box {tuple(g['box_shape'])}, dt {sv['dt_days']:.4g}"
            f" d, {sv['steps']} steps in {sv['wall_seconds']:.2f} s; day {last['day']:g}: max u "
            f"{last['max_u']:.3f}, radius(u>=0.25) {last['front_radius_mm']:.1f} mm -> {out}")


def test_forward_2d_end_to_end(brain_files, capsys):
    out = brain_files["dir"] / "run2d"
    argv = ["forward", "--wm", brain_files["wm"], "--gm", brain_files["gm"], "--slice", 15,
            "--seed-mm", SEED, "--days", 60, "--save-every", 30, "--out", out]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["phi.nii.gz", "snapshots.png", "summary.json", "u_day0.nii.gz",
                     "u_day30.nii.gz", "u_day60.nii.gz"]
    s = json.loads((out / "summary.json").read_text())
    assert stdout == _forward_line(s, out) + "\n"
    assert s["geometry"]["dimension"] == 2 and s["geometry"]["seed_world_mm"] == list(CENTRE_WORLD)
    assert s["config"]["days"] == 60.0 and s["config"]["dw"] == 0.13  # flag, default
    assert [r["day"] for r in s["snapshots"]] == [0.0, 30.0, 60.0]
    phi = _nifti(out / "phi.nii.gz")
    assert phi[:, :, 14].max() == 0 and phi[:, :, 15].max() == pytest.approx(1.0)
    for r in s["snapshots"]:
        u = _nifti(out / f"u_day{r['day']:g}.nii.gz")
        assert u[:, :, 14].max() == 0 and u[:, :, 16].max() == 0  # only the slice is filled
        # the files hold what the summary reports: max u and the burden integral(phi u) dA
        assert u.max() == pytest.approx(r["max_u"], rel=1e-6)
        assert (phi * u).sum() == pytest.approx(r["burden"], rel=1e-6)
    assert s["snapshots"][0]["max_u"] == pytest.approx(0.1, abs=0.01)
    # diffusion conserves the burden integral(phi u); while u << 1 it grows like exp(rho t),
    # slowed only by the logistic factor (1 - u) >= 0.9
    b = np.array([r["burden"] for r in s["snapshots"]])
    growth = np.exp(0.025 * np.array([30.0, 60.0]))
    assert np.all(b[1:] / b[0] <= growth * (1 + 1e-9))
    assert np.all(b[1:] / b[0] >= growth ** 0.9)
    assert s["solver"]["steps"] * s["solver"]["dt_days"] <= 60 + 1e-9
    px = _png(out / "snapshots.png")
    assert px.shape[1] > 2 * px.shape[0]  # three panels side by side
    # a second run refuses to overwrite, --force replaces
    code, _, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.endswith(f"gbm: error: {out} exists; use --force to overwrite\n")
    code, _, _ = run(argv + ["--force"], capsys)
    assert code == 0
    s2 = json.loads((out / "summary.json").read_text())
    assert s2["snapshots"] == s["snapshots"]  # deterministic: the same run again


def test_forward_3d_and_phase_field(brain_files, capsys):
    out = brain_files["dir"] / "run3d"
    code, stdout, err = run(["forward", "--wm", brain_files["wm"], "--gm", brain_files["gm"],
                             "--seed-mm", SEED, "--days", 20, "--save-every", 20, "--out", out],
                            capsys)
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert stdout == _forward_line(s, out) + "\n"
    assert s["geometry"]["dimension"] == 3 and len(s["geometry"]["box_shape"]) == 3
    b0, b1 = s["snapshots"][0]["burden"], s["snapshots"][-1]["burden"]
    assert np.exp(0.025 * 20) ** 0.9 <= b1 / b0 <= np.exp(0.025 * 20) * (1 + 1e-9)
    u = _nifti(out / "u_day20.nii.gz")
    assert u.max() == pytest.approx(s["snapshots"][-1]["max_u"], rel=1e-6)
    # the tumour is centred on the seed: the voxel of CENTRE_WORLD's neighbourhood holds the max
    peak = np.array(np.unravel_index(np.argmax(u), u.shape))
    assert np.all(np.abs(peak - (np.array(SHAPE) - 1) / 2) <= 1)

    phi_path = brain_files["dir"] / "phi.nii.gz"
    code, stdout, err = run(["phase-field", "--wm", brain_files["wm"], "--gm", brain_files["gm"],
                             "--out", phi_path], capsys)
    assert code == 0, err
    phi = _nifti(phi_path)
    wm, gm = synthetic_maps()
    mask = (wm + gm) >= 0.5
    assert phi.min() >= 0 and phi.max() <= 1
    assert abs((phi > 0.5).sum() - mask.sum()) / mask.sum() < 0.05
    info = json.loads((brain_files["dir"] / "phi.json").read_text())
    assert info["mask_volume"] == mask.sum()  # 1 mm voxels: volume = voxel count
    assert info["phi_half_volume"] == (phi > 0.5).sum()
    assert info["volume_rel_diff"] == pytest.approx(info["phi_half_volume"] / mask.sum() - 1)
    assert stdout == (f"gbm phase-field: box {tuple(info['box_shape'])}, {info['steps']} steps, "
                      f"converged {info['converged']}, volume(phi>0.5)/mask - 1 = "
                      f"{info['volume_rel_diff']:+.3%} -> {phi_path}\n")
    _png(brain_files["dir"] / "phi.png")


def test_toml_config_is_overridden_by_flags(brain_files, tmp_path, capsys):
    toml = tmp_path / "forward.toml"
    toml.write_text("dw = 0.2\ndays = 30.0\nsave_every = 10.0\nslice = 15\n")
    out = tmp_path / "run"
    code, _, err = run(["forward", "--config", toml, "--wm", brain_files["wm"], "--gm",
                        brain_files["gm"], "--seed-mm", SEED, "--days", 20, "--out", out], capsys)
    assert code == 0, err
    c = json.loads((out / "summary.json").read_text())["config"]
    assert c["days"] == 20.0                                        # the flag wins over TOML
    assert (c["dw"], c["save_every"], c["slice"]) == (0.2, 10.0, 15)  # TOML, no flag given
    assert c["rho"] == ForwardConfig().rho                           # neither: the default
    assert sorted(p.name for p in out.glob("u_day*")) == [
        "u_day0.nii.gz", "u_day10.nii.gz", "u_day20.nii.gz"]


def _bad(brain_files, tmp_path, case):
    """argv of a bad ``forward`` run and the exact error line (a regex)."""
    wm, gm = brain_files["wm"], brain_files["gm"]
    base = ["forward", "--wm", wm, "--gm", gm, "--slice", 15, "--seed-mm", SEED, "--days", 10]
    w, g = synthetic_maps()
    if case == "missing":
        p = tmp_path / "missing.nii.gz"
        return base[:3] + ["--gm", p] + base[5:], re.escape(f"--gm: file not found: {p}")
    if case == "shape":
        p = write_nifti(tmp_path / "s.nii.gz", g[:, :-2])
        return (base[:3] + ["--gm", p] + base[5:],
                re.escape("--gm: shape (40, 42, 30) differs from --wm shape (40, 44, 30)"))
    if case == "nan":
        g[1, 1, 1] = np.nan
        p = write_nifti(tmp_path / "n.nii.gz", g)
        return base[:3] + ["--gm", p] + base[5:], re.escape(f"--gm: {p} contains NaN or Inf values")
    if case == "empty":
        z = write_nifti(tmp_path / "z.nii.gz", 0 * w)
        return (["forward", "--wm", z, "--gm", z, "--days", 10],
                re.escape("brain mask is empty: wm + gm >= 0.5 nowhere"))
    if case == "seed":
        return (base[:-4] + ["--seed-mm", f"{AFFINE[0, 3]},{AFFINE[1, 3]},{CENTRE_WORLD[2]}",
                             "--days", 10],
                r"seed \(.*-20(\.0)?\)?, .*-22(\.0)?\)?, .*\) mm is outside the brain "
                r"\(beyond the cropped box\)")
    if case == "dw":
        return base + ["--dw", -0.1], re.escape("--dw must be a finite positive number, got -0.1")
    if case == "rho":
        return base + ["--rho", 0], re.escape("--rho must be a finite positive number, got 0.0")
    if case == "days":
        return base[:-1] + [0], re.escape("--days must be a finite positive number, got 0.0")
    if case == "slice":
        return (base[:5] + ["--slice", 500] + base[7:],
                re.escape("slice index 500 is out of range 0..29"))
    if case == "seedfmt":
        return (base[:7] + ["--seed-mm", "1,2"] + base[9:],
                re.escape("argument --seed-mm: expected 3 comma-separated numbers, got '1,2' "
                          "(see --help)"))
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "shape", "nan", "empty", "seed", "dw", "rho",
                                  "days", "slice", "seedfmt"])
def test_bad_input_one_line_exit_2_no_output(brain_files, tmp_path, capsys, case):
    argv, message = _bad(brain_files, tmp_path, case)
    out = tmp_path / "out"
    code, stdout, err = run(argv + ["--out", out], capsys)
    assert code == 2 and stdout == ""
    assert re.fullmatch(f"gbm: error: {message}\n", err), err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_module_entry_point_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gbm", "forward", "--wm", tmp_path / "x.nii",
                        "--gm", tmp_path / "y.nii", "--out", tmp_path / "o"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"gbm: error: --wm: file not found: {tmp_path / 'x.nii'}\n"
    assert not (tmp_path / "o").exists()


def test_help_explains_units(capsys):
    assert main(["forward", "--help"]) == 0
    text = capsys.readouterr().out
    assert "mm^2/day" in text and "1/day" in text and "days" in text


def test_version_is_the_package_metadata(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"gbm {importlib.metadata.version('gbm')}\n"


SUBCOMMANDS = ["forward", "phase-field", "fit", "synth", "fit-fd", "bench", "infer",
               "pinn-forward", "extrapolate", "cohort", "tissue"]


def test_subcommands_in_help_order() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == SUBCOMMANDS


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_help_exits_0(cmd, capsys):
    assert main([cmd, "--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"usage: python -m gbm {cmd} ") and err == ""
    assert "--help" in out


def test_bad_flag_value_is_one_usage_line(capsys):
    assert main(["forward", "--days", "x"]) == 2
    assert capsys.readouterr().err == (
        "gbm: error: argument --days: invalid float value: 'x' (see --help)\n")


# ----------------------------------------------------------------------------- gbm.cli.common
def test_float_list_parsers_and_their_errors() -> None:
    assert float_list("1, 2.5,3") == (1.0, 2.5, 3.0)
    assert float_list("0,,30") == (0.0, 30.0)                # empty items are skipped
    assert floats(2)("0.01,1") == (0.01, 1.0)
    assert world_point("-1,2,-3") == (-1.0, 2.0, -3.0)
    assert world_point("1,2,3,") == (1.0, 2.0, 3.0)
    cases = [(float_list, "0,x", "expected comma-separated numbers, got '0,x'"),
             (floats(3), "1,2", "expected 3 comma-separated numbers, got '1,2'"),
             (floats(3), "1,,2,3", "expected 3 comma-separated numbers, got '1,,2,3'"),
             (floats(3), "a,b,c", "expected 3 comma-separated numbers, got 'a,b,c'"),
             (world_point, "1,2", "expected x,y,z in world mm, got '1,2'"),
             (world_point, "1,a,3", "expected comma-separated numbers, got '1,a,3'")]
    for parse, text, message in cases:
        with pytest.raises(argparse.ArgumentTypeError) as e:
            parse(text)
        assert str(e.value) == message


def test_config_from_merges_toml_then_flags(tmp_path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("dw = 0.2\nsave-every = 25.0\nseed_mm = [1.0, 2.0, 3.0]\n")
    a = argparse.Namespace(config=str(toml), dw=0.05, days=None, rho=None)
    cfg = config_from(ForwardConfig, a, ("dw", "days", "rho"), extra={"margin": 3})
    assert cfg == ForwardConfig(dw=0.05, save_every=25.0, seed_mm=(1.0, 2.0, 3.0), margin=3)
    # values replace the file (gbm bench --study patient), no --config attribute at all is fine
    assert config_from(ForwardConfig, argparse.Namespace(), values={"days": 9.0}).days == 9.0
    a = argparse.Namespace(config=str(tmp_path / "none.toml"))
    with pytest.raises(InputError, match=re.escape(f"--config: file not found: {a.config}")):
        config_from(ForwardConfig, a)
    toml.write_text("no_such = 1\n")
    with pytest.raises(InputError, match="^--config: unknown setting 'no_such'$"):
        config_from(ForwardConfig, argparse.Namespace(config=str(toml)))


def test_fit_flags_set_fit_config_fields() -> None:
    fields = {f.name for f in dataclasses.fields(FitConfig)}
    assert set(FIT_FLAGS) <= fields and set(fit_cli.FIELDS) <= fields
    assert set(cohort_cli.FIT_FIELDS) <= set(fit_cli.FIELDS)
    flags = ["--labels", "tum", "--slice", "3", "--assume-days", "90", "--forecast", "10,20",
             "--coarse-mm", "4", "--global-solves", "5", "--seed", "7", "--margin-mm", "12",
             "--uncertainty"]
    want = dict(labels="tum", slice=3, assume_days=90.0, forecast=(10.0, 20.0), coarse_mm=4.0,
                global_solves=5, seed=7, margin_mm=12.0, uncertainty=True)
    parser = build_parser()
    a = parser.parse_args(["cohort", "DIR", "--out", "o", "--threads", "2", *flags])
    assert config_from(FitConfig, a, cohort_cli.FIT_FIELDS) == FitConfig(**want)  # not threads
    a = parser.parse_args(["fit", "--threads", "2", *flags])
    assert config_from(FitConfig, a, fit_cli.FIELDS) == FitConfig(**want, threads=2)
    # both show FitConfig's defaults, each in its own words
    sub = next(x for x in parser._actions if isinstance(x, argparse._SubParsersAction))
    fit_help = {x.dest: x.help for x in sub.choices["fit"]._actions}
    cohort_help = {x.dest: x.help for x in sub.choices["cohort"]._actions}
    d = FitConfig()
    assert fit_help["coarse_mm"] == ("voxel size of the global stage's grid, mm; 0 = none "
                                     f"({d.coarse_mm:g})")
    assert cohort_help["coarse_mm"] == f"global stage grid, mm; 0 = none ({d.coarse_mm:g})"
    assert fit_help["seed"] == cohort_help["seed"] == f"random seed ({d.seed})"
