"""The PINN patient fit's loss object (:class:`PatientLoss`), run by
:class:`gbm.pinn.train.Trainer`, and the pieces it is built from.

The recipe (scales, unknowns, loss, phases) is described in :mod:`gbm.pinn.patient`. Here:

* :func:`patient_scales` -- the characteristic scales c, L, H and the start of the unknowns in
  the network's variables (:class:`PatientScales`);
* :class:`PatientModel` -- the network and the unknowns (log a, log b, the origin shift, the
  first scan's time, the thresholds) as one ``nn.Module``;
* :func:`data_voxels` -- the fixed random subset of labelled voxels and their observation
  models (:class:`DataVoxels`);
* :class:`PatientSampler` -- collocation draw k (and, during the warm start, the FD solution of
  the start at its points);
* :class:`PatientLoss` -- the loss terms, the phases warm -> hold -> joint, one L-BFGS step, the
  check row; state for checkpoints.

Units: mm, days; the network works in x' = (x - c) / L, t' = t / H.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gbm import _core
from gbm.errors import InputError, require
from gbm.pinn.network import PinnNet
from gbm.pinn.optim import LoopSettings, Progress, lbfgs_step, make_lbfgs
from gbm.pinn.residual import PointSet, domain_point_set, residual_terms
from gbm.pinn.settings import PinnFitSettings
from gbm.problem.domain import Domain, draw_seed
from gbm.problem.segmentation.labels import whole_union
from gbm.problem.segmentation.levels import FitLevel
from gbm.problem.segmentation.model import IGNORED, SegmentationModel
from gbm.problem.segmentation.unknowns import (
    NOMINAL_DAYS,
    PatientFitSettings,
    Physical,
    Unknowns,
)

__all__ = [
    "DataVoxels",
    "PatientLoss",
    "PatientModel",
    "PatientSampler",
    "PatientScales",
    "build_patient_loss",
    "data_voxels",
    "loop_settings",
    "patient_scales",
]

#: The loss terms of one evaluation: (loss, mean residual^2, data misfit per voxel and scan).
Terms = tuple[Tensor, Tensor, Tensor]


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class PatientScales:
    """The characteristic scales of the fit and the start in the network's variables.

    Attributes
    ----------
    start : Physical
        The start of the unknowns (``unknowns.x0``).
    center : ndarray float64 (d,)
        c: the start origin (the first scan's core centroid), local mm.
    length : float
        L: the largest distance from c to a whole-tumour voxel of any scan + the margin, mm.
    horizon : float
        H of the start, days (one scan: nominal, :data:`NOMINAL_DAYS`).
    q0 : float or None
        The first scan's t' at the start (several scans; None for one).
    a0, b0 : float
        a = Dw H / L^2 and b = rho H at the start.
    span : float
        Days from the first to the last scan (1 for one scan).
    rel : list of float
        Per scan, (d_k - d_first) / span (1 for one scan).
    """

    start: Physical
    center: np.ndarray
    length: float
    horizon: float
    q0: float | None
    a0: float
    b0: float
    span: float
    rel: list[float]


def patient_scales(fine: FitLevel, unknowns: Unknowns,
                   settings: PinnFitSettings) -> PatientScales:
    """The scales of :mod:`gbm.pinn.patient` ("Network and scaling") on the fine level."""
    g = fine.geom
    sp = np.asarray(g.spacing, dtype=np.float64)
    days = np.asarray(unknowns.days, dtype=np.float64)
    multi = unknowns.multi
    span = float(days[-1] - days[0]) if multi else 1.0
    rel = [float((d - days[0]) / span) if multi else 1.0 for d in days]
    p0 = unknowns.physical(unknowns.x0)
    c = np.asarray(p0.origin_local, dtype=np.float64)
    idx = np.argwhere(whole_union(fine.models)) * sp
    length = float(np.sqrt(((idx - c) ** 2).sum(-1)).max()) + settings.length_margin_mm
    if multi:
        horizon = p0.t0 + span
        q0: float | None = p0.t0 / horizon
    else:
        horizon = NOMINAL_DAYS
        q0 = None
    return PatientScales(start=p0, center=c, length=length, horizon=horizon, q0=q0,
                         a0=p0.dw * horizon / length**2, b0=p0.rho * horizon, span=span,
                         rel=rel)


class PatientModel(nn.Module):
    """The network and the unknowns of the PINN patient fit (:mod:`gbm.pinn.patient`,
    "Unknowns").

    Parameters
    ----------
    net : PinnNet
    box : (lo, hi) local mm
        The origin's box (the network's IC shift stays inside it).
    a0, b0 : float
        Start of a and b (trained as log a, log b).
    q0 : float or None
        Start of the first scan's t' (trained as a logit; None: one scan, t' = 1).
    theta : ((theta_c, lo, hi), (theta_e, lo, hi)) or None
        Thresholds to fit (start and bounds); None: ``fixed_theta``.
    fixed_theta : (theta_c, theta_e)
    dtype : torch.dtype
    """

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
        """The trained unknowns (not the network's weights)."""
        ps = [self.log_a, self.log_b, self.shift]
        if self.zq is not None:
            ps.append(self.zq)
        if self.theta_spec is not None:
            ps += [self.z_c, self.z_e]
        return ps

    def thresholds(self) -> tuple[Tensor | float, Tensor | float]:
        """(theta_c, theta_e): tensors within their bounds when fitted, else the fixed values."""
        if self.theta_spec is None:
            return self.fixed_theta
        (_, clo, chi), (_, elo, ehi) = self.theta_spec
        return (clo + (chi - clo) * torch.sigmoid(self.z_c),
                elo + (ehi - elo) * torch.sigmoid(self.z_e))

    def theta_prior(self) -> Tensor:
        """((theta - theta0) / (hi - lo))^2 summed over the fitted thresholds (0 when fixed)."""
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

    def physical(self, length: float, span: float) -> dict[str, float]:
        """The unknowns in physical terms: lambda (mm), rho*T, Dw (mm^2/day), rho (1/day),
        age T0 (days; nominal for one scan) and the thresholds."""
        with torch.no_grad():
            a = float(torch.exp(self.log_a))
            b = float(torch.exp(self.log_b))
            q = float(torch.sigmoid(self.zq)) if self.zq is not None else None
            tc, te = self.thresholds()
        hor = span / (1 - q) if q is not None else NOMINAL_DAYS
        rho = b / hor
        dw = a * length**2 / hor
        t0 = q * hor if q is not None else NOMINAL_DAYS
        return {"lambda_mm": length * math.sqrt(a / b), "rho_T": rho * t0, "dw": dw,
                "rho": rho, "t0": t0, "theta_c": float(tc), "theta_e": float(te)}


@dataclass
class DataVoxels:
    """Where the segmentation misfit is evaluated: a fixed random subset of the fine level's
    voxels that carry an interval in some scan.

    Attributes
    ----------
    xs : Tensor (n, d)
        The voxels' centres in scaled coordinates x'.
    models : list of SegmentationModel
        Per scan, the observation model on the subset (classes of shape (n,)).
    n : int
    """

    xs: Tensor
    models: list[SegmentationModel]
    n: int


def data_voxels(fine: FitLevel, settings: PinnFitSettings, scales: PatientScales,
                device: torch.device, dtype: torch.dtype) -> DataVoxels:
    """``settings.data_points`` voxels (at most all labelled ones) drawn without replacement,
    deterministic in ``settings.seed``."""
    g = fine.geom
    sp = np.asarray(g.spacing, dtype=np.float64)
    rng = np.random.default_rng(draw_seed(settings.seed, 991))
    flat_valid = np.zeros(int(np.prod(g.shape)), dtype=bool)
    for m in fine.models:
        flat_valid |= m.classes.reshape(-1) != IGNORED
    cand = np.flatnonzero(flat_valid)
    require(cand.size > 0, "no voxel of the fit box carries a segmentation label")
    n_data = min(settings.data_points, cand.size)
    pick = np.sort(rng.choice(cand, size=n_data, replace=False))
    pts = np.stack(np.unravel_index(pick, g.shape), axis=-1) * sp
    xs = torch.as_tensor((pts - scales.center) / scales.length, dtype=dtype, device=device)
    return DataVoxels(xs, [SegmentationModel(m.classes.reshape(-1)[pick]) for m in fine.models],
                      int(n_data))


class PatientSampler:
    """Collocation draw k: ``colloc`` points, half uniform over the sub-box and half radial
    around c (radius L), where phi >= ``phi_min``, at t' ~ U(0, 1); deterministic in (seed, k).
    Draws that serve the warm start also carry the FD solution of the start at their points
    (``FisherKpp.observe``: one solve, no snapshots stored)."""

    def __init__(self, fine: FitLevel, settings: PinnFitSettings, safety: float,
                 scales: PatientScales, net: PinnNet, warm_iters: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.fine = fine
        self.s = settings
        self.safety = safety
        self.scales = scales
        self.net = net
        self.warm_iters = warm_iters
        self.device = device
        self.dtype = dtype
        self.phi = np.ascontiguousarray(fine.phi, dtype=np.float64)
        self.domain = Domain(self.phi, np.ascontiguousarray(fine.kfac, dtype=np.float64),
                             tuple(fine.geom.spacing), scales.center)

    def serves_warm_start(self, counter: int) -> bool:
        """Whether draw ``counter`` is used by the warm start (it then gets a target)."""
        return (self.warm_iters > 0
                and counter * max(self.s.redraw_every, 1) < self.warm_iters)

    def points(self, counter: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``counter``: points (N, d) local mm and times (N,) days."""
        s, sp, c = self.s, list(self.fine.geom.spacing), self.scales.center
        n_u = s.colloc // 2
        p_u, t_u = _core.sample_uniform(self.phi, sp, n_u, 1.0, draw_seed(s.seed, 2 * counter),
                                        s.phi_min)
        p_r, t_r = _core.sample_radial(self.phi, sp, [float(v) for v in c], self.scales.length,
                                       s.colloc - n_u, 1.0, draw_seed(s.seed, 2 * counter + 1),
                                       s.phi_min)
        pts = np.concatenate([p_u, p_r])
        ts = np.concatenate([t_u, t_r]) * self.scales.horizon  # days (t' = t / H)
        return pts, ts

    def warm_target(self, pts: np.ndarray, ts: np.ndarray) -> Tensor:
        """The FD solution of the start parameters at (pts, ts), the solver's own value."""
        g, p0, c = self.fine.geom, self.scales.start, self.scales.center
        solver = _core.FisherKpp(g.initial_condition(c), p0.dw * self.fine.kfac, self.phi,
                                 list(g.spacing), p0.rho, safety=self.safety)
        u = solver.observe(np.ascontiguousarray(pts), np.ascontiguousarray(ts))
        return torch.as_tensor(u, dtype=self.dtype, device=self.device)

    def draw(self, counter: int) -> tuple[PointSet, Tensor | None]:
        """Draw ``counter`` as a :class:`PointSet` and, when it serves the warm start, its
        target (else None)."""
        pts, ts = self.points(counter)
        ps = domain_point_set(self.domain, self.net, pts, ts, self.device, self.dtype)
        target = self.warm_target(pts, ts) if self.serves_warm_start(counter) else None
        return ps, target


def check_columns(scan_dice: list[tuple[float, float]], physical: dict[str, float],
                  origin: np.ndarray, seconds: float) -> dict[str, float]:
    """The columns every network method's check row shares with the FD fit's log: mean Dice of
    core and whole tumour over the scans, seconds, the physical parameters and the origin (local
    mm, ``origin_x_mm`` ...)."""
    return {"dice_core": float(np.mean([d[0] for d in scan_dice])),
            "dice_whole": float(np.mean([d[1] for d in scan_dice])),
            "seconds": seconds, **{k: float(v) for k, v in physical.items()},
            **{f"origin_{'xyz'[i]}_mm": float(v) for i, v in enumerate(origin)}}


def loop_settings(settings: PinnFitSettings) -> LoopSettings:
    """The Trainer's loop knobs of the patient fit (a progress line at a check, at most every
    ``progress_seconds``)."""
    return LoopSettings(settings.max_iters, settings.time_budget, settings.check_every,
                        settings.checkpoint_every, settings.progress_seconds,
                        print_every_check=False)


class PatientLoss:
    """The loss object of the PINN patient fit (:mod:`gbm.pinn.patient`: "Loss", "Training").

    Holds the network and unknowns (``model``), the data voxels and their observation models
    (``data``), the collocation draw in use (``points``, ``key``; ``warm_target`` during the
    warm start), the phase ("warm", "hold", "joint") with its L-BFGS optimiser, and the losses of
    the last step (``last``). The :class:`gbm.pinn.train.Trainer` runs it.
    """

    def __init__(self, model: PatientModel, data: DataVoxels, sampler: PatientSampler,
                 scales: PatientScales, settings: PinnFitSettings, warm_iters: int) -> None:
        self.progress = Progress()
        self.model = model
        self.net = model.net
        self.data = data
        self.sampler = sampler
        self.scales = scales
        self.s = settings
        self.warm_iters = warm_iters
        self.hold_end = warm_iters + settings.hold_iters
        self.phase = "warm" if warm_iters > 0 else ("hold" if settings.hold_iters > 0
                                                     else "joint")
        self.key = 0
        self.points: PointSet | None = None
        self.warm_target: Tensor | None = None
        nan = float("nan")
        self.last = {"loss": nan, "l_res": nan, "l_data": nan}
        self.scan_dice: list[tuple[float, float]] = []   # per scan, at the last check
        self.compile_seconds: float | None = None
        self._terms: Callable[..., Terms] = self.loss_terms
        self.opt = self._phase_optimiser()

    # ---------------------------------------------------------------- set-up
    @property
    def epoch(self) -> int:
        return self.progress.epoch

    def _phase_optimiser(self) -> torch.optim.LBFGS:
        """The unknowns trained in the joint phase only; a fresh L-BFGS over what is trained."""
        joint = self.phase == "joint"
        for p in self.model.unknowns():
            p.requires_grad_(joint)
        return make_lbfgs(list(self.net.mlp.parameters())
                          + (self.model.unknowns() if joint else []))

    def redraw(self, key: int) -> None:
        """Use collocation draw ``key`` (the warm target kept unless the draw brings one)."""
        self.points, target = self.sampler.draw(key)
        if target is not None:
            self.warm_target = target
        self.key = key

    def prepare(self) -> None:
        """Draw the collocation points in use (once; a resumed run's draw comes from its
        checkpoint)."""
        if self.points is None:
            self.redraw(self.key)

    def compile(self, printer: Callable[[str], None]) -> float:
        """Compile the full loss with torch.compile (eager if that fails); returns seconds."""
        self.prepare()
        assert self.points is not None
        t0 = time.perf_counter()
        try:
            torch._dynamo.reset()
            cf = torch.compile(self.loss_terms, dynamic=False)
            ps = self.points
            cf(ps.xs, ps.ts, ps.phi, ps.F, ps.gradF)
            self._terms = cf
        except Exception as exc:  # torch.compile is optional
            printer(f"torch.compile failed ({type(exc).__name__}); running eagerly")
            self._terms = self.loss_terms
        self.compile_seconds = time.perf_counter() - t0
        return self.compile_seconds

    # ---------------------------------------------------------------- loss
    def warm_terms(self, xs: Tensor, ts: Tensor, target: Tensor) -> Terms:
        """Warm start: mean (u - u_FD)^2 at the collocation points (no residual, no data)."""
        l_fit = (self.net(xs, ts) - target).square().mean()
        z = l_fit.new_zeros(())
        return l_fit, z, z

    def residual_loss(self, ps: PointSet) -> Tensor:
        """mean R^2 over the collocation points, R = A - a B - b C (:mod:`gbm.pinn.residual`)."""
        dv = self.net.derivatives(ps.xs, ps.ts)
        ta, tb, tc_ = residual_terms(dv, ps)
        a = torch.exp(self.model.log_a)
        b = torch.exp(self.model.log_b)
        return (ta - a * tb - b * tc_).square().mean()

    def data_loss(self, like: Tensor) -> Tensor:
        """sum_k misfit_k / (n_data * n_scans): the segmentation model's misfit of the network
        at the data voxels at each scan's t' (``like``: a tensor of the loss's dtype/device)."""
        d, model = self.data, self.model
        theta_c, theta_e = model.thresholds()
        tks = model.scan_times(self.scales.rel)
        mis = like.new_zeros(())
        for k in range(len(d.models)):
            tk = tks[k].expand(d.xs.shape[0], 1)
            u = self.net(d.xs, tk)
            mis = mis + d.models[k].misfit_torch(u, theta_c, theta_e)
        return mis / (d.n * len(d.models))

    def loss_terms(self, xs: Tensor, ts: Tensor, ph: Tensor, F: Tensor, gF: Tensor) -> Terms:
        """L = mean R^2 + w_data * data misfit + w_theta * threshold prior (module docstring of
        :mod:`gbm.pinn.patient`); returns (L, mean R^2, data misfit)."""
        l_res = self.residual_loss(PointSet(xs, ts, ph, F, gF))
        l_data = self.data_loss(l_res)
        loss = l_res + self.s.w_data * l_data + self.s.w_theta * self.model.theta_prior()
        return loss, l_res, l_data

    # ---------------------------------------------------------------- the Trainer's hooks
    def begin(self) -> None:
        self.prepare()

    def before_step(self) -> None:
        """Phase changes (warm -> hold -> joint, each with a fresh L-BFGS) and redraws (every
        ``redraw_every`` iterations; L-BFGS restarted on the new points)."""
        it = self.epoch
        if self.phase == "warm" and it >= self.warm_iters:
            self.phase = "hold" if it < self.hold_end else "joint"
            if self.phase == "hold":   # the network alone (a fresh L-BFGS after the warm fit)
                self.opt = make_lbfgs(list(self.net.mlp.parameters()))
        if self.phase == "hold" and it >= self.hold_end:
            self.phase = "joint"
        if self.phase == "joint" and not self.model.log_a.requires_grad:
            self.opt = self._phase_optimiser()
        new_key = it // self.s.redraw_every if self.s.redraw_every else 0
        if new_key != self.key:
            self.redraw(new_key)
            self.opt = make_lbfgs(self.opt.param_groups[0]["params"])

    def cap(self) -> int:
        """The most iterations the next step may do: it ends at the next check, the end of its
        phase, the next redraw and ``max_iters``."""
        s, it = self.s, self.epoch
        cap = min(s.check_every - it % s.check_every, s.max_iters - it)
        if self.phase == "warm":
            cap = min(cap, self.warm_iters - it)
        elif self.phase == "hold":
            cap = min(cap, self.hold_end - it)
        if s.redraw_every:
            cap = min(cap, s.redraw_every - it % s.redraw_every)
        return cap

    def step(self) -> int:
        """One L-BFGS step of at most :meth:`cap` iterations; returns the iterations done.

        Raises
        ------
        InputError
            When the loss is no longer finite.
        """
        ps, opt = self.points, self.opt
        assert ps is not None
        box: dict[str, Tensor] = {}

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            if self.phase == "warm":
                assert self.warm_target is not None
                loss, l_res, l_data = self.warm_terms(ps.xs, ps.ts, self.warm_target)
            else:
                loss, l_res, l_data = self._terms(ps.xs, ps.ts, ps.phi, ps.F, ps.gradF)
            loss.backward()
            box.update(loss=loss.detach(), l_res=l_res.detach(), l_data=l_data.detach())
            return loss

        cap = self.cap()
        done = lbfgs_step(opt, closure, cap, cap * 5 // 4 + 1)
        self.last = {k: float(v) for k, v in box.items()}
        if not all(math.isfinite(v) for v in self.last.values()):
            raise InputError("the PINN fit diverged (non-finite loss); try --pinn-w-data lower "
                             "or --method fd")
        return done

    def scan_dice_now(self) -> list[tuple[float, float]]:
        """Per scan, (core, whole) Dice of the network on the data voxels that carry an
        interval in that scan."""
        with torch.no_grad():
            tks = self.model.scan_times(self.scales.rel)
            tc, te = (float(v) for v in self.model.thresholds())
            xs = self.data.xs
            per_scan = []
            for k, m in enumerate(self.data.models):
                u = self.net(xs, tks[k].expand(xs.shape[0], 1)).double().cpu().numpy()
                per_scan.append(m.dice(np.where(m.classes != IGNORED, u, 0.0), tc, te))
        return per_scan

    def row(self, check: bool = True) -> dict[str, Any]:
        """The check row: iteration, phase, losses, Dice, the unknowns in physical terms and
        the origin (the FD fit's log columns where they mean the same)."""
        ph = self.model.physical(self.scales.length, self.scales.span)
        per_scan = self.scan_dice_now()
        self.scan_dice = per_scan
        origin = self.net.origin().cpu().double().numpy()
        last = self.last
        return {"solve": self.epoch, "stage": f"pinn {self.phase}", "misfit": last["l_data"],
                "loss": last["loss"], "loss_res": last["l_res"],
                **check_columns(per_scan, ph, origin, self.progress.elapsed)}

    def progress_line(self, row: dict[str, Any] | None = None) -> str:
        row = row if row is not None else self.progress.log[-1]
        last = self.last
        return (f"  pinn it {self.epoch:6d} [{self.phase}] loss {last['loss']:.3e} (res "
                f"{last['l_res']:.2e}, data {last['l_data']:.2e}) Dice "
                f"{row['dice_core']:.3f}/{row['dice_whole']:.3f} lambda "
                f"{row['lambda_mm']:.2f} rho*T {row['rho_T']:.2f} "
                f"{self.progress.elapsed:5.0f} s")

    def stop_reason(self, log: list[dict[str, Any]]) -> str | None:
        return None   # the budget and max_iters only

    def final_row_needed(self, log: list[dict[str, Any]]) -> bool:
        """A last check unless the run ended at one (the result reports its Dice)."""
        return not log or log[-1]["solve"] != self.epoch or not self.scan_dice

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Network and unknowns, phase, L-BFGS state and the draw in use (a resumed run
        redraws, and restarts L-BFGS, exactly where the uninterrupted run does)."""
        return {"model": self.model.state_dict(), "phase": self.phase,
                "opt": self.opt.state_dict(), "key": int(self.key)}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        self.phase = str(st["phase"])
        self.key = int(st["key"])
        self.points = None
        self.opt = self._phase_optimiser()
        if st.get("opt") is not None:
            self.opt.load_state_dict(st["opt"])


def build_patient_loss(fine: FitLevel, unknowns: Unknowns, fit_settings: PatientFitSettings,
                       settings: PinnFitSettings, device: torch.device,
                       dtype: torch.dtype = torch.float32) -> PatientLoss:
    """The loss object of the PINN fit of ``unknowns`` on the fine level (network seeded by
    ``settings.seed``; thresholds fitted with ``fit_settings.fit_thresholds``)."""
    scales = patient_scales(fine, unknowns, settings)
    c = scales.center
    net = PinnNet(fine.geom.ndim, c, scales.length, scales.horizon, settings.width,
                  settings.depth, settings.fourier, settings.sigma_x, settings.sigma_t,
                  settings.seed, dtype)
    theta_spec = None
    if fit_settings.fit_thresholds:
        theta_spec = ((fit_settings.theta_c, *fit_settings.theta_c_range),
                      (fit_settings.theta_e, *fit_settings.theta_e_range))
    # the origin stays in the FD fit's origin box (the first scan's whole tumour + margin),
    # widened by 1 mm where the start sits on its edge
    d = unknowns.ndim
    box = (np.minimum(unknowns.lo[:d], c - 1.0), np.maximum(unknowns.hi[:d], c + 1.0))
    model = PatientModel(net, box, scales.a0, scales.b0, scales.q0, theta_spec,
                         (fit_settings.theta_c, fit_settings.theta_e), dtype).to(device)
    data = data_voxels(fine, settings, scales, device, dtype)
    warm_iters = min(settings.warm_iters, settings.max_iters // 4)
    sampler = PatientSampler(fine, settings, fit_settings.safety, scales, net, warm_iters,
                             device, dtype)
    return PatientLoss(model, data, sampler, scales, settings, warm_iters)
