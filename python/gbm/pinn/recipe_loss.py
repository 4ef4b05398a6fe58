"""PINN-GBM's recipe as a loss object (:class:`RecipeLoss`) for :class:`gbm.pinn.train.Trainer`,
and its pieces: the network with the parameter factors and learnt thresholds
(:class:`RecipeModel`) and the sigmoid segmentation loss (:func:`sigmoid_segmentation_loss`).
The recipe, and which of its details come from the paper / port and which are gbm's choices, is
in :mod:`gbm.pinn.recipe`.

Units: mm, days; the network works in x' = (x - c) / L, t' = t / H
(:class:`gbm.pinn.patient_loss.PatientScales`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gbm.errors import InputError
from gbm.pinn.network import PinnNet
from gbm.pinn.optim import Progress, lbfgs_step, make_lbfgs
from gbm.pinn.patient_loss import DataVoxels, PatientSampler, PatientScales, check_columns
from gbm.pinn.residual import PointSet, residual_terms
from gbm.problem.segmentation.model import CORE, EDEMA, IGNORED
from gbm.problem.segmentation.unknowns import NOMINAL_DAYS

__all__ = ["RecipeData", "RecipeLoss", "RecipeModel", "RecipeSettings", "bounded",
           "sigmoid_segmentation_loss"]


@dataclass(frozen=True)
class RecipeSettings:
    """The recipe's own knobs (:mod:`gbm.pinn.recipe`, "Recipe"; defaults: the port's except
    where the module says otherwise)."""

    pretrain_iters: int = 500
    pretrain_share: float = 0.5
    finetune_iters: int = 1000
    colloc: int = 4000
    check_every: int = 50
    w_res: float = 1.0
    w_fd: float = 10.0
    w_seg: float = 1e-5
    sharpness: float = 20.0
    factor_range: tuple[float, float] = (0.75, 1.25)
    w_factor: float = 1e-3
    w_theta: float = 1e-3
    lr: float = 1e-3
    lr_unknowns: float = 1e-2


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def bounded(z: Tensor, lo: float, hi: float) -> Tensor:
    """lo + (hi - lo) sigmoid(z): a value that stays in [lo, hi] whatever z."""
    return lo + (hi - lo) * torch.sigmoid(z)


def sigmoid_segmentation_loss(u: Tensor, mask: Tensor, phi: Tensor, weight: Tensor,
                              theta: Tensor | float, sharpness: float) -> Tensor:
    """PINN-GBM's segmentation loss of one region::

        mean_v (w_v phi_v (sigmoid(k (u_v - theta)) - m_v))^2 / mean_v (w_v m_v^2)

    Parameters
    ----------
    u : Tensor (n,)
        The network's density at the data voxels.
    mask : Tensor (n,)
        1 inside the region (whole tumour or core), 0 outside.
    phi : Tensor (n,)
        The phase field at the voxels (the port's phi weighting).
    weight : Tensor (n,)
        1 where the voxel carries a label, 0 where it is ignored (e.g. a resection cavity).
    theta : Tensor or float
        The region's threshold.
    sharpness : float
        k (the port: 20).
    """
    s = torch.sigmoid(sharpness * (u - theta))
    num = ((s - mask) * phi * weight).square().mean()
    den = (mask * weight).square().mean().clamp_min(1.0 / mask.numel())
    return num / den


class RecipeModel(nn.Module):
    """The network, the factors f_D, f_rho on the start's a0, b0 (within ``factor_range``) and
    the learnt thresholds (within their bounds); the origin is fixed at the network's centre.

    Parameters
    ----------
    net : PinnNet
    a0, b0 : float
        a = Dw H / L^2 and b = rho H of the radial fit.
    q : float or None
        The first scan's t' (fixed; None for one scan, t' = 1).
    theta : ((theta_c, lo, hi), (theta_e, lo, hi))
        Priors (starts) and bounds of the thresholds.
    factor_range : (lo, hi)
    dtype : torch.dtype
    """

    def __init__(self, net: PinnNet, a0: float, b0: float, q: float | None,
                 theta: tuple[tuple[float, float, float], tuple[float, float, float]],
                 factor_range: tuple[float, float], dtype: torch.dtype) -> None:
        super().__init__()
        self.net = net
        self.a0, self.b0, self.q = a0, b0, q
        self.theta_spec = theta
        self.factor_range = factor_range
        lo, hi = factor_range
        z1 = _logit((1.0 - lo) / (hi - lo))
        self.z_d = nn.Parameter(torch.tensor(z1, dtype=dtype))
        self.z_r = nn.Parameter(torch.tensor(z1, dtype=dtype))
        (c0, clo, chi), (e0, elo, ehi) = theta
        self.z_c = nn.Parameter(torch.tensor(_logit((c0 - clo) / (chi - clo)), dtype=dtype))
        self.z_e = nn.Parameter(torch.tensor(_logit((e0 - elo) / (ehi - elo)), dtype=dtype))

    def unknowns(self) -> list[nn.Parameter]:
        return [self.z_d, self.z_r, self.z_c, self.z_e]

    def factors(self) -> tuple[Tensor, Tensor]:
        """(f_D, f_rho), each within ``factor_range``."""
        lo, hi = self.factor_range
        return bounded(self.z_d, lo, hi), bounded(self.z_r, lo, hi)

    def thresholds(self) -> tuple[Tensor, Tensor]:
        """(theta_c, theta_e) within their bounds."""
        (_, clo, chi), (_, elo, ehi) = self.theta_spec
        return bounded(self.z_c, clo, chi), bounded(self.z_e, elo, ehi)

    def prior(self, w_factor: float, w_theta: float) -> Tensor:
        """w_factor ((f_D - 1)^2 + (f_rho - 1)^2) + w_theta sum (theta - prior)^2 (the port's
        ``rD_reg``, ``rRHO_reg``, ``th*_reg``)."""
        fd, fr = self.factors()
        tc, te = self.thresholds()
        (c0, _, _), (e0, _, _) = self.theta_spec
        return (w_factor * ((fd - 1) ** 2 + (fr - 1) ** 2)
                + w_theta * ((tc - c0) ** 2 + (te - e0) ** 2))

    def scan_times(self, rel: Sequence[float]) -> Tensor:
        """t' of the scans (fixed: the radial fit's age)."""
        r = torch.as_tensor(list(rel), dtype=self.z_d.dtype, device=self.z_d.device)
        return torch.ones_like(r) if self.q is None else self.q + (1 - self.q) * r

    def physical(self, length: float, span: float, horizon: float) -> dict[str, float]:
        """lambda (mm), rho*T, Dw (mm^2/day), rho (1/day), age (days; nominal for one scan),
        the thresholds and the factors."""
        with torch.no_grad():
            fd, fr = (float(v) for v in self.factors())
            tc, te = (float(v) for v in self.thresholds())
        a, b = self.a0 * fd, self.b0 * fr
        rho, dw = b / horizon, a * length**2 / horizon
        t0 = self.q * horizon if self.q is not None else NOMINAL_DAYS
        return {"lambda_mm": length * math.sqrt(a / b), "rho_T": rho * t0, "dw": dw, "rho": rho,
                "t0": t0, "theta_c": tc, "theta_e": te, "factor_d": fd, "factor_rho": fr}


@dataclass
class RecipeData:
    """The data voxels (:class:`gbm.pinn.patient_loss.DataVoxels`) with what the sigmoid loss
    needs: phi there and, per scan, the whole-tumour and core masks and the labelled weight."""

    voxels: DataVoxels
    phi: Tensor
    whole: list[Tensor]
    core: list[Tensor]
    weight: list[Tensor]

    @classmethod
    def build(cls, voxels: DataVoxels, phi_grid: np.ndarray, spacing: Sequence[float],
              scales: PatientScales) -> RecipeData:
        xs = voxels.xs
        pts = xs.detach().cpu().double().numpy() * scales.length + scales.center
        idx = np.rint(pts / np.asarray(spacing, dtype=np.float64)).astype(np.int64)
        phi = phi_grid[tuple(idx.T)]

        def tt(a: np.ndarray) -> Tensor:
            return torch.as_tensor(a, dtype=xs.dtype, device=xs.device)

        cls_ = [m.classes for m in voxels.models]
        return cls(voxels, tt(phi), [tt((c == CORE) | (c == EDEMA)) for c in cls_],
                   [tt(c == CORE) for c in cls_], [tt(c != IGNORED) for c in cls_])


class RecipeLoss:
    """The loss object of PINN-GBM's recipe (phases "pretrain": L-BFGS iterations ->
    "finetune": Adam steps).

    pretrain: w_res mean R^2 (at the radial fit's parameters) + w_fd mean((u - u_FD) phi)^2 at
    the collocation points (u_FD: the FD solution at the radial fit); the network alone.
    finetune: w_res mean R^2 (at f_D a0, f_rho b0) + w_seg sum over scans and regions of the
    sigmoid loss / n_scans + the priors; the network, the factors and the thresholds.
    """

    def __init__(self, model: RecipeModel, data: RecipeData, sampler: PatientSampler,
                 scales: PatientScales, rs: RecipeSettings, redraw_every: int,
                 time_budget: float) -> None:
        self.progress = Progress()
        self.model, self.net, self.data = model, model.net, data
        self.sampler, self.scales, self.rs = sampler, scales, rs
        self.redraw_every = redraw_every
        self.pretrain_seconds = rs.pretrain_share * time_budget
        self.phase = "pretrain" if rs.pretrain_iters > 0 else "finetune"
        self.finetune_start = 0
        self.key = 0
        self.points: PointSet | None = None
        self.target: Tensor | None = None
        nan = float("nan")
        self.last = {"loss": nan, "l_res": nan, "l_fd": nan, "l_seg": nan}
        self.scan_dice: list[tuple[float, float]] = []
        self.compile_seconds: float | None = None
        self.opt = self._optimiser()

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    def _optimiser(self) -> torch.optim.Optimizer:
        """Pre-training: L-BFGS over the network; fine-tuning: Adam over the network (lr) and
        the unknowns (lr_unknowns)."""
        fine = self.phase == "finetune"
        for p in self.model.unknowns():
            p.requires_grad_(fine)
        if not fine:
            return make_lbfgs(list(self.net.mlp.parameters()))
        groups: list[dict[str, Any]] = [{"params": list(self.net.mlp.parameters()),
                                         "lr": self.rs.lr},
                                        {"params": self.model.unknowns(),
                                         "lr": self.rs.lr_unknowns}]
        return torch.optim.Adam(groups)

    def redraw(self, key: int) -> None:
        self.points, target = self.sampler.draw(key)
        if target is not None:
            self.target = target
        self.key = key

    def begin(self) -> None:
        if self.points is None:
            self.redraw(self.key)

    def before_step(self) -> None:
        """pretrain -> finetune after ``pretrain_iters`` iterations or ``pretrain_share`` of the
        budget (Adam from there); redraws every ``redraw_every`` epochs (a fresh L-BFGS in
        pre-training)."""
        it = self.epoch
        if self.phase == "pretrain" and (it >= self.rs.pretrain_iters
                                         or self.progress.elapsed >= self.pretrain_seconds):
            self.phase = "finetune"
            self.finetune_start = it
            self.sampler.warm_iters = 0    # no FD targets from here on
            self.opt = self._optimiser()
        new_key = it // self.redraw_every if self.redraw_every else 0
        if new_key != self.key:
            self.redraw(new_key)
            if self.phase == "pretrain":
                self.opt = self._optimiser()

    # ---------------------------------------------------------------- loss
    def residual_loss(self, ps: PointSet, fd: Tensor | float, fr: Tensor | float) -> Tensor:
        dv = self.net.derivatives(ps.xs, ps.ts)
        ta, tb, tc = residual_terms(dv, ps)
        return (ta - (fd * self.model.a0) * tb - (fr * self.model.b0) * tc).square().mean()

    def seg_loss(self) -> Tensor:
        """sum over scans and regions of the sigmoid loss / n_scans (learnt thresholds)."""
        d, m = self.data, self.model
        tc, te = m.thresholds()
        tks = m.scan_times(self.scales.rel)
        xs = d.voxels.xs
        total = xs.new_zeros(())
        k_s = self.rs.sharpness
        for k in range(len(d.whole)):
            u = self.net(xs, tks[k].expand(xs.shape[0], 1))
            total = total + sigmoid_segmentation_loss(u, d.whole[k], d.phi, d.weight[k], te, k_s)
            total = total + sigmoid_segmentation_loss(u, d.core[k], d.phi, d.weight[k], tc, k_s)
        return total / len(d.whole)

    def terms(self) -> dict[str, Tensor]:
        ps = self.points
        assert ps is not None
        rs = self.rs
        if self.phase == "pretrain":
            assert self.target is not None
            l_res = self.residual_loss(ps, 1.0, 1.0)
            l_fd = ((self.net(ps.xs, ps.ts) - self.target) * ps.phi).square().mean()
            z = l_res.new_zeros(())
            return {"loss": rs.w_res * l_res + rs.w_fd * l_fd, "l_res": l_res, "l_fd": l_fd,
                    "l_seg": z}
        fd, fr = self.model.factors()
        l_res = self.residual_loss(ps, fd, fr)
        l_seg = self.seg_loss()
        loss = rs.w_res * l_res + rs.w_seg * l_seg + self.model.prior(rs.w_factor, rs.w_theta)
        return {"loss": loss, "l_res": l_res, "l_fd": l_res.new_zeros(()), "l_seg": l_seg}

    def cap(self) -> int:
        """The most L-BFGS iterations of the next pre-training step: it ends at the next check,
        redraw and the end of pre-training."""
        it, rs = self.epoch, self.rs
        cap = min(rs.check_every - it % rs.check_every, rs.pretrain_iters - it)
        if self.redraw_every:
            cap = min(cap, self.redraw_every - it % self.redraw_every)
        return max(cap, 1)

    def step(self) -> int:
        """One capped L-BFGS step (pre-training) or one Adam step (fine-tuning); returns the
        epochs done.

        Raises
        ------
        InputError
            When the loss is no longer finite.
        """
        box: dict[str, Tensor] = {}
        opt = self.opt

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            t = self.terms()
            t["loss"].backward()
            box.update({k: v.detach() for k, v in t.items()})
            return t["loss"]

        if self.phase == "pretrain":
            cap = self.cap()
            done = lbfgs_step(opt, closure, cap, cap * 5 // 4 + 1)
        else:
            closure()
            opt.step()
            done = 1
        self.last = {k: float(v) for k, v in box.items()}
        if not all(math.isfinite(v) for v in self.last.values()):
            raise InputError("the PINN-GBM recipe diverged (non-finite loss)")
        return done

    # ---------------------------------------------------------------- checks
    def scan_dice_now(self) -> list[tuple[float, float]]:
        """Per scan, (core, whole) Dice of the network at the learnt thresholds on the data
        voxels that carry a label."""
        with torch.no_grad():
            tks = self.model.scan_times(self.scales.rel)
            tc, te = (float(v) for v in self.model.thresholds())
            xs = self.data.voxels.xs
            out = []
            for k, m in enumerate(self.data.voxels.models):
                u = self.net(xs, tks[k].expand(xs.shape[0], 1)).double().cpu().numpy()
                out.append(m.dice(np.where(m.classes != IGNORED, u, 0.0), tc, te))
        return out

    def physical(self) -> dict[str, float]:
        s = self.scales
        return self.model.physical(s.length, s.span, s.horizon)

    def row(self, check: bool = True) -> dict[str, Any]:
        per_scan = self.scan_dice_now()
        self.scan_dice = per_scan
        origin = self.net.origin().cpu().double().numpy()
        last = self.last
        return {"solve": self.epoch, "stage": f"pinn-gbm {self.phase}", "misfit": last["l_seg"],
                "loss": last["loss"], "loss_res": last["l_res"], "loss_fd": last["l_fd"],
                "check": 1.0 if check else 0.0,
                **check_columns(per_scan, self.physical(), origin, self.progress.elapsed)}

    def progress_line(self, row: dict[str, Any] | None = None) -> str:
        row = row if row is not None else self.progress.log[-1]
        la = self.last
        return (f"  pinn-gbm step {self.epoch:6d} [{self.phase}] loss {la['loss']:.3e} (res "
                f"{la['l_res']:.2e}, fd {la['l_fd']:.2e}, seg {la['l_seg']:.2e}) Dice "
                f"{row['dice_core']:.3f}/{row['dice_whole']:.3f} lambda {row['lambda_mm']:.2f} "
                f"rho*T {row['rho_T']:.2f} f_D {row['factor_d']:.3f} f_rho "
                f"{row['factor_rho']:.3f} {self.progress.elapsed:5.0f} s")

    def stop_reason(self, log: list[dict[str, Any]]) -> str | None:
        if self.phase == "finetune" and self.epoch - self.finetune_start >= self.rs.finetune_iters:
            return f"{self.rs.finetune_iters} fine-tuning steps"
        return None

    def final_row_needed(self, log: list[dict[str, Any]]) -> bool:
        return not log or log[-1]["solve"] != self.epoch or not self.scan_dice

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "phase": self.phase,
                "finetune_start": int(self.finetune_start), "opt": self.opt.state_dict(),
                "key": int(self.key)}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        self.phase = str(st["phase"])
        self.finetune_start = int(st["finetune_start"])
        if self.phase == "finetune":
            self.sampler.warm_iters = 0
        self.key = int(st["key"])
        self.points = None
        self.opt = self._optimiser()
        self.opt.load_state_dict(st["opt"])
