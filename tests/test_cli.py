"""End-to-end CLI on a small synthetic brain, and the one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import AFFINE, CENTRE_WORLD, synthetic_maps, write_nifti

from gbm.cli import main

SEED = ",".join(str(v) for v in CENTRE_WORLD)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_forward_2d_end_to_end(brain_files, capsys):
    out = brain_files["dir"] / "run2d"
    argv = ["forward", "--wm", brain_files["wm"], "--gm", brain_files["gm"], "--slice", 15,
            "--seed-mm", SEED, "--days", 60, "--save-every", 30, "--out", out]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["phi.nii.gz", "snapshots.png", "summary.json", "u_day0.nii.gz",
                     "u_day30.nii.gz", "u_day60.nii.gz"]
    img = nib.load(str(out / "u_day60.nii.gz"))
    assert img.shape == (40, 44, 30)
    np.testing.assert_allclose(img.affine, AFFINE)
    u = np.asarray(img.dataobj)
    assert u[:, :, 14].max() == 0 and u[:, :, 15].max() > 0  # only the slice is filled
    s = json.loads((out / "summary.json").read_text())
    assert s["snapshots"][0]["max_u"] == pytest.approx(0.1, abs=0.01)
    # diffusion conserves the burden integral(phi u); while u << 1 it grows like exp(rho t),
    # slowed only by the logistic factor (1 - u) >= 0.9
    b = np.array([r["burden"] for r in s["snapshots"]])
    growth = np.exp(0.025 * np.array([30.0, 60.0]))
    assert np.all(b[1:] / b[0] <= growth * (1 + 1e-9))
    assert np.all(b[1:] / b[0] >= growth ** 0.9)
    assert s["solver"]["steps"] * s["solver"]["dt_days"] <= 60 + 1e-9
    assert (out / "snapshots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run refuses to overwrite, --force replaces
    code, _, err = run(argv, capsys)
    assert code == 2 and "use --force" in err and err.count("\n") == 1
    code, _, _ = run(argv + ["--force"], capsys)
    assert code == 0


def test_forward_3d_and_phase_field(brain_files, capsys):
    out = brain_files["dir"] / "run3d"
    code, _, err = run(["forward", "--wm", brain_files["wm"], "--gm", brain_files["gm"],
                        "--seed-mm", SEED, "--days", 20, "--save-every", 20, "--out", out],
                       capsys)
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["geometry"]["dimension"] == 3
    b0, b1 = s["snapshots"][0]["burden"], s["snapshots"][-1]["burden"]
    assert np.exp(0.025 * 20) ** 0.9 <= b1 / b0 <= np.exp(0.025 * 20) * (1 + 1e-9)
    phi_path = brain_files["dir"] / "phi.nii.gz"
    code, _, err = run(["phase-field", "--wm", brain_files["wm"], "--gm", brain_files["gm"],
                        "--out", phi_path], capsys)
    assert code == 0, err
    phi = np.asarray(nib.load(str(phi_path)).dataobj)
    wm, gm = synthetic_maps()
    mask = (wm + gm) >= 0.5
    assert phi.min() >= 0 and phi.max() <= 1
    assert abs((phi > 0.5).sum() - mask.sum()) / mask.sum() < 0.05
    assert (brain_files["dir"] / "phi.json").exists() and (brain_files["dir"] / "phi.png").exists()


def _bad(brain_files, tmp_path, case):
    wm, gm = brain_files["wm"], brain_files["gm"]
    base = ["forward", "--wm", wm, "--gm", gm, "--slice", 15, "--seed-mm", SEED, "--days", 10]
    w, g = synthetic_maps()
    if case == "missing":
        return base[:3] + ["--gm", tmp_path / "missing.nii.gz"] + base[5:], "file not found"
    if case == "shape":
        p = write_nifti(tmp_path / "s.nii.gz", g[:, :-2])
        return base[:3] + ["--gm", p] + base[5:], "shape"
    if case == "nan":
        g[1, 1, 1] = np.nan
        return base[:3] + ["--gm", write_nifti(tmp_path / "n.nii.gz", g)] + base[5:], "NaN"
    if case == "empty":
        z = write_nifti(tmp_path / "z.nii.gz", 0 * w)
        return ["forward", "--wm", z, "--gm", z, "--days", 10], "brain mask is empty"
    if case == "seed":
        return base[:-4] + ["--seed-mm", f"{AFFINE[0, 3]},{AFFINE[1, 3]},{CENTRE_WORLD[2]}",
                            "--days", 10], "outside the brain"
    if case == "dw":
        return base + ["--dw", -0.1], "--dw must be a finite positive number"
    if case == "rho":
        return base + ["--rho", 0], "--rho must be a finite positive number"
    if case == "days":
        return base[:-1] + [0], "--days must be a finite positive number"
    if case == "slice":
        return base[:5] + ["--slice", 500] + base[7:], "slice index 500 is out of range"
    if case == "seedfmt":
        return base[:7] + ["--seed-mm", "1,2"] + base[9:], "expected 3 comma-separated"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "shape", "nan", "empty", "seed", "dw", "rho",
                                  "days", "slice", "seedfmt"])
def test_bad_input_one_line_exit_2_no_output(brain_files, tmp_path, capsys, case):
    argv, message = _bad(brain_files, tmp_path, case)
    out = tmp_path / "out"
    code, stdout, err = run(argv + ["--out", out], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gbm: error:"), err
    assert message in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_module_entry_point_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gbm", "forward", "--wm", tmp_path / "x.nii",
                        "--gm", tmp_path / "y.nii", "--out", tmp_path / "o"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "--wm: file not found" in r.stderr


def test_help_explains_units(capsys):
    assert main(["forward", "--help"]) == 0
    text = capsys.readouterr().out
    assert "mm^2/day" in text and "1/day" in text and "days" in text
