"""The BiLO patient fit's loss object (:class:`BiloLoss`), run by
:class:`gbm.pinn.train.Trainer`; the method is described in :mod:`gbm.pinn.bilo`.

Pieces shared with the PINN fit (:mod:`gbm.pinn.patient_loss`): the scales
(:func:`patient_scales`), the unknowns as one module (:class:`PatientModel`: log a, log b, the
origin's shift on the network, the first scan's t'), the data voxels (:func:`data_voxels`) and
the collocation sampler with the FD solution of the start (:class:`PatientSampler`).

Units: scaled (x' = (x - c) / L, t' = t / H); mm and days in the rows.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gbm.errors import InputError
from gbm.pinn.bilo_net import BiloNet
from gbm.pinn.bilo_settings import BiloSettings
from gbm.pinn.optim import LoopSettings, Progress, lbfgs_step, make_lbfgs
from gbm.pinn.patient_loss import (
    DataVoxels,
    PatientModel,
    PatientSampler,
    PatientScales,
    check_columns,
    data_voxels,
    patient_scales,
)
from gbm.pinn.residual import PointSet, domain_point_set, residual_terms
from gbm.problem.domain import draw_seed
from gbm.problem.segmentation.levels import FitLevel
from gbm.problem.segmentation.model import IGNORED
from gbm.problem.segmentation.unknowns import PatientFitSettings, Unknowns

__all__ = ["BiloLoss", "build_bilo_loss", "bilo_loop_settings"]


def bilo_loop_settings(s: BiloSettings) -> LoopSettings:
    """The Trainer's loop knobs of the BiLO fit."""
    return LoopSettings(s.max_iters, s.time_budget, s.check_every, s.checkpoint_every,
                        s.progress_seconds, print_every_check=False)


