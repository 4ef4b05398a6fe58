"""PINN-GBM's recipe on a patient's segmentations: ``gbm fit --method pinn --recipe pinn-gbm``, a
baseline that shows where the field's published network recipe stands on gbm's patients.

PINN-GBM: Zhang, Ezhov, Balcerak, Zhu, Wiestler, Menze, Lowengrub, Medical Image Analysis 101
(2025) 103423; its PyTorch port predict_gbm_pinn (github.com/Rayzhangzirui/predict_gbm_pinn:
``gbmutil.est_char_param``, ``Engine``, ``GBMproblem``, ``Options``). Same problem, inputs,
unknowns' meaning and outputs as the other methods (:mod:`gbm.pinn.patient`,
:mod:`gbm.inference.segmentation_fit`): the model is the diffuse-domain Fisher-Kolmogorov
equation from the paper's Gaussian; the written u and plans come from the FD solver at the
recipe's estimate.

Recipe
------
1. *Characteristic fit* (:mod:`gbm.pinn.recipe_radial`): lambda and rho*T (several scans: rho and
   the age too) of a radially symmetric tumour with the scans' core and whole-tumour radii.
2. *Scales*: origin x0 = c, the first scan's core centroid, fixed (not learnt); x' = (x - c) / L
   with L the largest distance from c to a whole-tumour voxel + 10 mm; t' = t / H with H the
   radial fit's age (one scan: nominal, 100 days; two: T0 + the span). a0 = Dw H / L^2 and
   b0 = rho H from the radial fit.
3. *Pre-training* (phase "pretrain", ``pretrain_iters`` L-BFGS iterations, or until
   ``pretrain_share`` of the budget): the network alone on
   ``w_res mean R^2 + w_fd mean((u - u_FD) phi)^2`` at the collocation points, R the scaled
   residual at (a0, b0) (:mod:`gbm.pinn.residual`), u_FD the FD solution at the radial fit on
   the patient's tissue (one FD solve per collocation draw, ``FisherKpp.observe``).
4. *Fine-tuning* (phase "finetune", ``finetune_iters`` Adam steps or the rest of the budget): the
   network, the factors f_D, f_rho (a = f_D a0, b = f_rho b0) and the thresholds on
   ``w_res mean R^2 + w_seg sum_scans,regions L_seg / n_scans + priors``, with
   ``L_seg = mean((sigmoid(k (u - theta)) - mask)^2 phi^2) / mean(mask^2)`` per region (whole
   tumour at theta_e, core at theta_c; :func:`gbm.pinn.recipe_loss.sigmoid_segmentation_loss`)
   and the priors ``w_factor ((f_D - 1)^2 + (f_rho - 1)^2) + w_theta sum (theta - theta0)^2``.

Taken from the paper / port: the radial characteristic fit to the two radii in a homogeneous
medium from a Gaussian start, the radial D taken as Dw; the fixed origin at the core centroid; the
pre-training loss (residual + 10 x phi-weighted MSE to the FD solution at the characteristic
parameters); fine-tuning with Adam lr 1e-3 for
1,000 steps (``iter_inv``) on residual (weight 1) + sigmoid segmentation MSE (sharpness 20 as in
``GBMproblem.sigmoid_binarize``, weight 1e-5 per region, normalised by mean(mask^2), phi-weighted)
+ priors of weight 1e-3 on the factors (towards 1) and on the learnt thresholds (towards their
priors); parameters as multiplicative factors on the characteristic ones; no data term on the FD
solution while fine-tuning.

gbm's choices (where the port differs, is silent, or does not fit gbm's problem):

* the factors stay in [0.75, 1.25] by construction (f = 0.75 + 0.5 sigmoid(z), the issue's range;
  the port's ``rD_range`` is [0, 2] with a penalty) and their prior of 1e-3 is kept; Adam's lr for
  the logits z (factors and thresholds) is 1e-2, which moves f about as fast as the port's lr
  1e-3 on f itself (df/dz = 0.125 at the start);
* the thresholds' priors and bounds are gbm's observation model's (theta_c 0.675 in
  [0.5, 0.85], theta_e 0.25 in [0.05, 0.5]; the port: 0.7 / 0.35 in [0, 1]), so that the recipe
  and the other methods read the segmentation alike; the fitted thresholds are reported;
* radii: equivalent radii (the port's ``radius_method='rvol'``; its default is ``'rmax'``), the
  fit solved by root finding in lambda with rho*T from the same profile (the port: a 10 x 10
  grid over D, rho with T tied to L / sqrt(D rho));
* two or more scans (the port fits one): the radial fit gives lambda, rho and the age
  (:mod:`gbm.pinn.recipe_radial`), the scans sit at their t' with the age fixed, and the
  segmentation loss averages over the scans;
* pre-training by L-BFGS (at most 500 iterations, gbm's optimiser for fitting a network to a
  field) instead of the port's 4,000 Adam steps at lr 1e-3 (``iter_init``): on 2 shared CPU cores
  an Adam step at 4,000 points takes 0.3-0.5 s, and Adam needs thousands of them to fit a 3D
  tumour, which the study's budget does not hold; pre-training only has to put the network at
  the FD solution of the characteristic fit, and fine-tuning (the part that infers) keeps the
  port's Adam;
* gbm's network (:class:`gbm.pinn.network.PinnNet`: 3 x 100 tanh, 64 Fourier features, hard
  initial condition) and collocation (``colloc`` = 4,000 points per draw, half uniform half
  radial, where phi >= 0.02, redrawn every 500 epochs) instead of the port's 4 x 128 net with
  200,000 residual points per step over the whole crop x 101 times on a GPU; the data voxels are
  the same random subset as ``--recipe gbm`` (24,000 labelled voxels);
* no residual weighting in time or radius (the port's defaults make them ~1) and no
  torch.compile;
* pre-training ends at ``pretrain_share`` (0.5) of the budget if its iterations are not done by
  then, so that fine-tuning always runs; fine-tuning ends at its 1,000 steps or the budget,
  whichever comes first (the study reports the steps done).

The fitted u written by ``gbm fit`` comes from the FD solver at the estimate; the network's own
u at the scans is written beside it (``u_pinn_day<D>``), as for ``--recipe gbm``.

Units: mm, days, Dw mm^2/day, rho 1/day.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gbm.pinn.kernels import keep_heap
from gbm.pinn.network import PinnNet
from gbm.pinn.optim import LoopSettings
from gbm.pinn.patient import (
    PinnPatientFit,
    network_extras,
    physical_estimate,
    result_fingerprint,
    resume_if_same,
)
from gbm.pinn.patient_loss import PatientSampler, PatientScales, data_voxels, patient_scales
from gbm.pinn.recipe_loss import RecipeData, RecipeLoss, RecipeModel, RecipeSettings
from gbm.pinn.recipe_radial import RadialFit, radial_fit, region_radii
from gbm.pinn.settings import PinnFitSettings
from gbm.pinn.train import Trainer, TrainResult, resolve_device, setup_threads
from gbm.problem.segmentation.levels import FitLevel
from gbm.problem.segmentation.unknowns import (
    PatientFitResult,
    PatientFitSettings,
    Physical,
    Unknowns,
)

__all__ = ["RecipeSettings", "fit_segmentations_recipe", "recipe_scales"]


def recipe_scales(fine: FitLevel, unknowns: Unknowns, fit_settings: PatientFitSettings,
                  settings: PinnFitSettings) -> tuple[PatientScales, RadialFit]:
    """The radial fit and the scales built on it (module docstring, steps 1-2)."""
    base = patient_scales(fine, unknowns, settings)      # c, L, span, rel
    vv, nd = fine.geom.voxel_volume, fine.geom.ndim
    radii = [region_radii(m.core, m.whole, vv, nd) for m in fine.models]
    rf = radial_fit(radii, [float(d) for d in unknowns.days], fit_settings.theta_c,
                    fit_settings.theta_e, nd, fit_settings.lambda_range)
    if unknowns.multi:
        horizon = rf.t0 + base.span
        q0: float | None = rf.t0 / horizon
    else:
        horizon, q0 = rf.t0, None
    start = Physical(np.asarray(base.center, dtype=np.float64), rf.lam, rf.rho_t0, rf.dw, rf.rho,
                     rf.t0, fit_settings.theta_c, fit_settings.theta_e)
    scales = dataclasses.replace(base, start=start, horizon=horizon, q0=q0,
                                 a0=rf.dw * horizon / base.length**2, b0=rf.rho * horizon)
    return scales, rf


def build_recipe_loss(fine: FitLevel, unknowns: Unknowns, fit_settings: PatientFitSettings,
                      settings: PinnFitSettings, rs: RecipeSettings, device: torch.device,
                      dtype: torch.dtype = torch.float32) -> tuple[RecipeLoss, RadialFit]:
    """The recipe's loss object on the fine level (network seeded by ``settings.seed``)."""
    scales, rf = recipe_scales(fine, unknowns, fit_settings, settings)
    net = PinnNet(fine.geom.ndim, scales.center, scales.length, scales.horizon, settings.width,
                  settings.depth, settings.fourier, settings.sigma_x, settings.sigma_t,
                  settings.seed, dtype)
    theta = ((fit_settings.theta_c, *fit_settings.theta_c_range),
             (fit_settings.theta_e, *fit_settings.theta_e_range))
    model = RecipeModel(net, scales.a0, scales.b0, scales.q0, theta, rs.factor_range,
                        dtype).to(device)
    voxels = data_voxels(fine, settings, scales, device, dtype)
    data = RecipeData.build(voxels, np.asarray(fine.phi, dtype=np.float64), fine.geom.spacing,
                            scales)
    sampler = PatientSampler(fine, settings, fit_settings.safety, scales, net, rs.pretrain_iters,
                             device, dtype)
    loss = RecipeLoss(model, data, sampler, scales, rs, settings.redraw_every,
                      settings.time_budget)
    return loss, rf


