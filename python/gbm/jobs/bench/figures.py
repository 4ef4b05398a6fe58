"""Figures and domain-specific measurements of ``gbm bench``.

* disk (paper Sec. 3.1): the radial ground truth checked against the 2D FD solver at 1 and 0.5 mm;
  Fig. 4 (u vs r every 30 days, FD lines, PINN markers); the extrapolation 300 -> 450 d by the
  PINN (``gbm extrapolate``) and by the FD solver at the FD-fitted parameters, both against the
  truth on the same test points, and Fig. 8;
* slice (Sec. 3.2): Fig. 10 (the FD ground truth at 50-day intervals) and Fig. 11 (the PINN with
  the inferred parameters, the truth and their difference);
* both: parameters against epochs with the Eq. 11 stopping epochs (Figs. 5, 6 / 13, 14), relative
  errors against epochs (Figs. 7 / 15), and the error of both methods against wall time.

Without the PINN (``methods=("fd",)``) the PINN's figures and measurements are left out; the
radial-vs-2D check, the FD extrapolation (Fig. 8 without circles), Fig. 10 and the error against
wall time of the FD-based fits remain. Only the PINN's parts import torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from gbm.inference.density_fit import FdModel
from gbm.jobs.bench.paper import PAPER
from gbm.model.geometry import disk, grid_points
from gbm.model.simulation import simulate
from gbm.pinn.config import ExtrapolateConfig
from gbm.problem.density.build import build_problem, reference_grid
from gbm.problem.density.observations import synthetic_observations
from gbm.problem.domain import Domain
from gbm.viz.base import figure_bytes, pyplot
from gbm.viz.density import snapshot_panels, u_panels

__all__ = ["common_figures", "disk_extras", "radial_profiles", "slice_extras"]


def _first(d: dict[str, Any]) -> dict[str, Any]:
    """The run at the first noise level (the noise-free one in the default study)."""
    return next(iter(d["runs"].values()))


def _net(run_dir: Any) -> Any:
    from gbm.pinn.forward import load_network  # torch: the PINN is an optional extra

    net = load_network(run_dir / "checkpoint.pt")
    net.eval()
    return net


def _net_u(net: Any, points: np.ndarray, t: np.ndarray) -> np.ndarray:
    import torch

    p = next(net.parameters())
    with torch.no_grad():
        u = net.u(torch.as_tensor(points, dtype=p.dtype, device=p.device),
                  torch.as_tensor(t, dtype=p.dtype, device=p.device))
    return u.double().cpu().numpy()


def radial_profiles(reference: Any, center: np.ndarray, days: list[float], net: Any | None,
                    title: str, r_max: float = 55.0, fd_lines: Any | None = None,
                    r_disk: float = 50.0) -> bytes:
    """u against r at ``days``: the truth as lines, the network as markers (paper Figs. 4, 8).

    ``fd_lines``, when given, is a callable (points, t) -> u drawn as dotted lines. Markers stop
    at the disk's edge ``r_disk`` (outside it phi < 0.5: not part of the brain).
    """
    plt = pyplot()
    r = np.linspace(0.0, r_max, 221)
    rm = np.arange(0.0, r_disk + 1e-9, 2.5)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    cmap = plt.get_cmap("viridis")
    for k, day in enumerate(days):
        col = cmap(k / max(len(days) - 1, 1))
        pts = center + np.c_[r, np.zeros_like(r)]
        ax.plot(r, reference(pts, np.full(len(r), day)), color=col, lw=1.4,
                label=f"day {day:g}")
        if fd_lines is not None:
            ax.plot(r, fd_lines(pts, np.full(len(r), day)), color=col, lw=1.0, ls=":")
        if net is not None:
            pm = center + np.c_[rm, np.zeros_like(rm)]
            ax.plot(rm, _net_u(net, pm, np.full(len(rm), day)), "o", color=col, ms=3.5,
                    mfc="none")
    ax.set_xlabel("r [mm]")
    ax.set_ylabel("u")
    ax.set_xlim(0, r_max)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, title="lines: truth (radial FD)"
              + ("; circles: PINN" if net is not None else "")
              + ("; dotted: FD fit" if fd_lines is not None else ""), title_fontsize=7)
    ax.set_title(title, fontsize=10)
    return figure_bytes(fig)


def _radial_vs_2d(problem: Any) -> list[dict[str, Any]]:
    """The radial ground truth against the 2D FD solver on the disk at 1 and 0.5 mm."""

    ref = problem.reference
    rows = []
    for h in (1.0, 0.5):
        g = disk(spacing_mm=h)
        center = (np.asarray(g.shape, dtype=np.float64) - 1) / 2 * h
        res = simulate(g, 0.13, 0.025, [0.0, 150.0, problem.horizon], seed_local=center)
        pts = grid_points(g.shape, g.spacing)
        inside = g.phi.reshape(-1) >= 0.5
        row: dict[str, Any] = {"spacing_mm": h, "steps": res.steps, "dt": res.dt,
                               "seconds": res.seconds}
        for day, u in zip(res.times[1:], res.u[1:]):
            uf = u.reshape(-1)
            tr = ref(pts - center + problem.domain.center, np.full(len(pts), day))
            w = g.phi.reshape(-1) * g.voxel_volume
            row[f"day{day:g}"] = {
                "max_abs_diff": float(np.abs(uf - tr)[inside].max()),
                "mse": float(np.mean((uf - tr)[inside] ** 2)),
                "burden_rel_diff": float((w @ uf) / (w @ tr) - 1.0),
            }
        rows.append(row)
    return rows


def disk_extras(st: Any, d: dict[str, Any]) -> dict[str, Any]:
    """Fig. 4 (with the PINN), the radial-vs-2D check, the extrapolation 300 -> 450 d, Fig. 8."""
    problem = d["problem"]
    run0 = _first(d)
    if st.with_pinn:
        net = _net(st.out / "runs" / run0["tag"] / "pinn")
        st.fig("fig4_disk_profiles.png",
               radial_profiles(problem.reference, problem.domain.center,
                               [30.0 * k for k in range(11)], net,
                               f"Disk, u vs r to day 300 (PINN after {run0['pinn']['epochs']} "
                               f"epochs, noise {run0['noise']:g})"),
               "Fig. 4 analogue: u against r every 30 days; lines: radial FD truth, circles: "
               "PINN with the inferred parameters")
    out: dict[str, Any] = {"radial_vs_2d": _radial_vs_2d(problem)}
    out["extrapolation"] = _extrapolation(st, problem, run0, 450.0)
    return out


def _test_points(dom: Domain, reference: Any, radius: float, horizon: float, t2: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The test set of ``gbm extrapolate`` (as :func:`gbm.pinn.forward.extrapolation_test_points`,
    which needs torch to import): 20000 points radially within ``radius`` mm of the seed, at
    times U(T, T2) days; deterministic in ``seed``."""
    test = synthetic_observations(dom, reference, 20000, radius, t2 - horizon, seed + 99)
    return test.points, test.t + horizon