class BiloLoss:
    """The BiLO loss object: pre-training ("pre", L-BFGS), then the bilevel phase ("bilevel":
    a lower Adam step on the weights every step, an upper Adam step on the parameters every
    ``lower_steps`` steps). See :mod:`gbm.pinn.bilo`."""

    def __init__(self, model: PatientModel, data: DataVoxels, sampler: PatientSampler,
                 scales: PatientScales, settings: BiloSettings, pre_iters: int) -> None:
        self.progress = Progress()
        self.model = model
        self.net: BiloNet = model.net  # type: ignore[assignment]
        self.data = data
        self.sampler = sampler
        self.scales = scales
        self.s = settings
        self.pre_iters = pre_iters
        self.phase = "pre" if pre_iters > 0 else "bilevel"
        self.key = 0
        self.points: PointSet | None = None
        self.raw: tuple[np.ndarray, np.ndarray] | None = None   # the draw in mm, days
        self.target: Tensor | None = None
        self.target_theta: Tensor | None = None
        self.jitter: Tensor | None = None
        self.data_target: list[Tensor] | None = None
        nan = float("nan")
        self.last = {"l_res": nan, "l_grad": nan, "l_fit": nan, "l_data": nan}
        self.scan_dice: list[tuple[float, float]] = []
        self.compile_seconds: float | None = None
        self.upper_steps = 0
        for p in model.unknowns():
            p.requires_grad_(False)
        self.lower = torch.optim.Adam(self.net.mlp.parameters(), lr=settings.lr_net)
        self.upper = torch.optim.Adam(model.unknowns(), lr=settings.lr_theta)
        self.lbfgs = make_lbfgs(self.net.mlp.parameters())
        self.net.set_theta(self.theta())

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    # ---------------------------------------------------------------- parameters
    def theta(self) -> Tensor:
        """theta = (log a, log b, s) (p,), differentiable in the unknowns."""
        m = self.model
        return torch.cat([m.log_a.reshape(1), m.log_b.reshape(1), self.net.shift()])

    # ---------------------------------------------------------------- draws
    def redraw(self, key: int) -> None:
        """Use collocation draw ``key`` (the PINN's sampler); its FD target follows."""
        self.raw = self.sampler.points(key)
        self.points = domain_point_set(self.sampler.domain, self.net, *self.raw,
                                       self.sampler.device, self.sampler.dtype)
        self.jitter = None
        if self.s.theta_jitter > 0:   # per-point parameter offsets of this draw (input units)
            gen = torch.Generator().manual_seed(draw_seed(self.s.seed, 7919 + key))
            z = torch.randn(len(self.raw[1]), self.net.n_theta, generator=gen,
                            dtype=torch.float64)
            self.jitter = (z * self.s.theta_jitter).to(self.net.theta_scale) \
                * self.net.theta_scale
        self.target_theta = None
        self.key = key

    def refresh_target(self) -> None:
        """u_FD at the current parameters (one FD solve read off by ``FisherKpp.observe``
        through the PINN sampler's solver) at the draw in use (``target``) and, with
        ``upper_u="fd"``, at the data voxels at each scan's t' (``data_target``); unless they
        are there."""
        with torch.no_grad():
            theta = self.theta().detach()
            tks = self.model.scan_times(self.scales.rel).detach()
        key = torch.cat([theta, tks])
        if self.target_theta is not None and torch.equal(key, self.target_theta):
            return
        a, b = (float(v) for v in torch.exp(theta[:2]))
        sc = self.scales
        origin = self.net.origin().cpu().double().numpy()
        dw, rho = a * sc.length**2 / sc.horizon, b / sc.horizon   # on the network's H
        p = replace(sc.start, origin_local=origin, dw=dw, rho=rho, lam=math.sqrt(dw / rho),
                    rho_t0=b, t0=sc.horizon)
        at = copy.copy(self.sampler)
        at.scales = replace(sc, start=p, center=origin)
        assert self.raw is not None
        pts, ts = self.raw
        n_c = len(ts)
        if self.s.upper_u == "fd":   # the data voxels at every scan, in the same solve
            xd = self.data.xs.detach().cpu().double().numpy() * sc.length + sc.center
            k = len(self.data.models)
            pts = np.concatenate([pts] + [xd] * k)
            ts = np.concatenate([ts] + [np.full(len(xd), float(t) * sc.horizon)
                                        for t in tks.cpu()])
        u = at.warm_target(pts, ts)
        self.target = u[:n_c]
        self.data_target = list(u[n_c:].reshape(-1, self.data.n)) if n_c < len(u) else None
        self.target_theta = key.clone()

    def prepare(self) -> None:
        if self.points is None:
            self.redraw(self.key)
        if self.s.w_fit > 0 or self.s.upper_u == "fd":
            self.refresh_target()

    # ---------------------------------------------------------------- loss terms
    def residual_and_gradient(self, ps: PointSet, theta: Tensor, jitter: Tensor | None = None
                              ) -> tuple[Tensor, Tensor, Tensor]:
        """u (N,), R (N,) and dR/dtheta' (N, p) at the points for fixed ``theta`` (detached),
        plus the per-point offsets ``jitter`` (N, p) where given.

        R = phi u_t' - a (F lap' u + grad' F . grad' u) - b phi u (1 - u) with u = N(.; theta)
        and a = e^theta_0, b = e^theta_1; dR/dtheta is the total derivative (through u and
        explicitly through a, b), per point, by autograd with a graph (so the weights' gradient
        of its square follows); theta' = the network's parameter inputs, i.e. dR/dtheta times
        :data:`gbm.pinn.bilo_net.LOG_SCALE` (logs) and ``SHIFT_SCALE_MM / L`` (shift)."""
        n = ps.xs.shape[0]
        th = theta.detach().expand(n, theta.shape[0]).clone()
        th = (th if jitter is None else th + jitter).requires_grad_(True)
        dv = self.net.derivatives(ps.xs, ps.ts, th)
        ta, tb, tc = residual_terms(dv, ps)
        r = ta - torch.exp(th[:, 0]) * tb - torch.exp(th[:, 1]) * tc
        (g,) = torch.autograd.grad(r.sum(), th, create_graph=True)
        return dv.u, r, g * self.net.theta_scale

    def lower_terms(self, ps: PointSet, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(u at theta, mean R^2, mean |dR/dtheta'|^2) (:meth:`residual_and_gradient`; with
        ``theta_jitter`` the residual terms at the draw's offsets around theta)."""
        u, r, g = self.residual_and_gradient(ps, theta, self.jitter)
        if self.jitter is not None:
            u = self.net.field(ps.xs, ps.ts, theta.detach())
        return u, r.square().mean(), g.square().sum(-1).mean()

    def lower_loss(self, ps: PointSet, theta: Tensor, target: Tensor | None
                   ) -> tuple[Tensor, dict[str, Tensor]]:
        """The lower level's loss: mean R^2 + w_grad mean |dR/dtheta'|^2 + w_fit mean (u -
        u_FD(theta))^2, and its terms (detached)."""
        u, l_res, l_grad = self.lower_terms(ps, theta)
        loss = l_res + self.s.w_grad * l_grad
        terms = {"l_res": l_res.detach(), "l_grad": l_grad.detach()}
        if self.s.w_fit > 0 and target is not None:
            l_fit = (u - target).square().mean()
            loss = loss + self.s.w_fit * l_fit
            terms["l_fit"] = l_fit.detach()
        return loss, terms

    def data_loss(self, theta: Tensor, fd: bool = False) -> Tensor:
        """sum_k misfit_k / (n_data * n_scans) of the network at ``theta`` and the scans' t'
        (the segmentation model's torch side; differentiable in theta and the scan times).

        ``fd``: the misfit's value and its residuals are those of u_FD(theta) at the data
        voxels (``data_target``), its derivative in theta the network's (u_FD + u_net -
        stop_gradient(u_net)): the upper gradient sum_v r_v(u_FD) du_net/dtheta."""
        d, m = self.data, self.model
        theta_c, theta_e = m.thresholds()
        tks = m.scan_times(self.scales.rel)
        mis = theta.new_zeros(())
        for k, obs in enumerate(d.models):
            u = self.net.field(d.xs, tks[k].expand(d.xs.shape[0], 1), theta)
            if fd:
                assert self.data_target is not None
                u = u - u.detach() + self.data_target[k]
            mis = mis + obs.misfit_torch(u, theta_c, theta_e)
        return mis / (d.n * len(d.models))

    # ---------------------------------------------------------------- the Trainer's hooks
    def begin(self) -> None:
        self.prepare()

    def before_step(self) -> None:
        """End of pre-training; redraws every ``redraw_every`` steps (L-BFGS restarted)."""
        if self.phase == "pre" and self.epoch >= self.pre_iters:
            self.phase = "bilevel"
        new_key = self.epoch // self.s.redraw_every
        if new_key != self.key:
            self.redraw(new_key)
            if self.phase == "pre":
                self.lbfgs = make_lbfgs(self.net.mlp.parameters())
        self.prepare()

    def cap(self) -> int:
        """Pre-training: the most L-BFGS iterations the next step may do (it ends at the next
        check, redraw, the end of pre-training and max_iters)."""
        s, it = self.s, self.epoch
        return min(s.check_every - it % s.check_every, s.max_iters - it,
                   s.redraw_every - it % s.redraw_every, self.pre_iters - it)

    def step(self) -> int:
        """One step: an L-BFGS step of pre-training, or a lower step (and, every
        ``lower_steps``, an upper step). Returns the steps done.

        Raises
        ------
        InputError
            When a loss is no longer finite.
        """
        if self.phase == "pre":
            done = self._pre_step()
        else:
            done = 1
            self._lower_step()
            if (self.epoch + 1 - self.pre_iters) % self.s.lower_steps == 0:
                self._upper_step()
        live = ("l_res", "l_grad") + (("l_data",) if self.upper_steps else ())
        if not all(math.isfinite(self.last[k]) for k in live):
            raise InputError("the BiLO fit diverged (non-finite loss); try --method fd")
        return done

    def _pre_step(self) -> int:
        """Pre-training: w_fit mean (u - u_FD)^2 + mean R^2 + w_grad mean |dR/dtheta'|^2 at
        the start (L-BFGS over the weights)."""
        ps, opt = self.points, self.lbfgs
        assert ps is not None
        theta = self.theta().detach()
        target = self.target
        box: dict[str, Tensor] = {}

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            loss, terms = self.lower_loss(ps, theta, target)
            loss.backward()
            box.update(terms)
            return loss

        cap = self.cap()
        done = lbfgs_step(opt, closure, cap, cap * 5 // 4 + 1)
        self.last.update({k: float(v) for k, v in box.items()})
        return done

    def _lower_step(self) -> None:
        """One Adam step on the weights: mean R^2 + w_grad mean |dR/dtheta'|^2 at the current
        parameters (held fixed)."""
        ps = self.points
        assert ps is not None
        self.lower.zero_grad(set_to_none=True)
        loss, terms = self.lower_loss(ps, self.theta().detach(), self.target)
        loss.backward()
        self.lower.step()
        self.last.update({k: float(v) for k, v in terms.items()})

    def _upper_step(self) -> None:
        """One Adam step on the parameters on the data misfit alone: its gradient flows
        through du/dtheta of the network (and the scan times), never through the residual;
        the weights are not touched."""
        unk = self.model.unknowns()
        for p in unk:
            p.requires_grad_(True)
        l_data = self.data_loss(self.theta(), fd=self.s.upper_u == "fd")
        grads = torch.autograd.grad(l_data, unk, allow_unused=True)
        for p, g in zip(unk, grads):
            p.grad = torch.zeros_like(p) if g is None else g
            p.requires_grad_(False)
        self.upper.step()
        self.upper_steps += 1
        self.net.set_theta(self.theta())
        self.last["l_data"] = float(l_data.detach())

    # ---------------------------------------------------------------- checks
    def scan_dice_now(self) -> list[tuple[float, float]]:
        """Per scan, (core, whole) Dice of the network at the current parameters on the data
        voxels that carry an interval in that scan."""
        with torch.no_grad():
            theta = self.theta()
            tks = self.model.scan_times(self.scales.rel)
            tc, te = (float(v) for v in self.model.thresholds())
            xs = self.data.xs
            out = []
            for k, m in enumerate(self.data.models):
                u = self.net.field(xs, tks[k].expand(xs.shape[0], 1), theta)
                u = u.double().cpu().numpy()
                out.append(m.dice(np.where(m.classes != IGNORED, u, 0.0), tc, te))
        return out

    def row(self, check: bool = True) -> dict[str, Any]:
        """The check row: step, phase, losses, Dice, the unknowns in physical terms, origin."""
        ph = self.model.physical(self.scales.length, self.scales.span)
        self.scan_dice = self.scan_dice_now()
        with torch.no_grad():
            misfit = float(self.data_loss(self.theta()))
        origin = self.net.origin().cpu().double().numpy()
        last = self.last
        return {"solve": self.epoch, "stage": f"bilo {self.phase}", "misfit": misfit,
                "loss_res": last["l_res"], "loss_grad": last["l_grad"],
                "loss_fit": last["l_fit"], "upper_steps": self.upper_steps,
                **check_columns(self.scan_dice, ph, origin, self.progress.elapsed)}

    def progress_line(self, row: dict[str, Any] | None = None) -> str:
        row = row if row is not None else self.progress.log[-1]
        return (f"  bilo it {self.epoch:6d} [{self.phase}] res {self.last['l_res']:.2e} "
                f"dR/dtheta {self.last['l_grad']:.2e} misfit {row['misfit']:.2e} Dice "
                f"{row['dice_core']:.3f}/{row['dice_whole']:.3f} lambda "
                f"{row['lambda_mm']:.2f} rho*T {row['rho_T']:.2f} "
                f"{self.progress.elapsed:5.0f} s")

    def stop_reason(self, log: list[dict[str, Any]]) -> str | None:
        return None   # the budget and max_iters only

    def final_row_needed(self, log: list[dict[str, Any]]) -> bool:
        return not log or log[-1]["solve"] != self.epoch or not self.scan_dice

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Network, unknowns, phase, optimiser states, the draw in use, upper steps."""
        return {"model": self.model.state_dict(), "phase": self.phase, "key": int(self.key),
                "lower": self.lower.state_dict(), "upper": self.upper.state_dict(),
                "lbfgs": self.lbfgs.state_dict(), "upper_steps": self.upper_steps,
                "last": dict(self.last)}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        self.phase = str(st["phase"])
        self.key = int(st["key"])
        self.upper_steps = int(st["upper_steps"])
        self.last = dict(st["last"])
        self.lower.load_state_dict(st["lower"])
        self.upper.load_state_dict(st["upper"])
        self.lbfgs = make_lbfgs(self.net.mlp.parameters())
        self.lbfgs.load_state_dict(st["lbfgs"])
        self.points = None    # begin() redraws the draw in use (with its pre-training target)


def build_bilo_loss(fine: FitLevel, unknowns: Unknowns, fit_settings: PatientFitSettings,
                    settings: BiloSettings, device: torch.device,
                    dtype: torch.dtype = torch.float32) -> BiloLoss:
    """The loss object of the BiLO fit of ``unknowns`` on the fine level (network seeded by
    ``settings.seed``; thresholds fixed)."""
    view = settings.pinn_view()
    scales = patient_scales(fine, unknowns, view)
    c = scales.center
    theta_ref = [math.log(scales.a0), math.log(scales.b0)] + [0.0] * fine.geom.ndim
    net = BiloNet(fine.geom.ndim, c, scales.length, scales.horizon, theta_ref, settings.width,
                  settings.depth, settings.fourier, settings.sigma_x, settings.sigma_t,
                  settings.seed, dtype)
    d = unknowns.ndim
    box = (np.minimum(unknowns.lo[:d], c - 1.0), np.maximum(unknowns.hi[:d], c + 1.0))
    model = PatientModel(net, box, scales.a0, scales.b0, scales.q0, None,  # type: ignore[arg-type]
                         (fit_settings.theta_c, fit_settings.theta_e), dtype).to(device)
    data = data_voxels(fine, view, scales, device, dtype)
    pre = min(settings.pre_iters, settings.max_iters // 2)
    sampler = PatientSampler(fine, view, fit_settings.safety, scales, net,  # type: ignore[arg-type]
                             pre, device, dtype)
    return BiloLoss(model, data, sampler, scales, settings, pre)
