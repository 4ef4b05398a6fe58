"""The PINN on a patient's segmentations: ``gbm fit --method pinn``.

The same problem as the FD-based fit (:mod:`gbm.inference.segmentation_fit`): the diffuse-domain
Fisher-Kolmogorov equation on the patient's tissue maps, from the paper's Gaussian
``0.1 exp(-|x - x0|^2 / 10 mm^2)`` at the origin x0, observed through the nested-threshold
segmentation model (:class:`gbm.problem.segmentation.model.SegmentationModel`, its torch side;
the same instance and formula the FD fit uses). Both methods work on the same fine sub-box (the
whole tumour of all scans + ``crop_mm``), built by
:func:`gbm.problem.segmentation.levels.make_levels`, with the same unknowns
(:class:`gbm.problem.segmentation.unknowns.Unknowns`).

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

Code
----
:func:`fit_segmentations_pinn` builds the loss object
(:func:`gbm.pinn.patient_loss.build_patient_loss`: scales, network and unknowns, data voxels,
collocation sampler), runs it on the :class:`gbm.pinn.train.Trainer` that the density method
uses too (resuming a checkpoint with the same fingerprint), and turns the trained unknowns into
the FD fit's terms (:func:`estimate`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gbm.model.geometry import grid_points
from gbm.pinn.checkpoint import load_checkpoint
from gbm.pinn.kernels import keep_heap
from gbm.pinn.network import PinnNet
from gbm.pinn.patient_loss import PatientLoss, build_patient_loss, loop_settings
from gbm.pinn.settings import PinnFitSettings
from gbm.pinn.train import Trainer, TrainResult, resolve_device, setup_threads
from gbm.problem.segmentation.levels import FitLevel
from gbm.problem.segmentation.unknowns import (
    PatientFitResult,
    PatientFitSettings,
    Physical,
    Unknowns,
)

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


def network_u_on_grid(net: PinnNet, shape: Sequence[int], spacing: Sequence[float], t_scaled: float,
                      chunk: int = 131072) -> np.ndarray:
    """The network's u at every voxel centre of a grid (local mm) at scaled time ``t_scaled``."""

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


def fit_segmentations_pinn(
    fine: FitLevel, unknowns: Unknowns, fit_settings: PatientFitSettings,
    settings: PinnFitSettings, checkpoint_path: str | Path | None = None, resume: bool = False,
    printer: Callable[[str], None] | None = None,
) -> tuple[PatientFitResult, PinnPatientFit]:
    """Fit the origin, lambda, rho*T (one scan) or Dw, rho, age (several scans) and optionally
    the thresholds with the PINN (see the module docstring).

    The loss object (:class:`gbm.pinn.patient_loss.PatientLoss`) runs on the
    :class:`gbm.pinn.train.Trainer`; with ``resume`` a checkpoint at ``checkpoint_path`` written
    with the same settings and unknowns is continued (bit-identically on CPU).

    Returns the same :class:`PatientFitResult` as the FD-based fit (search coordinates x in the
    FD fit's coordinates, so ``results.json`` reads the same) and the PINN's extras.
    """

    say = printer or (lambda m: print(m, flush=True))
    settings.validate()
    # default: torch's own count (all cores, or what a cohort worker pinned it to)
    threads = setup_threads(settings.threads or torch.get_num_threads())
    device = resolve_device(settings.device)
    if device.type == "cpu":
        keep_heap()  # reuse the epoch's large blocks (gbm.pinn.kernels.keep_heap)
    t_start = time.perf_counter()
    loss = build_patient_loss(fine, unknowns, fit_settings, settings, device, torch.float32)
    fingerprint = result_fingerprint(fit_settings, unknowns, pinn=settings)
    trainer = Trainer.for_loss(loss, loop_settings(settings), checkpoint_path,
                               {"fingerprint": fingerprint}, say)
    if resume:
        resume_if_same(trainer, checkpoint_path, fingerprint, say, "pinn")
    loss.prepare()
    if settings.compile:
        loss.compile(say)
    say(f"gbm fit (pinn): {fine.geom.ndim}D box {fine.geom.shape}, L "
        f"{loss.scales.length:.1f} mm, {settings.colloc} collocation points (phi >= "
        f"{settings.phi_min:g}), {loss.data.n} data voxels x {len(loss.data.models)} scan(s), "
        f"device {device}, {threads} threads, budget {settings.time_budget:g} s")
    run = trainer.run()
    stopped = "max_iters" if run.stopped == "max_epochs" else run.stopped  # the knob's name
    res = _result(loss, unknowns, fit_settings, run, stopped,
                  time.perf_counter() - t_start - run.seconds)
    return res, network_extras(loss, device, threads, run, stopped, loss.data.n, settings.colloc)