def _pinn_extrapolation(st: Any, run0: dict[str, Any], t2: float) -> dict[str, Any]:
    """``gbm extrapolate`` of the first run's network to ``t2`` (read back on resume)."""
    from gbm.pinn.forward import extrapolate  # torch: the PINN is an optional extra

    ext_dir = st.out / "runs" / "disk_extrapolate"
    if st.resume and (ext_dir / "results.json").is_file():
        return json.loads((ext_dir / "results.json").read_text())
    ecfg = ExtrapolateConfig(horizon2=t2, adam_epochs=0, lbfgs_iters=st.b["extrapolate_epochs"],
                             time_budget=None, seed=st.cfg.seed, device=st.cfg.device,
                             threads=st.cfg.threads, compile=st.cfg.compile,
                             progress_seconds=60.0)
    return extrapolate(st.out / "runs" / run0["tag"] / "pinn", ecfg, ext_dir, force=True,
                       printer=lambda m: st.say(f"[disk extrapolate] {m}"))


def _extrapolation(st: Any, problem: Any, run0: dict[str, Any], t2: float) -> dict[str, Any]:
    """The extrapolation T -> ``t2`` with the parameters held fixed: the PINN's (``gbm
    extrapolate``, when the PINN runs) and the FD solver's at the FD-fitted parameters, both
    against the truth on the same test points; Fig. 8."""
    center = problem.domain.center
    fdp = run0["fd"]["dw_rho"]
    ext = _pinn_extrapolation(st, run0, t2) if st.with_pinn else None
    # the test region: gbm extrapolate's (the region widened by the Fisher front's travel at the
    # PINN's parameters); without the PINN the same rule at the FD-fitted parameters
    radius = ext["radius_mm"] if ext is not None else (
        problem.radius + 1.25 * 2.0 * math.sqrt(fdp["dw"] * fdp["rho"]) * (t2 - problem.horizon))
    icfg = st.infer_config("disk", run0["noise"])
    truth = build_problem(dataclasses.replace(icfg, horizon=t2),
                          with_observations=False).reference
    dom = Domain(problem.domain.phi, problem.domain.kfac, problem.domain.spacing, center)
    pts, tt = _test_points(dom, truth, radius, problem.horizon, t2, icfg.seed)
    model = FdModel(problem.geometry, pts, tt, fdp["dt_days"], problem.ratio)
    fd_u = model.predict(fdp["dw"], fdp["rho"], center)
    mse_fd = float(np.mean((fd_u - truth(pts, tt)) ** 2))

    def fd_lines(p: np.ndarray, t: np.ndarray) -> np.ndarray:
        return FdModel(problem.geometry, p, t, fdp["dt_days"], problem.ratio).predict(
            fdp["dw"], fdp["rho"], center)

    out: dict[str, Any] = {}
    if ext is not None:
        out["pinn"] = {"mse": ext.get("mse_vs_fd"), "epochs": ext["epochs"],
                       "wall_seconds": ext["wall_seconds"], "dw": ext["dw"], "rho": ext["rho"]}
    out |= {"fd": {"mse": mse_fd, "dw": fdp["dw"], "rho": fdp["rho"],
                   "wall_seconds": model.solve_seconds, "solves": 1},
            "test_points": len(tt), "radius_mm": radius, "horizon": problem.horizon,
            "horizon2": t2}
    pinn_mse = f"PINN MSE {ext.get('mse_vs_fd', 0):.2e}, " if ext is not None else ""
    st.fig("fig8_disk_extrapolation.png",
           radial_profiles(truth, center, [300.0 + 30.0 * k for k in range(6)],
                           _net(st.out / "runs" / "disk_extrapolate") if ext is not None
                           else None,
                           f"Disk, extrapolation 300 -> 450 d ({pinn_mse}FD fit MSE "
                           f"{mse_fd:.2e})", fd_lines=fd_lines),
           "Fig. 8 analogue: u against r from day 300 to 450 every 30 days; lines: truth, "
           + ("circles: PINN extrapolated with its inferred parameters held fixed, "
              if ext is not None else "")
           + "dotted: FD solver at the FD-fitted parameters")
    return out


