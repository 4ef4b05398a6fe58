"""FD-based inference: the space-time observation operator, the least-squares fit, fit-fd CLI.

Reference problems: a small 2D disk and the 3D synthetic ball brain of conftest. Observations
come from the FD solver at a *different* time step (safety 0.1, as the synthetic data of
``gbm infer``) than the fit uses, so recovering the parameters is not a tautology.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CENTRE_WORLD, write_nifti
from gbm import _core
from gbm.cli import main
from gbm.inference.density_fit import FdModel, fit_observations
from gbm.model.geometry import disk, from_maps
from gbm.model.simulation import simulate

TRUE = (0.13, 0.025)


def _solver(geom, dw, rho, seed, **kw):
    return _core.FisherKpp(geom.initial_condition(seed), geom.diffusivity(dw), geom.phi,
                           list(geom.spacing), rho, **kw)


def _points(geom, n, t_max, rng):
    hi = (np.asarray(geom.shape) - 1) * np.asarray(geom.spacing)
    return rng.uniform(0, hi, size=(n, geom.ndim)), rng.uniform(0, t_max, size=n)


@pytest.fixture(scope="module")
def small_disk():
    g = disk(radius_mm=20.0, half_width_mm=26.0)
    return g, (np.asarray(g.shape) - 1) / 2 * np.asarray(g.spacing)


def test_observe_is_the_interpolated_partial_step(small_disk) -> None:
    g, c = small_disk
    rng = np.random.default_rng(1)
    pts, t = _points(g, 400, 60.0, rng)
    s = _solver(g, *TRUE, c)
    t[:3] = [0.0, s.dt * 7, s.dt * 7 + 1e-15]  # t = 0 and exact step boundaries
    got = s.observe(pts, t)
    for i in [0, 1, 2, *range(3, len(t), 17)]:
        r = _solver(g, *TRUE, c)
        r.advance(r.steps_until(t[i]))
        snap = r.state(t[i])
        want, _ = _core.interpolate(snap, list(g.spacing), pts[i:i + 1])
        assert got[i] == pytest.approx(float(np.ravel(want)[0]), abs=1e-13)
    assert s.t >= t.max() - 1e-12


def test_observe_3d_matches_snapshots_at_step_boundaries(brain_files) -> None:
    import nibabel as nib

    wm = np.asarray(nib.load(str(brain_files["wm"])).dataobj, dtype=np.float64)
    gm = np.asarray(nib.load(str(brain_files["gm"])).dataobj, dtype=np.float64)
    g = from_maps(wm, gm, nib.load(str(brain_files["wm"])).affine).with_phase_field()
    seed = g.world_to_local(CENTRE_WORLD)
    s = _solver(g, *TRUE, seed)
    idx = np.argwhere(g.phi >= 0.5)[::37]
    pts = idx * np.asarray(g.spacing)
    n = 40
    t = np.full(len(pts), n * s.dt)
    got = s.observe(pts, t)
    r = _solver(g, *TRUE, seed)
    r.advance(n)
    np.testing.assert_allclose(got, r.state()[tuple(idx.T)], rtol=0, atol=1e-14)


def test_observe_rejects_bad_input(small_disk) -> None:
    g, c = small_disk
    s = _solver(g, *TRUE, c)
    with pytest.raises(ValueError, match="shape"):
        s.observe(np.zeros((3, 3)), np.ones(3))
    with pytest.raises(ValueError, match="entries"):
        s.observe(np.zeros((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        s.observe(np.full((1, 2), np.nan), np.ones(1))
    s.advance(5)
    with pytest.raises(ValueError, match="before the solver's current time"):
        s.observe(np.zeros((1, 2)), np.zeros(1))


def _synthetic(g, seed, n, t_max, rng, noise=0.0):
    """Observations of the FD solution at safety 0.1 (daily snapshots, linear in time)."""
    from gbm.problem.density.observations import GridReference

    res = simulate(g, *TRUE, np.arange(0.0, t_max + 1.0), seed_local=seed, safety=0.1)
    ref = GridReference(res.times, res.u, g.spacing)
    inside = np.argwhere(g.phi >= 0.5)
    pts = inside[rng.integers(0, len(inside), n)] * np.asarray(g.spacing)
    pts = pts + rng.uniform(-0.5, 0.5, pts.shape)
    t = rng.uniform(1.0, t_max, n)
    u = ref(pts, t)
    return pts, t, u + rng.normal(0.0, noise, n) if noise else u


@pytest.mark.parametrize("fit_seed", [False, True])
def test_fit_recovers_parameters_from_noise_free_observations(small_disk, fit_seed) -> None:
    g, c = small_disk
    rng = np.random.default_rng(3)
    pts, t, u = _synthetic(g, c, 3000, 120.0, rng)
    dt = FdModel.time_step(g, 1.0, 0.2)
    model = FdModel(g, pts, t, dt)
    seed0 = c + np.array([2.0, -1.5]) if fit_seed else c
    res = fit_observations(model, u, 0.1, 0.01, seed0, (0.01, 1.0), (0.001, 0.2),
                           fit_seed=fit_seed, truth=TRUE)
    assert abs(res.dw / TRUE[0] - 1) < 0.02 and abs(res.rho / TRUE[1] - 1) < 0.02
    # in fact much closer: only the time step differs from the data's solver
    assert abs(res.dw / TRUE[0] - 1) < 2e-3 and abs(res.rho / TRUE[1] - 1) < 1e-3
    if fit_seed:
        assert np.linalg.norm(res.seed_local - c) < 0.1
    assert res.solves == len(res.log) and res.status != "max_solves"
    assert res.rmse < 1e-3
    # the log's estimate is the best evaluation so far
    costs = [r["cost"] for r in res.log]
    assert res.cost == min(costs)
    assert res.log[-1]["best_dw"] == res.log[int(np.argmin(costs))]["dw"]


def test_confidence_intervals_are_calibrated_with_noise(small_disk) -> None:
    """12 noisy data sets (sigma 0.02): the 95 % intervals cover the truth about 95 % of the time,
    the residual scale is the noise, and the intervals are informative."""
    g, c = small_disk
    model_dt = FdModel.time_step(g, 1.0, 0.2)
    cover = np.zeros(2, dtype=int)
    for s in range(12):
        rng = np.random.default_rng(s)
        pts, t, u = _synthetic(g, c, 3000, 120.0, rng, noise=0.02)
        res = fit_observations(FdModel(g, pts, t, model_dt), u, 0.1, 0.01, c, (0.01, 1.0),
                               (0.001, 0.2))
        cover += [res.dw_ci95[0] < TRUE[0] < res.dw_ci95[1],
                  res.rho_ci95[0] < TRUE[1] < res.rho_ci95[1]]
        assert res.rmse == pytest.approx(0.02, rel=0.05)
        assert res.dw_ci95[1] / res.dw_ci95[0] < 1.25 and res.rho_ci95[1] / res.rho_ci95[0] < 1.05
    # expected 11.4 of 12 each; 9 or fewer would happen by chance with probability 0.02
    assert np.all(cover >= 10), cover


def test_fit_stops_at_the_solve_budget(small_disk) -> None:
    g, c = small_disk
    rng = np.random.default_rng(3)
    pts, t, u = _synthetic(g, c, 500, 60.0, rng)
    model = FdModel(g, pts, t, FdModel.time_step(g, 1.0, 0.2))
    res = fit_observations(model, u, 0.1, 0.01, c, (0.01, 1.0), (0.001, 0.2), max_solves=5)
    assert res.status == "max_solves" and res.solves == 5
    assert res.cost == min(r["cost"] for r in res.log)


def test_fit_fd_cli_3d_nifti_observations(brain_files, capsys) -> None:
    """`gbm fit-fd --observations u.nii.gz --days 60` on a 3D brain recovers Dw and rho."""
    import nibabel as nib

    d = brain_files["dir"]
    wm_img = nib.load(str(brain_files["wm"]))
    wm = np.asarray(wm_img.dataobj, dtype=np.float64)
    gm = np.asarray(nib.load(str(brain_files["gm"])).dataobj, dtype=np.float64)
    g = from_maps(wm, gm, wm_img.affine).with_phase_field()
    res = simulate(g, *TRUE, [0.0, 60.0], seed_world=CENTRE_WORLD, safety=0.2)
    obs = write_nifti(d / "u60.nii.gz", g.to_full(res.u[-1]), wm_img.affine)
    seed = ",".join(f"{v:g}" for v in CENTRE_WORLD)
    out = d / "fit"
    argv = ["fit-fd", "--wm", brain_files["wm"], "--gm", brain_files["gm"], "--3d",
            "--seed-mm", seed, "--observations", obs, "--days", "60", "--horizon", "60",
            "--out", out]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    r = json.loads((out / "results.json").read_text())
    assert r["truth"] is None  # user observations: no truth known
    assert abs(r["dw"] / TRUE[0] - 1) < 0.02 and abs(r["rho"] / TRUE[1] - 1) < 0.02
    names = sorted(p.name for p in out.iterdir())
    assert names == ["fit.png", "log.csv", "results.json", "u_fd.png", "u_fd_day60.nii.gz"]
    fitted = nib.load(str(out / "u_fd_day60.nii.gz"))
    assert fitted.shape == wm.shape
    np.testing.assert_allclose(fitted.affine, wm_img.affine)
    assert np.abs(np.asarray(fitted.dataobj) - g.to_full(res.u[-1])).max() < 0.01
    # existing output is kept without --force
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gbm: error:") and "--force" in err and "\n" not in err


@pytest.mark.parametrize("extra, message", [
    (["--problem", "disk", "--dw-range", "0.5,0.1"], "--dw-range must be two numbers 0 < lo < hi"),
    (["--problem", "disk", "--dw0", "2"], "outside --dw-range"),
    (["--problem", "disk", "--rho-range", "0,0.2"], "--rho-range"),
    (["--problem", "disk", "--safety", "1.5"], "--safety"),
    (["--problem", "disk", "--max-solves", "1"], "--max-solves"),
    (["--problem", "disk", "--noise", "-1"], "--noise"),
    (["--observations", "nope.nii.gz", "--days", "10"], "file not found"),
    (["--seed-mm", "500,0,0"], "outside the brain"),
    (["--problem", "disk", "--fit-seed", "--seed0-mm", "55,0,0"], "outside the brain"),
])
def test_fit_fd_bad_input_one_line(tmp_path, capsys, extra, message) -> None:
    out = tmp_path / "fit"
    code = main(["fit-fd", *extra, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("gbm: error:") and message in err and "\n" not in err
    assert not out.exists()