def fit_segmentations_recipe(
    fine: FitLevel, unknowns: Unknowns, fit_settings: PatientFitSettings,
    settings: PinnFitSettings, checkpoint_path: str | Path | None = None, resume: bool = False,
    printer: Callable[[str], None] | None = None, recipe: RecipeSettings | None = None,
) -> tuple[PatientFitResult, PinnPatientFit]:
    """Fit the patient with PINN-GBM's recipe (module docstring); returns the same
    :class:`PatientFitResult` as the other methods (search coordinates x in the FD fit's terms)
    and the network's extras. With ``resume``, a checkpoint at ``checkpoint_path`` written with
    the same settings and unknowns is continued."""
    say = printer or (lambda m: print(m, flush=True))
    settings.validate()
    rs = recipe or RecipeSettings()
    settings = dataclasses.replace(settings, colloc=rs.colloc, check_every=rs.check_every)
    threads = setup_threads(settings.threads or torch.get_num_threads())
    device = resolve_device(settings.device)
    if device.type == "cpu":
        keep_heap()
    t_start = time.perf_counter()
    loss, rf = build_recipe_loss(fine, unknowns, fit_settings, settings, rs, device)
    say(f"gbm fit (pinn-gbm): radial fit lambda {rf.lam:.2f} mm, rho*T {rf.rho_t0:.2f}"
        + (f", Dw {rf.dw:.4f}, rho {rf.rho:.5f}, age {rf.t0:.0f} d" if unknowns.multi else "")
        + f" (radii core/whole {', '.join(f'{a:.1f}/{b:.1f}' for a, b in rf.radii)} mm; "
        f"{rf.solves} radial solves)")
    fingerprint = result_fingerprint(fit_settings, unknowns, pinn=settings, recipe=rs)
    loop = LoopSettings(rs.pretrain_iters + rs.finetune_iters, settings.time_budget,
                        settings.check_every, settings.checkpoint_every,
                        settings.progress_seconds, print_every_check=False)
    trainer = Trainer.for_loss(loss, loop, checkpoint_path, {"fingerprint": fingerprint}, say)
    if resume:
        resume_if_same(trainer, checkpoint_path, fingerprint, say, "pinn-gbm")
    say(f"gbm fit (pinn-gbm): {fine.geom.ndim}D box {fine.geom.shape}, L "
        f"{loss.scales.length:.1f} mm, H {loss.scales.horizon:.0f} d, {settings.colloc} "
        f"collocation points, {loss.data.voxels.n} data voxels x {len(fine.models)} scan(s), "
        f"device {device}, {threads} threads, budget {settings.time_budget:g} s")
    run = trainer.run()
    res = _result(loss, unknowns, fit_settings, run, rf, time.perf_counter() - t_start
                  - run.seconds)
    return res, network_extras(loss, device, threads, run, run.stopped, loss.data.voxels.n,
                               settings.colloc)


