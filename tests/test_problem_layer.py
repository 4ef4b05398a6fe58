"""The torch-free problem layer and the package's import structure.

(a) the problem layer, the FD-based inference and the CLI parser load without torch;
(b) the import structure: tests/test_layout.py;
(c) the density observation model's numpy and torch sides agree;
(d) every "(default: X)" of ``--help`` is the config dataclass's default.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import gbm
import numpy as np
import pytest
from gbm.cli import build_parser, main
from gbm.inference.density_fit import FdFitConfig
from gbm.jobs.forward import ForwardConfig
from gbm.jobs.bench import BenchConfig
from gbm.jobs.bench.patient_study import PatientStudyConfig
from gbm.pinn.config import ExtrapolateConfig, ForwardPinnConfig, InferConfig
from gbm.problem.density.model import DENSITY_L2, DensityL2
from numpy.testing import assert_allclose

PKG = Path(gbm.__file__).resolve().parent


# ----------------------------------------------------------------------------- (a) no torch
def test_problem_layer_and_cli_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import gbm.problem.density.build, gbm.problem.density.model, gbm.inference.density_fit, gbm.cli, gbm.jobs.fit.run\n"
        "import gbm.pinn.settings\n"
        "gbm.cli.build_parser()\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('TORCH' if bad else 'OK')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"


# ----------------------------------------------------------------------------- (c) density
def test_density_model_numpy_and_torch_sides_agree() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    u_model = rng.uniform(0.0, 1.0, 5000)
    u_obs = np.clip(u_model + rng.normal(0.0, 0.05, u_model.shape), 0.0, 1.0)
    n = len(u_obs)
    misfit = DENSITY_L2.misfit(u_model, u_obs)
    tm, to = torch.tensor(u_model, dtype=torch.float64), torch.tensor(u_obs, dtype=torch.float64)
    assert_allclose(float(DENSITY_L2.misfit_torch(tm, to)), misfit, rtol=1e-12)
    assert_allclose(float(DENSITY_L2.loss(tm, to)) * n / 2, misfit, rtol=1e-12)
    assert_allclose(DENSITY_L2.rmse(u_model, u_obs), np.sqrt(np.mean((u_model - u_obs) ** 2)),
                    rtol=1e-12)
    # the formulas the fit and the PINN used before the model existed, bit for bit
    r = u_model - u_obs
    assert np.array_equal(DensityL2.residuals(u_model, u_obs), r)
    assert DENSITY_L2.cost(r) == 0.5 * float(r @ r)
    assert torch.equal(DENSITY_L2.loss(tm, to), (tm - to).square().mean())
    # differentiable in the model's values: d loss / d u_i = 2 r_i / N
    tm.requires_grad_(True)
    DENSITY_L2.loss(tm, to).backward()
    assert_allclose(tm.grad.numpy(), 2 * r / n, rtol=1e-12)


# ----------------------------------------------------------------------------- (d) --help
COMMANDS = {"forward": ForwardConfig, "fit-fd": FdFitConfig, "infer": InferConfig,
            "pinn-forward": ForwardPinnConfig, "phase-field": ForwardConfig,
            "extrapolate": ExtrapolateConfig, "bench": (BenchConfig, PatientStudyConfig)}


def _help_blocks(text: str) -> dict[str, str]:
    """First option string of each option -> its help text (one line, wraps joined)."""
    blocks: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        m = re.match(r"^  (-[^\s,]+)", line)
        if m:
            key = m.group(1)
            blocks[key] = line.strip()
        elif key is not None and line.startswith("   "):
            blocks[key] += " " + line.strip()
        else:
            key = None
    return {k: " ".join(v.split()) for k, v in blocks.items()}


def _subparser(cmd: str) -> argparse.ArgumentParser:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[cmd]


def _matches(shown: str, value: object) -> bool:
    shown = shown.split(";")[0]  # "(default: 2; quick 3)"
    if isinstance(value, bool):
        return shown == ("on" if value else "off")
    if isinstance(value, (int, float)):
        return float(shown) == float(value)
    if isinstance(value, tuple):
        return len(shown.split(",")) == len(value) and all(
            _matches(s, v) for s, v in zip(shown.split(","), value))
    return shown == str(value)


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_help_defaults_are_the_config_defaults(cmd: str, capsys) -> None:
    assert main([cmd, "--help"]) == 0
    blocks = _help_blocks(capsys.readouterr().out)
    parser = _subparser(cmd)
    actions = {s: a for a in parser._actions for s in a.option_strings}
    classes = COMMANDS[cmd] if isinstance(COMMANDS[cmd], tuple) else (COMMANDS[cmd],)
    defaults = {f.name: f.default for c in reversed(classes) for f in dataclasses.fields(c)}
    checked = {}
    for opt, text in blocks.items():
        # no bare "(0.13)"-style default left: they drifted before
        assert not re.search(r"\(\s*-?\d[\d.,]*\s*\)", text), f"{cmd} {opt}: {text}"
        for shown in re.findall(r"\(default: ([^)]*)\)", text):
            dest = actions[opt].dest
            expected = defaults[dest] if dest in defaults else actions[opt].default
            assert _matches(shown, expected), f"{cmd} {opt}: shows {shown}, default {expected}"
            checked[opt] = shown
    assert len(checked) >= 3, checked
    spot = {"forward": ("--days", "150"), "fit-fd": ("--max-solves", "300"),
            "infer": ("--window", "10"), "pinn-forward": ("--adam-epochs", "2000"),
            "phase-field": ("--out", "phi.nii.gz"), "extrapolate": ("--lbfgs-iters", "4000"),
            "bench": ("--domains", "disk,slice")}[cmd]
    assert checked[spot[0]] == spot[1]


# ----------------------------------------------------------------------------- 3D synthetic truth
def test_3d_synthetic_truth_holds_no_daily_snapshots(brain_files) -> None:
    """3D synthetic problems keep no daily snapshots (issue 9's memory bound): the truth is a
    SolverReference whose values at (x, t) are the FD observation operator's. Against daily
    snapshots of the same solve: equal at whole days (to round-off), within the daily linear-in-time
    interpolation error between them; the observations are the operator's values."""
    from conftest import CENTRE_WORLD
    from gbm.model.simulation import simulate
    from gbm.problem.density.build import FD_SAFETY, build_problem
    from gbm.problem.density.observations import GridReference, SolverReference

    cfg = InferConfig(problem="atlas", wm=str(brain_files["wm"]), gm=str(brain_files["gm"]),
                      three_d=True, seed_mm=CENTRE_WORLD, horizon=30.0, n_obs=400)
    prob = build_problem(cfg)
    ref = prob.reference
    assert isinstance(ref, SolverReference)
    assert list(ref._fields) == [30.0]            # one field, at T, for the region radius
    obs = prob.observations
    assert obs is not None
    assert_allclose(ref(obs.points, obs.t), obs.u, rtol=0, atol=0)
    daily = simulate(prob.geometry, 0.13, 0.025, np.arange(0.0, 31.0), seed_local=prob.domain.center,
                     ratio=prob.ratio, safety=FD_SAFETY)
    grid = GridReference(daily.times, daily.u, prob.geometry.spacing)
    assert_allclose(ref.snapshot(30.0), daily.u[-1], rtol=0, atol=1e-12)
    pts = obs.points[:200]
    whole = np.full(len(pts), 20.0)
    assert_allclose(ref(pts, whole), grid(pts, whole), rtol=0, atol=1e-12)
    half = np.full(len(pts), 20.5)
    gap = np.abs(ref(pts, half) - grid(pts, half))
    assert gap.max() < 2e-3 and gap.max() > 0     # exact partial step vs linear in time
