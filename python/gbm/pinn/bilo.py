"""Bilevel local operator learning (BiLO) on a patient's segmentations: ``gbm fit --method bilo``.

BiLO (Zhang and Lowengrub, J. Comput. Phys. 551 (2026) 114679; arXiv 2404.17789) on the same
problem as the FD-based fit and the PINN (:mod:`gbm.pinn.patient`): the diffuse-domain
Fisher-Kolmogorov equation from the paper's Gaussian at the origin, observed through the
nested-threshold segmentation model (the torch side of
:class:`gbm.problem.segmentation.model.SegmentationModel`), with the shared unknowns
(:class:`gbm.problem.segmentation.unknowns.Unknowns`: origin, lambda, rho*T for one scan; Dw,
rho, age for two or more), on the fine sub-box of
:func:`gbm.problem.segmentation.levels.make_levels`.

Why (benches/RESULTS.md "PINN on segmentations"): the PINN trains the parameters on the residual
and the data together, and the residual of an imperfect network prefers a short lambda (errors in
variables). BiLO keeps the residual away from the parameters.

Scaling and parameters
----------------------
As the PINN (:mod:`gbm.pinn.patient`): x' = (x - c) / L, t' = t / H, c the first scan's core
centroid, L the farthest whole-tumour voxel + 10 mm, H nominal (one scan) or the start's age +
the span (several scans); theta = (log a, log b, s) with a = Dw H / L^2, b = rho H and the
origin x0 = c + L s (s inside the FD fit's origin box, a sigmoid); several scans add the first
scan's t' = q (a logit), which only moves the scan times.

The network is a local solution operator, u = N(x', t'; theta) (:class:`gbm.pinn.bilo_net.BiloNet`:
theta as extra inputs, the initial condition at s exact).

Levels
------
* lower (the weights W, theta held fixed):
  ``L_lower(W; theta) = mean R^2 + w_grad mean |dR/dtheta'|^2 + w_fit mean (u - u_FD(theta))^2``
  over the collocation points, R the scaled residual of :mod:`gbm.pinn.residual` of
  u = N(.; theta), dR/dtheta its total derivative per point (through u and a, b; per unit of the
  network's parameter inputs): with it the network learns the sensitivities du/dtheta (the
  linearised PDE), not only u at one theta. One Adam step (``lr_net``) per step; collocation
  points redrawn every ``redraw_every`` steps (the PINN's sampler: half uniform, half radial
  around c, phi >= phi_min, t' ~ U(0, 1)).
  The third term departs from the paper, whose lower level has the first two only: u_FD(theta)
  is the FD solution at the current theta read off at the collocation points (one solve after
  every upper step). Without it (``w_fit = 0``) the lower level is the forward PINN alone, and it
  drifts to the trivial solution as the PINN's residual-only phase does (benches/RESULTS.md):
  measured on the test disk, the network's whole-tumour Dice fell from 0.52 to 0 within 200
  lower steps while the upper level chased it. The term only anchors u at theta; du/dtheta is
  still learnt from dR/dtheta alone.
* upper (theta only): the data misfit ``sum_k misfit_k / (n_data n_scans)`` of the network at
  theta (the same squared hinge as the PINN and the FD fit), its gradient through du/dtheta of the
  network (and du/dt' at the scan times), never through the residual. One Adam step
  (``lr_theta``) after every ``lower_steps`` lower steps. ``upper_u = "fd"`` (an experiment)
  evaluates the misfit's residuals at u_FD(theta) instead of the network's u, keeping the
  network's du/dtheta: then the truth is a fixed point whatever the network's value error.

Start and pre-training
----------------------
The start is the shared radial, size-consistent start ``Unknowns.x0`` (origin at the first scan's
core centroid, lambda 2 mm, r1 = 1.1 x the whole tumour's equivalent radius; several scans: the
advance g from the radii), as the PINN's; not the FD fit's answer. Pre-training (``pre_iters``
L-BFGS iterations, at most half of ``max_iters``): the lower loss + ``w_fit`` mean (u - u_FD)^2,
u_FD the FD solution at the start read off at the collocation points (``FisherKpp.observe``, as
the PINN's warm start), so that the operator starts accurate around the start. A coarse FD fit as
the start was not measured (issue 20 item 1 asks for both; see the report).

Measured (issue 20; benches/RESULTS.md "BiLO")
----------------------------------------------
The method is what it claims (tests/test_bilo.py: the upper gradient through du/dtheta equals
finite differences of the network's misfit; dR/dtheta equals finite differences of R), but it
does not reach issue 20's targets. The cause, measured on the 2D disk of the tests after 300
pre-training iterations (float64, width 32): the network's sensitivities du/dtheta at the data
voxels are not the FD model's -- relative errors 0.8-1.1, cosines -0.25 (log a), 0.75 (log b),
~0 (origin) -- so the upper level's gradient points elsewhere than the FD misfit's (log a's
with the wrong sign); after 1,500 pre-training iterations u is accurate there (rms 0.012) and
the sensitivity to rho right (cosine 0.97), those to Dw and the origin still not (cosines -0.36,
-0.08, 0.82), and a fit with 1,250 pre-training iterations met every target for one seed of
three (lambda -6.5 %, rho*T +5.9 %, origin 1.4 mm, FD-model Dice 0.96) and not for the other two
(lambda -42 %, -59 %, rho*T long). On the 2 mm atlas patient the upper steps raise the misfit
from the start (rho*T moves from 7.2 down while the truth is 10); started at the truth it walks
away as well (lambda -10 %, rho*T -14 %, origin 2.7 mm off after 300 s). The residual no longer
pulls the parameters (the PINN's bias is gone), but the learnt local operator is not accurate
enough in theta, within a CPU budget, for the data to steer them reliably (benches/RESULTS.md
"BiLO": figures and a reading of why).

Outputs
-------
As the PINN: the estimate's u from the FD solver at the scans and forecast days, plans and
figures (by ``gbm fit``), and the network's own u at the fitted parameters (``u_pinn_day<D>``).
Checks every ``check_every`` steps log the misfit, Dice on the data voxels, the residual and its
parameter gradient, lambda, rho*T (Dw, rho, age) and the origin; checkpoints every
``checkpoint_every`` steps (network, parameters, both Adam states, the L-BFGS state, the draw, the
log, RNG) continue bit-identically on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gbm.pinn.bilo_loss import BiloLoss, bilo_loop_settings, build_bilo_loss
from gbm.pinn.bilo_settings import BiloSettings
from gbm.pinn.kernels import keep_heap
from gbm.pinn.patient import (
    PinnPatientFit,
    estimate,
    network_extras,
    result_fingerprint,
    resume_if_same,
)
from gbm.pinn.train import Trainer, TrainResult, resolve_device, setup_threads
from gbm.problem.segmentation.levels import FitLevel
from gbm.problem.segmentation.unknowns import PatientFitResult, PatientFitSettings, Unknowns

__all__ = ["BiloSettings", "fit_segmentations_bilo"]


def fit_segmentations_bilo(
    fine: FitLevel, unknowns: Unknowns, fit_settings: PatientFitSettings,
    settings: BiloSettings, checkpoint_path: str | Path | None = None, resume: bool = False,
    printer: Callable[[str], None] | None = None,
) -> tuple[PatientFitResult, PinnPatientFit]:
    """Fit the origin, lambda, rho*T (one scan) or Dw, rho, age (several scans) by BiLO (module
    docstring); thresholds fixed.

    Returns the same :class:`PatientFitResult` as the other fits (search coordinates in the FD
    fit's terms) and the network's extras as a :class:`gbm.pinn.patient.PinnPatientFit` (its
    ``net`` a :class:`gbm.pinn.bilo_net.BiloNet` evaluating at the estimate). With ``resume``
    a checkpoint at ``checkpoint_path`` written with the same settings and unknowns is
    continued (bit-identically on CPU).
    """
    say = printer or (lambda m: print(m, flush=True))
    settings.validate()
    threads = setup_threads(settings.threads or torch.get_num_threads())
    device = resolve_device(settings.device)
    if device.type == "cpu":
        keep_heap()
    t_start = time.perf_counter()
    dtype = torch.float64 if settings.dtype == "float64" else torch.float32
    loss = build_bilo_loss(fine, unknowns, fit_settings, settings, device, dtype)
    fingerprint = result_fingerprint(fit_settings, unknowns, bilo=settings)
    trainer = Trainer.for_loss(loss, bilo_loop_settings(settings), checkpoint_path,
                               {"fingerprint": fingerprint}, say)
    if resume:
        resume_if_same(trainer, checkpoint_path, fingerprint, say, "bilo")
    say(f"gbm fit (bilo): {fine.geom.ndim}D box {fine.geom.shape}, L "
        f"{loss.scales.length:.1f} mm, {settings.colloc} collocation points, {loss.data.n} "
        f"data voxels x {len(loss.data.models)} scan(s), {loss.pre_iters} pre-training + "
        f"bilevel steps ({settings.lower_steps} lower per upper), device {device}, {threads} "
        f"threads, budget {settings.time_budget:g} s")
    run = trainer.run()
    stopped = "max_iters" if run.stopped == "max_epochs" else run.stopped
    res = _result(loss, unknowns, fit_settings, run, stopped,
                  time.perf_counter() - t_start - run.seconds)
    return res, network_extras(loss, device, threads, run, stopped, loss.data.n, settings.colloc)


def _result(loss: BiloLoss, unknowns: Unknowns, fit_settings: PatientFitSettings,
            run: TrainResult, stopped: str, setup_seconds: float) -> PatientFitResult:
    """The :class:`PatientFitResult` of a finished run (misfit and Dice of its last check)."""
    p, x = estimate(loss, unknowns, fit_settings)  # type: ignore[arg-type]
    return PatientFitResult(
        x=np.asarray(x, dtype=np.float64), params=p, unknowns=unknowns,
        misfit=float(run.log[-1]["misfit"]), dice=list(loss.scan_dice),
        solves={"bilo_steps": run.epochs, "bilo_upper_steps": loss.upper_steps},
        seconds={"bilo": run.seconds, "bilo_setup": setup_seconds},
        log=run.log, status=(f"BiLO: {loss.pre_iters} pre-training L-BFGS iterations, "
                             f"{run.epochs - min(run.epochs, loss.pre_iters)} lower steps, "
                             f"{loss.upper_steps} upper steps, stopped at {stopped}"))
