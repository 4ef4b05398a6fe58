"""The PINN on a patient's segmentations: ``gbm fit --method pinn``.

The same problem as the FD-based fit (:mod:`gbm.inference.patient_fit`): the diffuse-domain
Fisher-Kolmogorov equation on the patient's tissue maps, from the paper's Gaussian
``0.1 exp(-|x - x0|^2 / 10 mm^2)`` at the origin x0, observed through the nested-threshold
segmentation model (:class:`gbm.problem.segmentation.SegmentationModel`, its torch side; the same
instance and formula the FD fit uses). Both methods work on the same fine sub-box (the whole
tumour of all scans + ``crop_mm``), built by :func:`gbm.inference.patient_fit.make_levels`.

Network and scaling (characteristic scales, as predict_gbm_pinn)
-----------------------------------------------------------------
u(x, t) = N(x', t') t' + IC(x - x0) (:class:`gbm.pinn.network.PinnNet`), with
x' = (x - c) / L, c the first scan's core centroid (the origin's start), L = the largest distance
from c to a whole-tumour voxel of any scan + ``length_margin_mm``, and t' = t / H with H the
time from the seed to the last scan, so the scans lie in t' in (0, 1]. The origin is learnt as a
shift of the initial condition, x0 = c + L s (``PinnNet.enable_ic_shift``).

Unknowns (trained jointly with the network)
-------------------------------------------
* log a, log b with a = Dw H / L^2, b = rho H: the scaled residual
  R = phi u_t' - a (F lap' u + grad' F . grad' u) - b phi u (1 - u) (:mod:`gbm.pinn.residual`)
  is linear in them;
* s (three numbers): the origin shift;
* one scan: H is nominal (:data:`NOMINAL_DAYS`; u at the scan depends only on
  lambda = sqrt(Dw/rho) = L sqrt(a/b) and rho*T = b); two or more scans: the first scan's
  position q = T0 / H in (0, 1) (a logit is trained), so scan k (d_k days after the first) sits
  at t'_k = q + (1 - q) d_k / (d_last - d_first), and H = (d_last - d_first) / (1 - q),
  rho = b / H, Dw = a L^2 / H, age T0 = q H;
* the thresholds (with ``fit_thresholds``): theta = lo + (hi - lo) sigmoid(z) within their
  bounds, started at and pulled towards the defaults by ``w_theta`` ((theta - theta0)/(hi - lo))^2
  (predict_gbm_pinn's prior pull).

Loss
----
    L = mean_colloc R^2 + w_data * sum_k misfit_k / n_data,

misfit_k = 1/2 sum_v r_v^2 over the data voxels of scan k (the squared hinge of the segmentation
model), n_data the number of data voxels. Collocation: ``colloc`` points, half uniform over the
sub-box and half radial around c (radius L, the paper's distribution), both wherever
phi >= ``phi_min`` (0.02: the diffuse boundary layer is covered, not only phi >= 0.5), times
U(0, 1); redrawn every ``redraw_every`` iterations. Data voxels: a fixed random subset
(``data_points``) of the sub-box's voxels that carry an interval, at each scan.

Training
--------
1. *warm start* (``warm_iters`` L-BFGS iterations, at most a quarter of ``max_iters``): the
   network is fitted to the FD solution of the start parameters (origin c, the size-consistent
   lambda and rho*T of the FD fit's start) read off at the collocation points by the Rust
   observation operator (``FisherKpp.observe``: one solve, no snapshots stored). Without it the
   network stays at the trivial solution u = 0 away from the initial condition (u = 0 solves the
   PDE; the front never propagates). The start is an initial guess only: the estimate comes
   from the joint phase. Measured alternatives (benches/RESULTS.md): a radially symmetric
   start (homogeneous diffusivity) ends the same; a residual-only phase with the unknowns
   frozen after the warm start drifts back to the trivial solution (Dice 0 after 200
   iterations), so the forward PINN alone does not hold the tumour in 3D.
   Then, with ``hold_iters`` > 0 (default 0), a *hold* phase: the full loss over the network
   alone, the unknowns held at the start (an experiment knob, see the known limitation below).
2. *joint*: L-BFGS on the full loss over the network and the unknowns until ``time_budget`` or
   ``max_iters``; the collocation points are redrawn (and L-BFGS restarted) every
   ``redraw_every`` iterations.
Checks every ``check_every`` iterations log the misfit, Dice on the data voxels, lambda, rho*T
(and Dw, rho, age) and the origin; a checkpoint (network, unknowns, L-BFGS state, draw, log, RNG)
is written every ``checkpoint_every`` iterations, and a resumed run continues bit-identically on
CPU (tested).

Known limitation (measured, benches/RESULTS.md "PINN on segmentations"): the network reproduces
the segmentation (Dice >= 0.94 on the atlas patient) but lambda ends far too low. The residual
is a mean square of absolute values, and logistic growth amplifies a small violation e^(rho T)-
fold (e^8 ~ 3000): a faint u ~ 1e-4 that appears at early times costs ~1e-8 in the loss and grows
into a broad low-density cloud by the scan, which lets a small-lambda solution meet the
thresholds. A relative residual R / (u + eps) did not train (eps 1e-3, 2e-2), and a network
carrying w = log u with the exact relative residual R / u drove lambda lower still (0.12 mm on
the 2 mm patient; benches/RESULTS.md), so the faint cloud is not the whole cause.
Started at the FD fit's estimate (lambda within 0.5 % of the truth;
``benches/pinn_patient_diagnostic.py``) the joint phase still moves lambda from 2.29 to 1.12 mm,
and held there for 1,500 iterations and then released it drifts again (to ~1.6 mm within
1,300 iterations): the loss itself, not the start or the schedule, prefers a short lambda
(errors in variables: the fitted network's Laplacian carries error, and a smaller Dw shrinks
the residual that error causes, as with noisy density data).

The fitted u written by ``gbm fit`` (``u_day<D>``, plans) comes from the FD solver at the PINN's
estimate, exactly as for the FD-based fit, so the two methods compare file by file; the
network's own u at the scans is written beside it (``u_pinn_day<D>``) with its Dice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gbm.errors import InputError, require
from gbm.inference.patient_fit import (
    NOMINAL_DAYS,
    FitLevel,
    PatientFitResult,
    PatientFitSettings,
    Physical,
    Unknowns,
)
from gbm.pinn.kernels import keep_heap
from gbm.pinn.network import PinnNet
from gbm.pinn.residual import PointSet, domain_point_set, residual_terms
from gbm.pinn.settings import PinnFitSettings
from gbm.problem.domain import Domain, draw_seed
from gbm.problem.segmentation import IGNORED

__all__ = ["PinnFitSettings", "PinnPatientFit", "fit_segmentations_pinn", "network_u_on_grid"]


@dataclass
class PinnPatientFit:
    """Extra outcome of the PINN fit (besides the :class:`PatientFitResult`)."""

    net: PinnNet
    scan_t: list[float]          # scaled times t' of the scans
    length: float
    horizon: float
    center_local: np.ndarray
    device: str
    threads: int
    iterations: int
    stopped: str
    data_points: int
    colloc: int
    checks: list[dict[str, Any]] = field(default_factory=list)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


class _Model(nn.Module):
    """Network + unknowns of the PINN patient fit."""

    def __init__(self, net: PinnNet, box: tuple[np.ndarray, np.ndarray], a0: float, b0: float,
                 q0: float | None,
                 theta: tuple[tuple[float, float, float], tuple[float, float, float]] | None,
                 fixed_theta: tuple[float, float], dtype: torch.dtype) -> None:
        super().__init__()
        self.net = net
        self.shift = net.enable_ic_shift(*box)
        self.log_a = nn.Parameter(torch.tensor(math.log(a0), dtype=dtype))
        self.log_b = nn.Parameter(torch.tensor(math.log(b0), dtype=dtype))
        self.zq = nn.Parameter(torch.tensor(_logit(q0), dtype=dtype)) if q0 is not None else None
        self.theta_spec = theta
        self.fixed_theta = fixed_theta
        if theta is not None:
            (c0, clo, chi), (e0, elo, ehi) = theta
            self.z_c = nn.Parameter(torch.tensor(_logit((c0 - clo) / (chi - clo)), dtype=dtype))
            self.z_e = nn.Parameter(torch.tensor(_logit((e0 - elo) / (ehi - elo)), dtype=dtype))

    def unknowns(self) -> list[nn.Parameter]:
        ps = [self.log_a, self.log_b, self.shift]
        if self.zq is not None:
            ps.append(self.zq)
        if self.theta_spec is not None:
            ps += [self.z_c, self.z_e]
        return ps

    def thresholds(self) -> tuple[Tensor | float, Tensor | float]:
        if self.theta_spec is None:
            return self.fixed_theta
        (_, clo, chi), (_, elo, ehi) = self.theta_spec
        return (clo + (chi - clo) * torch.sigmoid(self.z_c),
                elo + (ehi - elo) * torch.sigmoid(self.z_e))

    def theta_prior(self) -> Tensor:
        if self.theta_spec is None:
            return self.log_a.new_zeros(())
        tc, te = self.thresholds()
        (c0, clo, chi), (e0, elo, ehi) = self.theta_spec
        return ((tc - c0) / (chi - clo)) ** 2 + ((te - e0) / (ehi - elo)) ** 2

    def scan_times(self, rel: Sequence[float]) -> Tensor:
        """t' of the scans (rel: (d_k - d_first) / (d_last - d_first))."""
        r = torch.as_tensor(list(rel), dtype=self.log_a.dtype, device=self.log_a.device)
        if self.zq is None:
            return torch.ones_like(r)
        q = torch.sigmoid(self.zq)
        return q + (1 - q) * r