# ------------------------------------------ shared by the network methods (pinn, recipe, bilo)

#: Settings that change how long or where a network trains, not what it computes: left out of
#: :func:`result_fingerprint`.
RUN_KNOBS = frozenset({"time_budget", "max_iters", "device", "threads", "progress_seconds",
                       "checkpoint_every", "compile"})


def result_fingerprint(fit_settings: PatientFitSettings, unknowns: Unknowns,
                       **settings: Any) -> str:
    """sha256 of what a network fit's result depends on: each settings dataclass of
    ``settings`` (by name, without :data:`RUN_KNOBS`), the fit settings and the unknowns' start
    and days. A checkpoint is resumed only under the same fingerprint."""
    key: dict[str, Any] = {name: {k: v for k, v in asdict(s).items() if k not in RUN_KNOBS}
                           for name, s in settings.items()}
    key.update(fit=asdict(fit_settings), x0=[float(v) for v in unknowns.x0],
               days=[float(v) for v in unknowns.days])
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def resume_if_same(trainer: Trainer, ck: str | Path | None, fingerprint: str,
                   say: Callable[[str], None], label: str) -> None:
    """Continue the checkpoint ``ck`` when it was written under ``fingerprint`` (else start
    afresh); ``label`` names the method in the message."""
    if ck is None or not Path(ck).is_file():
        return
    st = load_checkpoint(Path(ck))
    if st.get("extra", {}).get("fingerprint") != fingerprint:
        return
    trainer.load_state_dict(st)
    say(f"gbm fit ({label}): resuming at step {trainer.epoch} ({trainer.loss.phase})")


def physical_estimate(ph: dict[str, float], origin: np.ndarray, span: float, unknowns: Unknowns,
                      fit_settings: PatientFitSettings) -> tuple[Physical, list[float]]:
    """A network's parameters ``ph`` (``lambda_mm``, ``rho_T``, ``dw``, ``rho``, ``t0``,
    ``theta_c``, ``theta_e``) and origin (fine box local mm) in the FD fit's terms: the Physical
    and the search coordinates x (origin, log lambda, log(2 lambda rho T)[, log(2 lambda rho
    span)][, thresholds])."""
    p = Physical(origin, ph["lambda_mm"], ph["rho_T"], ph["dw"], ph["rho"], ph["t0"],
                 ph["theta_c"], ph["theta_e"])
    x = list(origin) + [math.log(p.lam), math.log(2 * p.lam * p.rho_t0)]
    if unknowns.multi:
        x.append(math.log(2 * p.lam * p.rho * span))
    if fit_settings.fit_thresholds:
        x += [p.theta_c, p.theta_e]
    return p, x


def network_extras(loss: Any, device: torch.device, threads: int, run: TrainResult,
                   stopped: str, data_points: int, colloc: int) -> PinnPatientFit:
    """The :class:`PinnPatientFit` of a finished network fit (``loss`` has ``net``, ``model``
    with ``scan_times`` and ``scales``)."""
    with torch.no_grad():
        tks = [float(v) for v in loss.model.scan_times(loss.scales.rel)]
    return PinnPatientFit(net=loss.net, scan_t=tks, length=loss.scales.length,
                          horizon=loss.scales.horizon, center_local=loss.scales.center,
                          device=str(device), threads=threads, iterations=run.epochs,
                          stopped=stopped, data_points=data_points, colloc=colloc,
                          checks=run.log)


def estimate(loss: PatientLoss, unknowns: Unknowns,
             fit_settings: PatientFitSettings) -> tuple[Physical, list[float]]:
    """The PINN's estimate in the FD fit's terms (:func:`physical_estimate`)."""
    return physical_estimate(loss.model.physical(loss.scales.length, loss.scales.span),
                             loss.net.origin().cpu().double().numpy(), loss.scales.span,
                             unknowns, fit_settings)


def _result(loss: PatientLoss, unknowns: Unknowns, fit_settings: PatientFitSettings,
            run: TrainResult, stopped: str, setup_seconds: float) -> PatientFitResult:
    """The :class:`PatientFitResult` of a finished run (misfit and Dice of its last check)."""
    p, x = estimate(loss, unknowns, fit_settings)
    return PatientFitResult(
        x=np.asarray(x, dtype=np.float64), params=p, unknowns=unknowns,
        misfit=float(run.log[-1]["misfit"]),
        dice=list(loss.scan_dice),
        solves={"pinn_iterations": run.epochs},
        seconds={"pinn": run.seconds, "pinn_compile": loss.compile_seconds or 0.0,
                 "pinn_setup": setup_seconds},
        log=run.log, status=f"PINN: {run.epochs} L-BFGS iterations, stopped at {stopped}")
