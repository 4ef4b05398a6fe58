"""The core install: every FD-based command works where importing torch (and ray, pyarrow) fails,
and a command that needs a missing extra stops with one line naming it.

Each command runs as ``python -m gbm ...`` in a subprocess whose ``sitecustomize`` puts a finder
first on ``sys.meta_path`` that raises ImportError for the extras' packages (as on a machine
where they are not installed). Outputs are checked against the synthetic truth.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from conftest import CENTRE_WORLD
from gbm.extras import EXTRAS

#: The extras' top-level packages, which the core must never need.
BLOCKED = sorted({p for pkgs in EXTRAS.values() for p in pkgs})
#: ``versions.extras`` in a result file written without them.
NONE_INSTALLED = {name: False for name in EXTRAS}

SITECUSTOMIZE = f'''
import sys

BLOCKED = {BLOCKED!r}


class _NotInstalled:
    """Importing one of BLOCKED fails, as if it were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (blocked by tests/test_install.py)")
        return None


sys.meta_path.insert(0, _NotInstalled())
'''


@pytest.fixture(scope="module")
def core_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a process without the extras (a ``sitecustomize`` on PYTHONPATH)."""
    d = tmp_path_factory.mktemp("no_extras")
    (d / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(d)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_gbm(env: dict[str, str], cwd: Path, *argv: object) -> subprocess.CompletedProcess[str]:
    """``python -m gbm ARGV`` in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "gbm", *map(str, argv)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_the_blocker_blocks(core_env, tmp_path) -> None:
    code = ("import importlib.util, gbm.extras\n"
            "for name in ('torch', 'ray'):\n"
            "    try:\n"
            "        __import__(name)\n"
            "    except ImportError as e:\n"
            "        print('blocked', name)\n"
            "print(gbm.extras.installed())\n")
    r = subprocess.run([sys.executable, "-c", code], env=core_env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["blocked torch", "blocked ray"]
    assert ast.literal_eval(lines[2]) == NONE_INSTALLED


def test_the_extras_are_the_packages_extras() -> None:
    """Every extra a command may ask for exists in pyproject.toml with its packages; ``all``
    holds every one."""
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    declared = pyproject["project"]["optional-dependencies"]
    dist = {"torch": "torch", "ray": "ray", "pyarrow": "pyarrow", "ants": "antspyx"}
    for name, packages in EXTRAS.items():
        reqs = {r.split(">")[0].split("=")[0].split("[")[0] for r in declared[name]}
        assert reqs == {dist[p] for p in packages}, name
    assert declared["all"] == [f"gbm[{','.join(EXTRAS)}]"]
    assert "torch" not in str(pyproject["project"]["dependencies"])


def test_import_gbm_and_the_cli_never_import_an_extra(tmp_path) -> None:
    """With every extra installed (this environment), importing gbm, its jobs and the CLI
    (all parsers built) loads none of them."""
    code = ("import sys, gbm, gbm.cli, gbm.jobs.fit.run, gbm.jobs.cohort.runner, gbm.jobs.bench, "
            "gbm.jobs.bench.patient_study, gbm.jobs.synth, gbm.jobs.forward, gbm.provenance\n"
            "gbm.cli.build_parser(); gbm.provenance.versions()\n"
            f"print(sorted(m for m in sys.modules if m.partition('.')[0] in {BLOCKED!r}))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_version_from_the_package_metadata(core_env, tmp_path) -> None:
    import gbm

    v = metadata.version("gbm")
    assert gbm.__version__ == v
    r = run_gbm(core_env, tmp_path, "--version")
    assert r.returncode == 0 and r.stdout == f"gbm {v}\n" and r.stderr == ""


@pytest.fixture(scope="module")
def fitted(core_env, tmp_path_factory) -> tuple[Path, Path, Path]:
    """``gbm synth`` (atlas at 4 mm, one scan) then ``gbm fit`` with small budgets, no extras."""
    d = tmp_path_factory.mktemp("fit")
    r = run_gbm(core_env, d, "synth", "--downsample", 4, "--out", "patient")
    assert r.returncode == 0, r.stderr
    r = run_gbm(core_env, d, "fit", "--patient", "patient", "--assume-days", 400,
                "--forecast", 150, "--global-solves", 400, "--local-solves", 30, "--out", "fit")
    assert r.returncode == 0, r.stderr
    return d, d / "patient", d / "fit"


def test_synth_and_fit_without_torch(fitted) -> None:
    _, patient, fit = fitted
    truth = json.loads((patient / "truth.json").read_text())
    res = json.loads((fit / "results.json").read_text())
    assert res["config"]["method"] == "fd"
    assert res["versions"]["extras"] == NONE_INSTALLED
    assert res["versions"]["gbm"] == metadata.version("gbm")
    (scan,) = res["scans"]
    assert scan["dice_core"] >= 0.9 and scan["dice_whole"] >= 0.9
    e = res["estimates"]
    assert math.dist(e["origin_world_mm"], truth["origin_world_mm"]) < 4.0  # one 4 mm voxel
    assert e["lambda_mm"] == pytest.approx(truth["lambda_mm"], rel=0.1)
    assert e["rho_T"] == pytest.approx(truth["rho_T"], rel=0.1)
    # the assumed age is the true one: Dw and rho follow
    assert e["dw"] == pytest.approx(truth["dw"], rel=0.1)
    assert e["rho"] == pytest.approx(truth["rho"], rel=0.1)
    names = {p.name for p in fit.iterdir()}
    assert {"u_day0.nii.gz", "u_day150.nii.gz", "plan_standard.nii.gz", "plan_model.nii.gz",
            "log.csv", "panels.png"} <= names


def test_forward_slice_without_torch(core_env, brain_files) -> None:
    d = brain_files["dir"]
    seed = ",".join(str(v) for v in CENTRE_WORLD)
    r = run_gbm(core_env, d, "forward", "--wm", brain_files["wm"], "--gm", brain_files["gm"],
            "--slice", 15, "--seed-mm", seed, "--days", 40, "--save-every", 20, "--out", "run")
    assert r.returncode == 0, r.stderr
    s = json.loads((d / "run" / "summary.json").read_text())
    assert s["versions"]["extras"] == NONE_INSTALLED
    assert [x["day"] for x in s["snapshots"]] == [0.0, 20.0, 40.0]
    # the burden integral(phi u) grows like exp(rho t) while u << 1 (logistic factor >= 0.9)
    b = [x["burden"] for x in s["snapshots"]]
    for day, bk in zip((20.0, 40.0), b[1:]):
        growth = math.exp(0.025 * day)
        assert growth ** 0.9 <= bk / b[0] <= growth * (1 + 1e-9)


def test_fit_fd_without_torch(core_env, tmp_path) -> None:
    r = run_gbm(core_env, tmp_path, "fit-fd", "--problem", "disk", "--n-obs", 2000, "--out", "ff")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "ff" / "results.json").read_text())
    assert res["truth"] == {"dw": 0.13, "rho": 0.025}
    assert abs(res["dw_error_pct"]) < 2 and abs(res["rho_error_pct"]) < 2


def test_bench_fd_parts_without_torch(core_env, tmp_path) -> None:
    """``gbm bench --methods fd``: the FD-based fit, the ground-truth check and the FD
    extrapolation on the disk, no PINN tables or figures."""
    (tmp_path / "tiny.toml").write_text("cost_model_3d = false\nfd_fit_seed = false\n")
    r = run_gbm(core_env, tmp_path, "bench", "--methods", "fd", "--domains", "disk", "--noise", 0,
            "--config", "tiny.toml", "--out", "b")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep["meta"]["versions"]["extras"] == NONE_INSTALLED
    (run,) = rep["domains"]["disk"]["runs"]
    assert run["pinn"] is None
    f = run["fd"]["dw_rho"]
    assert abs(f["dw_error_pct"]) < 1 and abs(f["rho_error_pct"]) < 1
    ext = rep["domains"]["disk"]["extras"]["extrapolation"]
    assert "pinn" not in ext and ext["fd"]["mse"] < 1e-4
    assert sorted(p.name for p in (tmp_path / "b" / "figures").iterdir()) == [
        "errors_vs_time_disk.png", "fig8_disk_extrapolation.png"]
    md = (tmp_path / "b" / "report.md").read_text()
    assert "Table 2 analogue" not in md and "PINN: not run (--methods fd)." in md


@pytest.mark.parametrize("argv, extra, what", [
    (["infer"], "pinn", "gbm infer"),
    (["pinn-forward"], "pinn", "gbm pinn-forward"),
    (["extrapolate", "--run", "run"], "pinn", "gbm extrapolate"),
    (["fit", "--patient", "{patient}", "--method", "pinn"], "pinn", "--method pinn"),
    (["cohort", "{cohort}", "--engine", "ray"], "ray", "--engine ray"),
    (["bench"], "pinn", "gbm bench with the PINN"),
    (["bench", "--study", "patient"], "pinn",
     "gbm bench --study patient with the network methods"),
])
def test_a_missing_extra_is_one_line_and_exit_2(core_env, fitted, tmp_path, argv, extra,
                                                 what) -> None:
    _, patient, _ = fitted
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "p1").symlink_to(patient, target_is_directory=True)
    work = tmp_path / "work"
    work.mkdir()
    argv = [a.format(patient=patient, cohort=cohort) for a in argv]
    r = run_gbm(core_env, work, *argv, "--out", "out")
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"gbm: error: {what}")
    missing = ", ".join(EXTRAS[extra])
    assert line.endswith(f"needs the optional extra '{extra}' ({missing} not installed): "
                         f'pip install "gbm[{extra}]"'), line
    assert list(work.iterdir()) == []  # nothing written