def network_u_on_grid(net: PinnNet, shape: Sequence[int], spacing: Sequence[float], t_scaled: float,
                      chunk: int = 131072) -> np.ndarray:
    """The network's u at every voxel centre of a grid (local mm) at scaled time ``t_scaled``."""
    from gbm.plot import grid_points

    dev = next(net.parameters()).device
    dtype = next(net.parameters()).dtype
    pts = grid_points(shape, spacing)
    out = np.empty(pts.shape[0], dtype=np.float64)
    c = net.center.detach().cpu().double().numpy()
    with torch.no_grad():
        for i in range(0, pts.shape[0], chunk):
            xs = torch.as_tensor((pts[i:i + chunk] - c) / net.length, dtype=dtype, device=dev)
            ts = torch.full((xs.shape[0], 1), float(t_scaled), dtype=dtype, device=dev)
            out[i:i + chunk] = net(xs, ts).double().cpu().numpy()
    return out.reshape(tuple(shape))


def _start(unknowns: Unknowns) -> Physical:
    return unknowns.physical(unknowns.x0)


def fit_segmentations_pinn(
    fine: FitLevel, unknowns: Unknowns, fit_settings: PatientFitSettings,
    settings: PinnFitSettings, checkpoint_path: str | Path | None = None, resume: bool = False,
    printer: Callable[[str], None] | None = None,
) -> tuple[PatientFitResult, PinnPatientFit]:
    """Fit the origin, lambda, rho*T (one scan) or Dw, rho, age (several scans) and optionally
    the thresholds with the PINN (see the module docstring).

    Returns the same :class:`PatientFitResult` as the FD-based fit (search coordinates x in the
    FD fit's coordinates, so ``results.json`` reads the same) and the PINN's extras.
    """
    from gbm.pinn.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
    from gbm.pinn.train import resolve_device, setup_threads

    say = printer or (lambda m: print(m, flush=True))
    settings.validate()
    # default: torch's own count (all cores, or what a cohort worker pinned it to)
    threads = setup_threads(settings.threads or torch.get_num_threads())
    device = resolve_device(settings.device)
    if device.type == "cpu":
        keep_heap()  # reuse the epoch's large blocks (gbm.pinn.kernels.keep_heap)
    dtype = torch.float32
    t_start = time.perf_counter()
    g = fine.geom
    nd = g.ndim
    sp = np.asarray(g.spacing, dtype=np.float64)
    days = np.asarray(unknowns.days, dtype=np.float64)
    multi = unknowns.multi
    span = float(days[-1] - days[0]) if multi else 1.0
    rel = [float((d - days[0]) / span) if multi else 1.0 for d in days]

    # ---- scales: c = start origin (core centroid), L, H --------------------------------
    p0 = _start(unknowns)
    c = np.asarray(p0.origin_local, dtype=np.float64)
    union = np.zeros(g.shape, dtype=bool)
    for m in fine.models:
        union |= np.asarray(m.whole, dtype=bool)
    idx = np.argwhere(union) * sp
    length = float(np.sqrt(((idx - c) ** 2).sum(-1)).max()) + settings.length_margin_mm
    if multi:
        horizon0 = p0.t0 + span
        q0: float | None = p0.t0 / horizon0
    else:
        horizon0 = NOMINAL_DAYS
        q0 = None
    a0 = p0.dw * horizon0 / length**2
    b0 = p0.rho * horizon0

    net = PinnNet(nd, c, length, horizon0, settings.width, settings.depth, settings.fourier,
                  settings.sigma_x, settings.sigma_t, settings.seed, dtype)
    theta_spec = None
    if fit_settings.fit_thresholds:
        theta_spec = ((fit_settings.theta_c, *fit_settings.theta_c_range),
                      (fit_settings.theta_e, *fit_settings.theta_e_range))
    # the origin stays in the FD fit's origin box (the first scan's whole tumour + margin),
    # widened by 1 mm where the start sits on its edge
    d = unknowns.ndim
    box = (np.minimum(unknowns.lo[:d], c - 1.0), np.maximum(unknowns.hi[:d], c + 1.0))
    model = _Model(net, box, a0, b0, q0, theta_spec, (fit_settings.theta_c, fit_settings.theta_e),
                   dtype).to(device)

    # ---- data voxels: a fixed random subset of the voxels with an interval ---------------
    rng = np.random.default_rng(draw_seed(settings.seed, 991))
    flat_valid = np.zeros(int(np.prod(g.shape)), dtype=bool)
    for m in fine.models:
        flat_valid |= m.classes.reshape(-1) != IGNORED
    cand = np.flatnonzero(flat_valid)
    require(cand.size > 0, "no voxel of the fit box carries a segmentation label")
    n_data = min(settings.data_points, cand.size)
    pick = np.sort(rng.choice(cand, size=n_data, replace=False))
    pts_data = np.stack(np.unravel_index(pick, g.shape), axis=-1) * sp
    xs_data = torch.as_tensor((pts_data - c) / length, dtype=dtype, device=device)
    from gbm.problem.segmentation import SegmentationModel

    data_models = [SegmentationModel(m.classes.reshape(-1)[pick]) for m in fine.models]
    n_scans = len(fine.models)

    # ---- collocation ------------------------------------------------------------------
    from gbm import _core

    phi = np.ascontiguousarray(fine.phi, dtype=np.float64)
    dom = Domain(phi, np.ascontiguousarray(fine.kfac, dtype=np.float64), tuple(g.spacing), c)

    def draw(counter: int) -> PointSet:
        n_u = settings.colloc // 2
        p_u, t_u = _core.sample_uniform(phi, list(g.spacing), n_u, 1.0,
                                        draw_seed(settings.seed, 2 * counter), settings.phi_min)
        p_r, t_r = _core.sample_radial(phi, list(g.spacing), [float(v) for v in c], length,
                                       settings.colloc - n_u, 1.0,
                                       draw_seed(settings.seed, 2 * counter + 1),
                                       settings.phi_min)
        pts = np.concatenate([p_u, p_r])
        ts = np.concatenate([t_u, t_r]) * horizon0   # domain_point_set divides by the horizon
        ps = domain_point_set(dom, net, pts, ts, device, dtype)
        if warm_iters > 0 and counter * max(settings.redraw_every, 1) < warm_iters:
            # warm start: the FD solution of the start parameters read off at the points
            # (``FisherKpp.observe``, the solver's own value at (x, t); module docstring)
            s0 = _core.FisherKpp(g.initial_condition(c), p0.dw * fine.kfac, phi, list(g.spacing),
                                 p0.rho, safety=fit_settings.safety)
            warm_target[0] = torch.as_tensor(s0.observe(np.ascontiguousarray(pts),
                                                        np.ascontiguousarray(ts)),
                                             dtype=dtype, device=device)
        return ps

    warm_iters = min(settings.warm_iters, settings.max_iters // 4)
    warm_target: list[Tensor | None] = [None]

    # ---- loss --------------------------------------------------------------------------
    def warm_terms(xs: Tensor, ts: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        l_fit = (net(xs, ts) - target).square().mean()
        z = l_fit.new_zeros(())
        return l_fit, z, z

    def loss_terms(xs: Tensor, ts: Tensor, ph: Tensor, F: Tensor, gF: Tensor
                   ) -> tuple[Tensor, Tensor, Tensor]:
        dv = net.derivatives(xs, ts)
        ta, tb, tc_ = residual_terms(dv, PointSet(xs, ts, ph, F, gF))
        a = torch.exp(model.log_a)
        b = torch.exp(model.log_b)
        l_res = (ta - a * tb - b * tc_).square().mean()
        theta_c, theta_e = model.thresholds()
        tks = model.scan_times(rel)
        mis = l_res.new_zeros(())
        for k in range(n_scans):
            tk = tks[k].expand(xs_data.shape[0], 1)
            u = net(xs_data, tk)
            mis = mis + data_models[k].misfit_torch(u, theta_c, theta_e)
        l_data = mis / (n_data * n_scans)
        loss = l_res + settings.w_data * l_data + settings.w_theta * model.theta_prior()
        return loss, l_res, l_data

    loss_fn = loss_terms
    compile_s = None

    # ---- optimiser, checkpoint ---------------------------------------------------------
    def make_lbfgs(params: list[nn.Parameter]) -> torch.optim.LBFGS:
        return torch.optim.LBFGS(params, lr=1.0, max_iter=20, history_size=50,
                                 line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                                 tolerance_change=1e-14)

    it = 0
    hold_end = warm_iters + settings.hold_iters
    phase = "warm" if warm_iters > 0 else ("hold" if settings.hold_iters > 0 else "joint")
    log: list[dict[str, Any]] = []
    elapsed0 = 0.0
    ck = Path(checkpoint_path) if checkpoint_path is not None else None
    loaded = None
    if resume and ck is not None and ck.is_file():
        loaded = load_checkpoint(ck)
        if loaded.get("fingerprint") != _fingerprint(settings, fit_settings, unknowns):
            loaded = None
    if loaded is not None:
        model.load_state_dict(loaded["model"])
        it, phase, log = int(loaded["it"]), str(loaded["phase"]), list(loaded["log"])
        elapsed0 = float(loaded["elapsed"])
        set_rng_state(loaded["rng"])
        say(f"gbm fit (pinn): resuming at iteration {it} ({phase})")
    for p_ in model.unknowns():
        p_.requires_grad_(phase == "joint")
    params = list(net.mlp.parameters()) + (model.unknowns() if phase == "joint" else [])
    opt = make_lbfgs(params)
    if loaded is not None and loaded.get("opt") is not None:
        opt.load_state_dict(loaded["opt"])

    def save() -> None:
        if ck is None:
            return
        save_checkpoint(ck, {"model": model.state_dict(), "it": it, "phase": phase, "log": log,
                             "elapsed": elapsed, "rng": rng_state(), "opt": opt.state_dict(),
                             "key": key,
                             "fingerprint": _fingerprint(settings, fit_settings, unknowns)})

    def physical() -> dict[str, float]:
        with torch.no_grad():
            a = float(torch.exp(model.log_a))
            b = float(torch.exp(model.log_b))
            q = float(torch.sigmoid(model.zq)) if model.zq is not None else None
            tc, te = model.thresholds()
        hor = span / (1 - q) if q is not None else NOMINAL_DAYS
        rho = b / hor
        dw = a * length**2 / hor
        t0 = q * hor if q is not None else NOMINAL_DAYS
        return {"lambda_mm": length * math.sqrt(a / b), "rho_T": rho * t0, "dw": dw,
                "rho": rho, "t0": t0, "theta_c": float(tc), "theta_e": float(te)}

    scan_dice: list[tuple[float, float]] = []   # per scan, at the last check

    def check(loss: float, l_res: float, l_data: float) -> dict[str, Any]:
        ph = physical()
        with torch.no_grad():
            tks = model.scan_times(rel)
            tc, te = (float(v) for v in model.thresholds())
            per_scan = []
            for k, m in enumerate(data_models):
                u = net(xs_data, tks[k].expand(xs_data.shape[0], 1)).double().cpu().numpy()
                # Dice on the data voxels that carry an interval in this scan
                per_scan.append(m.dice(np.where(m.classes != IGNORED, u, 0.0), tc, te))
        scan_dice[:] = per_scan
        origin = model.net.origin().cpu().double().numpy()
        row = {"solve": it, "stage": f"pinn {phase}", "misfit": l_data, "loss": loss,
               "loss_res": l_res, "dice_core": float(np.mean([d[0] for d in per_scan])),
               "dice_whole": float(np.mean([d[1] for d in per_scan])), "seconds": elapsed,
               **{k: float(v) for k, v in ph.items()},
               **{f"origin_{'xyz'[i]}_mm": float(origin[i]) for i in range(nd)}}
        log.append(row)
        return row

    # the draw in use when the checkpoint was written (a resumed run redraws, and restarts
    # L-BFGS, exactly where the uninterrupted run does)
    key = int(loaded["key"]) if loaded is not None else 0
    pts = draw(key)
    if settings.compile:
        t0c = time.perf_counter()
        try:
            torch._dynamo.reset()
            cf = torch.compile(loss_terms, dynamic=False)
            cf(pts.xs, pts.ts, pts.phi, pts.F, pts.gradF)
            loss_fn = cf
        except Exception as exc:  # torch.compile is optional
            say(f"torch.compile failed ({type(exc).__name__}); running eagerly")
            loss_fn = loss_terms
        compile_s = time.perf_counter() - t0c

    say(f"gbm fit (pinn): {nd}D box {g.shape}, L {length:.1f} mm, {settings.colloc} collocation "
        f"points (phi >= {settings.phi_min:g}), {n_data} data voxels x {n_scans} scan(s), "
        f"device {device}, {threads} threads, budget {settings.time_budget:g} s")
    t_loop = time.perf_counter() - elapsed0
    elapsed = elapsed0
    stopped = "max_iters"
    last = {"loss": float("nan"), "l_res": float("nan"), "l_data": float("nan")}
    next_print = time.perf_counter() + settings.progress_seconds
    if not log:
        check(float("nan"), float("nan"), float("nan"))
    while it < settings.max_iters:
        if phase == "warm" and it >= warm_iters:
            phase = "hold" if it < hold_end else "joint"
            if phase == "hold":   # the network alone (a fresh L-BFGS after the warm fit)
                opt = make_lbfgs(list(net.mlp.parameters()))
        if phase == "hold" and it >= hold_end:
            phase = "joint"
        if phase == "joint" and not model.log_a.requires_grad:
            for p_ in model.unknowns():
                p_.requires_grad_(True)
            opt = make_lbfgs(list(net.mlp.parameters()) + model.unknowns())
        new_key = it // settings.redraw_every if settings.redraw_every else 0
        if new_key != key:
            pts, key = draw(new_key), new_key
            opt = make_lbfgs(opt.param_groups[0]["params"])
        box: dict[str, Tensor] = {}

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            if phase == "warm":
                loss, l_res, l_data = warm_terms(pts.xs, pts.ts, warm_target[0])
            else:
                loss, l_res, l_data = loss_fn(pts.xs, pts.ts, pts.phi, pts.F, pts.gradF)
            loss.backward()
            box.update(loss=loss.detach(), l_res=l_res.detach(), l_data=l_data.detach())
            return loss

        cap = min(settings.check_every - it % settings.check_every, settings.max_iters - it)
        if phase == "warm":
            cap = min(cap, warm_iters - it)
        elif phase == "hold":
            cap = min(cap, hold_end - it)
        if settings.redraw_every:
            cap = min(cap, settings.redraw_every - it % settings.redraw_every)
        opt.param_groups[0]["max_iter"] = cap
        opt.param_groups[0]["max_eval"] = cap * 5 // 4 + 1
        before = opt.state[opt._params[0]].get("n_iter", 0)
        opt.step(closure)
        done = max(int(opt.state[opt._params[0]].get("n_iter", 0) - before), 1)
        prev = it
        it += done
        elapsed = time.perf_counter() - t_loop
        last = {k: float(v) for k, v in box.items()}
        if not all(math.isfinite(v) for v in last.values()):
            raise InputError("the PINN fit diverged (non-finite loss); try --pinn-w-data lower "
                             "or --method fd")
        if it // settings.check_every > prev // settings.check_every:
            row = check(last["loss"], last["l_res"], last["l_data"])
            if time.perf_counter() >= next_print:
                say(f"  pinn it {it:6d} [{phase}] loss {last['loss']:.3e} (res "
                    f"{last['l_res']:.2e}, data {last['l_data']:.2e}) Dice "
                    f"{row['dice_core']:.3f}/{row['dice_whole']:.3f} lambda "
                    f"{row['lambda_mm']:.2f} rho*T {row['rho_T']:.2f} {elapsed:5.0f} s")
                next_print = time.perf_counter() + settings.progress_seconds
        if it // settings.checkpoint_every > prev // settings.checkpoint_every:
            save()
        if elapsed >= settings.time_budget:
            stopped = f"time budget {settings.time_budget:g} s"
            break
    if not log or log[-1]["solve"] != it or not scan_dice:
        check(last["loss"], last["l_res"], last["l_data"])
    save()

    # ---- the estimate in the FD fit's terms -------------------------------------------
    ph = physical()
    origin = model.net.origin().cpu().double().numpy()
    p = Physical(origin, ph["lambda_mm"], ph["rho_T"], ph["dw"], ph["rho"], ph["t0"],
                 ph["theta_c"], ph["theta_e"])
    x = list(origin) + [math.log(p.lam), math.log(2 * p.lam * p.rho_t0)]
    if multi:
        x.append(math.log(2 * p.lam * p.rho * span))
    if fit_settings.fit_thresholds:
        x += [p.theta_c, p.theta_e]
    with torch.no_grad():
        tks = [float(v) for v in model.scan_times(rel)]
    final = log[-1]
    res = PatientFitResult(
        x=np.asarray(x, dtype=np.float64), params=p, unknowns=unknowns,
        misfit=float(final["misfit"]),
        dice=list(scan_dice),
        solves={"pinn_iterations": it},
        seconds={"pinn": elapsed, "pinn_compile": compile_s or 0.0,
                 "pinn_setup": time.perf_counter() - t_start - elapsed},
        log=log, status=f"PINN: {it} L-BFGS iterations, stopped at {stopped}")
    extra = PinnPatientFit(net=net, scan_t=tks, length=length, horizon=horizon0,
                           center_local=c, device=str(device), threads=threads, iterations=it,
                           stopped=stopped, data_points=n_data, colloc=settings.colloc,
                           checks=log)
    return res, extra


def _fingerprint(settings: PinnFitSettings, fit_settings: PatientFitSettings,
                 unknowns: Unknowns) -> str:
    import hashlib
    import json

    pinn = {k: v for k, v in asdict(settings).items()
            if k not in ("time_budget", "max_iters", "device", "threads", "progress_seconds",
                         "checkpoint_every", "compile")}
    key = json.dumps({"pinn": pinn, "fit": asdict(fit_settings),
                      "x0": [float(v) for v in unknowns.x0],
                      "days": [float(v) for v in unknowns.days]}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()