def estimate(loss: RecipeLoss, unknowns: Unknowns,
             fit_settings: PatientFitSettings) -> tuple[Physical, list[float]]:
    """The recipe's estimate in the FD fit's terms (the fitted thresholds in the Physical; in x
    only with ``fit_thresholds``)."""
    return physical_estimate(loss.physical(), loss.net.origin().cpu().double().numpy(),
                             loss.scales.span, unknowns, fit_settings)


def _result(loss: RecipeLoss, unknowns: Unknowns, fit_settings: PatientFitSettings,
            run: TrainResult, rf: RadialFit, setup_seconds: float) -> PatientFitResult:
    p, x = estimate(loss, unknowns, fit_settings)
    ph = loss.physical()
    return PatientFitResult(
        x=np.asarray(x, dtype=np.float64), params=p, unknowns=unknowns,
        misfit=float(run.log[-1]["misfit"]), dice=list(loss.scan_dice),
        solves={"pinn_iterations": run.epochs, "radial_solves": rf.solves},
        seconds={"pinn": run.seconds, "pinn_compile": 0.0, "pinn_setup": setup_seconds},
        log=run.log,
        status=(f"PINN-GBM recipe: radial fit lambda {rf.lam:.3g} mm, rho*T {rf.rho_t0:.3g}; "
                f"{run.epochs} Adam steps, stopped at {run.stopped}; factors f_D "
                f"{ph['factor_d']:.3f}, f_rho {ph['factor_rho']:.3f}; thresholds learnt "
                f"{ph['theta_c']:.3f} / {ph['theta_e']:.3f}"))