def slice_extras(st: Any, d: dict[str, Any]) -> dict[str, Any]:
    """Figs. 10 and 11 (with the PINN) of the patient slice."""
    problem = d["problem"]
    run0 = _first(d)
    ref = reference_grid(problem)
    assert ref is not None
    geom = problem.geometry
    days = [0.0, 50.0, 100.0, 150.0]
    st.fig("fig10_slice_fd_truth.png",
           snapshot_panels(geom, days, [ref(t) for t in days], problem.domain.center,
                           "FD ground truth (Dw 0.13, rho 0.025), atlas slice"),
           "Fig. 10 analogue: the ground truth (Rust FD solver, dt 0.18 d) at 50-day intervals")
    if not st.with_pinn:
        return {}
    from gbm.pinn.report import u_on_grid  # torch: the PINN is an optional extra

    net = _net(st.out / "runs" / run0["tag"] / "pinn")
    pd = days[1:]
    fields = [u_on_grid(net, problem.domain, t, problem.radius) for t in pd]
    p = run0["pinn"]
    st.fig("fig11_slice_pinn.png",
           u_panels(geom, pd, fields, [ref(t) for t in pd], problem.domain.center,
                    f"PINN with inferred Dw {p['dw']:.4f}, rho {p['rho']:.5f} "
                    f"(noise {run0['noise']:g})", labels=("PINN", "truth")),
           "Fig. 11 analogue: the PINN's u at 50-day intervals (row 1), the truth (row 2) and "
           "their difference (row 3)")
    inside = problem.domain.phi >= 0.5
    return {"u_vs_truth": {f"{t:g}": {"mse": float(np.mean((f - ref(t))[inside] ** 2)),
                                      "max_abs": float(np.abs(f - ref(t))[inside].max())}
                           for t, f in zip(pd, fields)}}


def _errors_vs_time(d: dict[str, Any], title: str) -> bytes:
    """|relative error| of Dw and rho against wall time, both methods, every noise level."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    cols = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for j, run in enumerate(d["runs"].values()):
        col = cols[j % len(cols)]
        lab = f"noise {run['noise']:g}"
        plog = [r for r in run["pinn"]["log"] if r["seconds"] > 0] if run["pinn"] else None
        flog = run["fd"]["dw_rho"]["log"]
        for ax, key, fkey in ((axes[0], "dw_err_pct", "dw_err_pct"),
                              (axes[1], "rho_err_pct", "rho_err_pct")):
            if plog is not None:
                ax.loglog([r["seconds"] for r in plog], [max(abs(r[key]), 1e-4) for r in plog],
                          "-", color=col, label=f"PINN, {lab}")
            ax.loglog([max(r["seconds"], 1e-3) for r in flog],
                      [max(abs(r[fkey]), 1e-4) for r in flog], "--", color=col,
                      label=f"FD-based, {lab}")
    for ax, name in ((axes[0], "Dw"), (axes[1], "rho")):
        ax.axhline(15, color="0.6", ls=":", lw=1)
        ax.axhline(5, color="0.6", ls=":", lw=1)
        ax.set_xlabel("wall time [s] (this machine)")
        ax.set_ylabel(f"|{name} error| [%]")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return figure_bytes(fig)


def common_figures(st: Any, domain: str, d: dict[str, Any]) -> None:
    """Parameters and errors against epochs (paper Figs. 5-7 / 13-15; with the PINN) and errors
    against time."""
    name = "disk" if domain == "disk" else "atlas slice"
    if st.with_pinn:
        _pinn_epoch_figures(st, domain, d, name)
        title = f"{name}: error against wall time, PINN (solid) vs FD-based (dashed)"
        caption = ("Error of Dw and rho against wall time for both methods at each noise level "
                   "(PINN: every check; FD-based: best evaluation so far, every solve)")
    else:
        title = f"{name}: error against wall time, FD-based (dashed)"
        caption = ("Error of Dw and rho against wall time for the FD-based fit at each noise "
                   "level (best evaluation so far, every solve)")
    st.fig(f"errors_vs_time_{domain}.png", _errors_vs_time(d, title), caption)


def _pinn_epoch_figures(st: Any, domain: str, d: dict[str, Any], name: str) -> None:
    """The PINN's parameters and errors against epochs (paper Figs. 5-7 / 13-15)."""
    from gbm.pinn.report import (  # torch: the PINN is an optional extra
        error_figure,
        parameter_figure,
    )

    problem = d["problem"]
    run0 = _first(d)
    log = run0["pinn"]["log"]
    tols = tuple(PAPER[domain]["rows"])
    window = 10
    figs = (5, 6, 7) if domain == "disk" else (13, 14, 15)
    st.fig(f"fig{figs[0]}_{figs[1]}_{domain}_parameters.png",
           parameter_figure(log, problem.truth, tols, window,
                            f"PINN, {name}: parameters against epochs (noise {run0['noise']:g})"),
           f"Figs. {figs[0]}, {figs[1]} analogue: Dw and rho against epochs, truth dashed, "
           "vertical lines where Eq. 11 stops for each tolerance")
    st.fig(f"fig{figs[2]}_{domain}_errors.png",
           error_figure(log, problem.truth, tols, window, f"PINN, {name}: relative errors"),
           f"Fig. {figs[2]} analogue: relative errors against epochs")

