"""The density method's loss object: forward solve, inference and extrapolation on density
observations (paper Sec. 2.3-2.4), trained by :class:`gbm.pinn.train.Trainer`.

Loss (paper Eq. 10, with the scaled residual of :mod:`gbm.pinn.residual`)::

    L = w_res * mean_colloc(R^2) + w_data * mean_obs((u - u_obs)^2)

R = T * r is the residual in the network's scaled variables; the data term is on u in [0, 1]
(the density observation model :class:`gbm.problem.density.model.DensityL2`, its torch side).

One *epoch* is one optimiser step. With ``optimizer="adam"`` (the paper's recipe) an epoch uses
one collocation set (``n_colloc`` radially-sampled points, redrawn every ``resample_every``
epochs; draw c is deterministic in (seed, c)), optionally plus ``obs_colloc`` observation points
where the residual is also evaluated, and the data term on all observations (or a random batch of
``data_batch``). Dw and rho are trained through their logarithms (``log_dw``, ``log_rho``, initial
0.1 and 0.01 as in the paper) with their own learning rate ``lr_params``; ``param_mode="lsq"``
instead moves them each epoch towards the least-squares optimum of the residual for the current
network (the residual is linear in Dw and rho), with an exponential moving average. The learning
rate is halved every ``halve_every`` epochs (the paper halves once, at 400k of 800k); an optional
final L-BFGS phase (``lbfgs_fraction`` of the epochs or of the time budget) follows.

With ``optimizer="lbfgs"`` (the default recipe of :class:`gbm.pinn.config.InferConfig`) one epoch
is one L-BFGS iteration: phase "fit" (``fit_iters`` iterations on the data term only, parameters
frozen), then Dw, rho are set to the least-squares optimum of the residual for the fitted network
(``ls_init``), then phase "lbfgs" trains network and log-parameters jointly on ``lbfgs_points``
fixed collocation points (redrawn every ``redraw_every`` iterations when > 0; the L-BFGS memory is
reset then).

Data weighting (``data_weight``; one rule for every problem, nothing tuned per case)::

    "fixed"   L = w_res mean(R^2) + w_data mean_i(d_i^2),                        d = u - u_obs
    "auto"    L = w_res mean(R^2) + w_data mean_i((1/k sum_{j in N_k(i)} d_j)^2),
              k = max(1, ceil((sigma_hat / noise_floor)^2))

sigma_hat is the observations' noise level, estimated before training and without the network
(nearest-neighbour differences with a median, :func:`gbm.problem.density.noise.estimate_noise`);
N_k(i) are the k nearest observations of observation i (itself included) in the scaled coordinates
(x', t'). The average of k independent noise values has variance sigma^2 / k <= noise_floor^2:
"auto" compares network and data after averaging both over just enough neighbours that the noise
left in the data term is no larger than ``noise_floor`` (0.005, 0.5 % of the carrying capacity),
the level at which the clean-data recipe (w_data = 10) is accurate (-1.7 / -2.9 % on Dw at 1 %
noise), and keeps that recipe's weight. Noise the network could fit then hardly lowers the data
term: a network that follows the noise gets a noisy Laplacian, and Dw, read from the Laplacian,
is biased low (errors in variables: -37 to -42 % at 5 % noise with "fixed"). The signal, smooth
on the scale of the k neighbours except at the front, is compared with the same averaging on
both sides, so the data term stays unbiased (at the truth, its expectation is sigma^2 / k).
With sigma_hat <= noise_floor (clean data, ~1e-4) k = 1 and "auto" is "fixed", bit for bit.
With data batches (``data_batch``) a batch of B terms evaluates the network at the B k
observations of their neighbourhoods.

The data-only fit (phase "fit") of "auto" on noisy data stops by the discrepancy principle
(Morozov): as soon as its data term is <= sigma_hat^2 / k, the expected value at the noise, and
at ``fit_iters`` otherwise; fitting further would fit the noise (spectral bias: the network takes
the smooth signal first).

Rules tried and dropped: the Gaussian likelihood's 1 / sigma_hat^2 scaling of w_data, with
sigma_hat from the data-only fit's misfit, the least-squares start skipped (Dw -76 to -80 % at 5 %
noise within 510 s), or with sigma_hat from the observations, the least-squares start kept, and
w_data adapted at every check so that mean d^2 tracks sigma_hat^2 (Morozov in the joint phase;
Dw -80 %, and -54 % when the network was first trained with Dw, rho frozen): with the data term
at its noise level, w_data ~0.1-0.5, the residual dominates and the joint optimum drifts to small
Dw; weak-form least squares (Messenger & Bortz 2021) for the start, from a noise-fitted network,
scattered between -27 and -72 %.

Learnt loss weights (Kendall et al. 2018; with the variances maximised out,
1/2 log mean(R^2) + 1/2 log mean(d^2)) were tried and fail here: the objective is unbounded
below at Dw, rho -> 0, where u = IC solves the PDE exactly and log mean(R^2) -> -inf.

Checks (every ``check_every`` epochs, :class:`gbm.pinn.train.Trainer`) record epoch, wall
time, losses, Dw, rho (:meth:`DensityLoss.row`; the only host syncs in the loop, apart from a
progress line every ``progress_seconds``) and evaluate the stopping rule (Eq. 11,
:mod:`gbm.pinn.stopping`; :meth:`DensityLoss.stop_reason`).

Checkpoints hold, besides the Trainer's epoch, wall time, log and RNG states, the network,
parameters, optimiser states, phase and the batch generator (:meth:`DensityLoss.state_dict`); a
run resumed from one continues bit-identically on CPU (the collocation draw of an epoch depends
only on the epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gbm.pinn.kernels import keep_heap
from gbm.pinn.network import PinnNet
from gbm.pinn.optim import LoopSettings, Progress, lbfgs_step, make_lbfgs
from gbm.pinn.residual import PointSet, domain_point_set, least_squares_parameters, residual_terms
from gbm.pinn.sampling import CollocationSampler
from gbm.pinn.stopping import first_stop
from gbm.problem.density.model import DENSITY_L2
from gbm.problem.density.noise import estimate_noise, neighbours
from gbm.problem.domain import Domain

__all__ = ["LOG_COLUMNS", "PHASES", "DensityLoss", "TrainSettings", "trainable_checks"]


#: Codes of the training phases in the log's "phase" column.
PHASES = {"adam": 0.0, "lbfgs": 1.0, "fit": 2.0}

LOG_COLUMNS = ["epoch", "seconds", "loss", "loss_res", "loss_data", "dw", "rho", "lr", "phase"]


@dataclass(frozen=True)
class TrainSettings:
    """Knobs of the density method (:class:`DensityLoss`, run by
    :class:`gbm.pinn.train.Trainer`; see the module docstring)."""

    n_colloc: int = 4000
    resample_every: int = 1
    obs_colloc: int = 0
    data_batch: int | None = None
    w_res: float = 1.0
    w_data: float = 10.0
    lr: float = 1e-3
    lr_params: float = 1e-3
    param_mode: str = "adam"  # "fixed" | "adam" | "lsq"
    lsq_rate: float = 0.05
    warmup_epochs: int = 0
    halve_every: int | None = None
    lbfgs_fraction: float = 0.0
    optimizer: str = "adam"  # "adam" (paper; optional final L-BFGS) | "lbfgs"
    fit_iters: int = 0
    ls_init: bool = True
    redraw_every: int = 0
    lbfgs_points: int = 16000
    lbfgs_iters_per_step: int = 20
    check_every: int = 1000
    window: int = 10
    tol: float | None = None
    max_epochs: int = 800_000
    time_budget: float | None = None
    checkpoint_every: int = 5000
    progress_seconds: float = 10.0
    compile: bool = False
    seed: int = 0
    phi_min: float = 0.5
    data_weight: str = "fixed"  # "fixed" | "auto" (module docstring)
    noise_floor: float = 0.005

    def loop_settings(self) -> LoopSettings:
        """The Trainer's loop knobs of these settings."""
        return LoopSettings(self.max_epochs, self.time_budget, self.check_every,
                            self.checkpoint_every, self.progress_seconds, print_every_check=True)


@dataclass
class _Obs:
    ps: PointSet
    u: Tensor


def _data_loss(u: Tensor, u_obs: Tensor, avg_idx: Tensor | None) -> Tensor:
    """The data term: the density L2 (``avg_idx`` None) or "auto"'s misfit averaged over the
    rows of ``avg_idx`` (index sets into u, one per term; module docstring)."""
    if avg_idx is None:
        return DENSITY_L2.loss(u, u_obs)
    return (u - u_obs)[avg_idx].mean(1).square().mean()


class DensityLoss:
    """The density method's loss object: Adam (+ optional L-BFGS) or the L-BFGS recipe on a
    :class:`PinnNet` with optional trainable Dw, rho (module docstring); the
    :class:`gbm.pinn.train.Trainer` runs its loop.

    Parameters
    ----------
    net : PinnNet
    domain : Domain
    settings : TrainSettings
    dw, rho : float
        Initial (or fixed, for ``param_mode="fixed"``) parameters.
    radius : float
        Collocation sampling radius, mm.
    t_max : float
        Collocation times are U(0, t_max) days.
    obs : (points (N, d), t (N,), u (N,)) or None
        Observations for the data loss.
    device : torch.device
    dtype : torch.dtype
    truth : (dw, rho) or None
        For the relative errors in the progress line and log.
    extra_state : dict
        Plain-typed metadata stored in every checkpoint (config, problem summary).
    printer : callable
        Receives the loss object's own messages (end of the data-only fit, compile failure).
    """

    def __init__(
        self,
        net: PinnNet,
        domain: Domain,
        settings: TrainSettings,
        dw: float,
        rho: float,
        radius: float,
        t_max: float,
        obs: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
        device: torch.device | str,
        dtype: torch.dtype,
        truth: tuple[float, float] | None,
        extra_state: dict[str, Any] | None,
        printer: Callable[[str], None],
    ) -> None:
        self.s = settings
        self.progress = Progress()
        self.device = torch.device(device)
        self.dtype = dtype
        self.net = net.to(self.device)
        if self.device.type == "cpu":
            keep_heap()  # reuse the epoch's large blocks instead of page-faulting them in anew
        self.domain = domain
        self.truth = truth
        self.extra_state = extra_state or {}
        self.print = printer
        self.length = net.length
        self.horizon = net.horizon
        self.log_dw = nn.Parameter(torch.tensor(math.log(dw), dtype=dtype, device=self.device))
        self.log_rho = nn.Parameter(torch.tensor(math.log(rho), dtype=dtype, device=self.device))
        self.sampler = CollocationSampler(
            domain, net, radius, settings.n_colloc, t_max, settings.seed, settings.phi_min,
            self.device, dtype,
        )
        self.obs: _Obs | None = None
        if obs is not None:
            pts, t, u = obs
            ps = domain_point_set(domain, net, pts, t, self.device, dtype)
            self.obs = _Obs(ps, torch.as_tensor(u, dtype=dtype, device=self.device))
        self.gen = torch.Generator().manual_seed(int(settings.seed) + 12345)
        fit = settings.param_mode == "adam"
        self.log_dw.requires_grad_(fit)
        self.log_rho.requires_grad_(fit)
        groups: list[dict[str, Any]] = [{"params": list(self.net.parameters()), "lr": settings.lr}]
        if fit:
            groups.append({"params": [self.log_dw, self.log_rho], "lr": settings.lr_params})
        self.opt = torch.optim.Adam(groups)
        self.lbfgs: torch.optim.LBFGS | None = None
        self.phase = "adam"
        self.phase_start = 0
        self._lbfgs_key: int | None = None
        self._cps_key: int | None = None
        self._cps: PointSet | None = None
        self._lbfgs_ps: PointSet | None = None
        self._last: dict[str, Tensor] = {}
        self._loss_fn = self._loss_terms
        self.compile_seconds: float | None = None
        self._setup_weighting(obs)
        if settings.compile:
            # Each run compiles its own graphs. Without the reset, dynamo keeps the graphs of
            # earlier runs in this process (guarded on another `self`), and after
            # recompile_limit (8) entries it silently runs this loss eagerly: the third or fourth
            # run of `gbm bench` would lose the compiled speed. Compiled kernels stay in
            # inductor's on-disk cache, so a recompile takes seconds.
            torch._dynamo.reset()
            self._loss_fn = torch.compile(self._loss_terms, dynamic=False)

    def _setup_weighting(self, obs: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> None:
        """Data weighting (module docstring): "auto" estimates the noise from the observations
        and, above the floor, averages the data misfit over k = ceil((sigma_hat / floor)^2)
        nearest observations."""
        settings, domain = self.s, self.domain
        self.w_data = float(settings.w_data)
        self.noise_estimate: float | None = None
        if self.obs is not None and settings.data_weight == "auto":
            pts, t, u = obs  # type: ignore[misc]
            self.noise_estimate = estimate_noise(pts, t, u, domain.center,
                                                 self.length, self.horizon)
        self.average_k = 1
        self.fit_stop: dict[str, float] | None = None
        self._avg_idx: Tensor | None = None
        if self.noisy:
            assert self.noise_estimate is not None
            self.average_k = math.ceil((self.noise_estimate / settings.noise_floor) ** 2)
            idx = neighbours(pts, t, domain.center, self.length, self.horizon, self.average_k)
            self._avg_idx = torch.as_tensor(idx, device=self.device)

    # ---------------------------------------------------------------- progress
    @property
    def epoch(self) -> int:
        return self.progress.epoch

    @property
    def elapsed(self) -> float:
        return self.progress.elapsed

    # ---------------------------------------------------------------- parameters
    @property
    def dw(self) -> float:
        return float(torch.exp(self.log_dw.detach()).item())

    @property
    def rho(self) -> float:
        return float(torch.exp(self.log_rho.detach()).item())

    def coefficients(self) -> tuple[Tensor, Tensor]:
        """a = Dw T / L^2 and b = rho T (tensors, differentiable in the log-parameters)."""
        a = torch.exp(self.log_dw) * (self.horizon / self.length**2)
        b = torch.exp(self.log_rho) * self.horizon
        return a, b

    # ---------------------------------------------------------------- data
    def _collocation(self) -> PointSet:
        key = self.epoch // self.s.resample_every if self.s.resample_every > 0 else 0
        if key != self._cps_key or self._cps is None:
            self._cps = self.sampler.draw(key)
            self._cps_key = key
        ps = self._cps
        if self.obs is not None and self.s.obs_colloc > 0:
            n = len(self.obs.ps)
            idx = torch.randint(0, n, (min(self.s.obs_colloc, n),), generator=self.gen)
            idx = idx.to(self.device)
            o = self.obs.ps
            ps = PointSet(
                torch.cat([ps.xs, o.xs[idx]]), torch.cat([ps.ts, o.ts[idx]]),
                torch.cat([ps.phi, o.phi[idx]]), torch.cat([ps.F, o.F[idx]]),
                torch.cat([ps.gradF, o.gradF[idx]]),
            )
        return ps

    def _data_index(self) -> Tensor | None:
        if self.obs is None or self.s.data_batch is None or self.s.data_batch >= len(self.obs.ps):
            return None
        idx = torch.randint(0, len(self.obs.ps), (self.s.data_batch,), generator=self.gen)
        return idx.to(self.device)

    # ---------------------------------------------------------------- loss
    def _loss_terms(
        self, xs: Tensor, ts: Tensor, phi: Tensor, F: Tensor, gradF: Tensor,
        oxs: Tensor | None, ots: Tensor | None, ou: Tensor | None, a: Tensor, b: Tensor,
        use_res: bool, w_data: Tensor | float = 1.0, avg_idx: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        if use_res:
            dv = self.net.derivatives(xs, ts)
            ps = PointSet(xs, ts, phi, F, gradF)
            ta, tb, tc = residual_terms(dv, ps)
            r = ta - a * tb - b * tc
            l_res = r.square().mean()
            if self.s.param_mode == "lsq":
                # least-squares optimum for this network (the parameters then move towards it)
                a, b = _lsq_ab(ta.detach(), tb.detach(), tc.detach(), a.detach(), b.detach())
        else:  # data-only warm start: the residual is not needed
            l_res = torch.full((), float("nan"), dtype=xs.dtype, device=xs.device)
        if oxs is not None:
            assert ou is not None
            l_data = _data_loss(self.net(oxs, ots), ou, avg_idx)
        else:
            l_data = torch.zeros((), dtype=xs.dtype, device=xs.device)
        loss = w_data * l_data
        if use_res:
            loss = loss + self.s.w_res * l_res
        return loss, l_res, l_data, a, b

    def _compute(self, ps: PointSet, data_idx: Tensor | None, use_res: bool = True):
        a, b = self.coefficients()
        if self.obs is not None:
            o = self.obs
            avg = self._avg_idx
            if data_idx is not None and avg is not None:
                # a batch of averaged terms: the k neighbours of each batch observation
                nb = avg[data_idx]
                data_idx = nb.reshape(-1)
                avg = torch.arange(data_idx.numel(), device=nb.device).reshape(nb.shape)
            if data_idx is None:
                oxs, ots, ou = o.ps.xs, o.ps.ts, o.u
            else:
                oxs, ots, ou = o.ps.xs[data_idx], o.ps.ts[data_idx], o.u[data_idx]
        else:
            oxs = ots = ou = avg = None
        # a tensor, so that changing the weight does not recompile the loss
        w = torch.tensor(self.w_data, dtype=self.dtype, device=self.device)
        return self._loss_fn(ps.xs, ps.ts, ps.phi, ps.F, ps.gradF, oxs, ots, ou, a, b, use_res, w,
                             avg)

    # ---------------------------------------------------------------- schedule
    def _lr_factor(self) -> float:
        if self.s.halve_every:
            return 0.5 ** (self.epoch // self.s.halve_every)
        return 1.0

    def _set_lr(self) -> None:
        f = self._lr_factor()
        self.opt.param_groups[0]["lr"] = self.s.lr * f
        if len(self.opt.param_groups) > 1:
            self.opt.param_groups[1]["lr"] = self.s.lr_params * f

    # ---------------------------------------------------------------- steps
    def _adam_step(self) -> None:
        self._set_lr()
        ps = self._collocation()
        idx = self._data_index()
        warm = self.epoch < self.s.warmup_epochs
        self.opt.zero_grad(set_to_none=True)
        loss, l_res, l_data, a, b = self._compute(ps, idx, use_res=not warm)
        loss.backward()
        if warm:
            if self.log_dw.grad is not None:
                self.log_dw.grad = None
                self.log_rho.grad = None
        self.opt.step()
        if self.s.param_mode == "lsq" and not warm:
            with torch.no_grad():
                q = self.s.lsq_rate
                self.log_dw.lerp_(torch.log(a * (self.length**2 / self.horizon)), q)
                self.log_rho.lerp_(torch.log(b / self.horizon), q)
        self._last = {"loss": loss.detach(), "loss_res": l_res.detach(),
                      "loss_data": l_data.detach()}

    def _start_lbfgs(self, phase: str = "lbfgs") -> None:
        """Start an L-BFGS phase: "fit" (data only, parameters frozen) or "lbfgs" (joint)."""
        params = list(self.net.parameters())
        if phase != "fit" and self.s.param_mode == "adam":
            params += [self.log_dw, self.log_rho]
            self.log_dw.requires_grad_(True)
            self.log_rho.requires_grad_(True)
        self.lbfgs = make_lbfgs(params, self.s.lbfgs_iters_per_step)
        self.phase = phase
        self.phase_start = self.epoch

    def _lbfgs_points(self) -> PointSet:
        """The fixed L-BFGS point set; redrawn every ``redraw_every`` iterations of the phase."""
        key = 0
        if self.s.redraw_every > 0:
            key = (self.epoch - self.phase_start) // self.s.redraw_every
        if self._lbfgs_ps is None or key != self._lbfgs_key:
            s = CollocationSampler(self.domain, self.net, self.sampler.radius, self.s.lbfgs_points,
                                   self.sampler.t_max, self.s.seed + 777, self.s.phi_min,
                                   self.device, self.dtype)
            self._lbfgs_ps = s.draw(key)
            if self._lbfgs_key is not None and key != self._lbfgs_key:
                # new points: the curvature pairs of the old loss no longer apply
                start = self.phase_start
                self._start_lbfgs(self.phase)
                self.phase_start = start
            self._lbfgs_key = key
        return self._lbfgs_ps

    def least_squares_init(self) -> None:
        """Set Dw, rho to the least-squares optimum of the residual for the current network."""

        ps = self._lbfgs_points()
        dv = self.net.derivatives(ps.xs, ps.ts)
        a, b = least_squares_parameters(dv, ps)
        with torch.no_grad():
            if a.item() > 0:
                self.log_dw.fill_(math.log(a.item() * self.length**2 / self.horizon))
            if b.item() > 0:
                self.log_rho.fill_(math.log(b.item() / self.horizon))

    @property
    def noisy(self) -> bool:
        """"auto" weighting found noise above the floor: the averaged data term is in use."""
        return (self.s.data_weight == "auto" and self.noise_estimate is not None
                and self.noise_estimate > self.s.noise_floor)

    def noise_level(self) -> float:
        """The data term's expected value at the noise, sigma_hat^2 / k ("auto", noisy data)."""
        assert self.noise_estimate is not None
        return self.noise_estimate**2 / self.average_k

    def data_term(self) -> float:
        """The data term of the loss for the current network, on all observations."""
        assert self.obs is not None
        o = self.obs
        with torch.no_grad():
            return float(_data_loss(self.net(o.ps.xs, o.ps.ts), o.u, self._avg_idx).item())

    def fit_reached_noise(self) -> bool:
        """Discrepancy principle ("auto", noisy data): the data-only fit stops once its data term
        is down to the noise, <= sigma_hat^2 / k; evaluated every ``lbfgs_iters_per_step``
        iterations (the fit's steps end there), so the stop does not depend on where a run was
        interrupted and resumed."""
        if not self.noisy or self.epoch % self.s.lbfgs_iters_per_step != 0:
            return False
        value = self.data_term()
        if value <= self.noise_level():
            self.fit_stop = {"epoch": int(self.epoch), "data_term": value,
                             "noise_level": self.noise_level()}
            return True
        return False

    def _report_fit(self) -> None:
        """One line at the end of the data-only fit: its rms misfit and the weighting in use."""
        if self.obs is None:
            return
        with torch.no_grad():
            o = self.obs
            mse = float(DENSITY_L2.loss(self.net(o.ps.xs, o.ps.ts), o.u).item())
        msg = f"data-only fit ends at epoch {self.epoch}: rms misfit {math.sqrt(mse):.2e}"
        if self.noise_estimate is not None:
            msg += f", sigma_hat {self.noise_estimate:.2e}"
        if self.noisy:
            msg += f", misfit averaged over k = {self.average_k} neighbours"
        self.print(msg)

    def _lbfgs_step(self) -> int:
        assert self.lbfgs is not None
        ps = self._lbfgs_points()
        opt = self.lbfgs
        use_res = self.phase != "fit"
        box: dict[str, Tensor] = {}

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            loss, l_res, l_data, _a, _b = self._compute(ps, None, use_res=use_res)
            loss.backward()
            box.update(loss=loss.detach(), loss_res=l_res.detach(), loss_data=l_data.detach())
            return loss

        cap = self.s.lbfgs_iters_per_step
        if self.s.redraw_every > 0:  # stop exactly at the next redraw
            done = (self.epoch - self.phase_start) % self.s.redraw_every
            cap = min(cap, self.s.redraw_every - done)
        if self.phase == "fit":
            cap = min(cap, max(self.s.fit_iters - self.epoch, 1))
            # steps of the fit end at multiples of lbfgs_iters_per_step (see fit_reached_noise)
            per = self.s.lbfgs_iters_per_step
            cap = min(cap, per - self.epoch % per)
        cap = min(cap, max(self.s.max_epochs - self.epoch, 1))  # end exactly at max_epochs
        done = lbfgs_step(opt, closure, cap, cap * 5 // 4)
        self._last = box
        return done

    def _warm_up_compile(self) -> None:
        """Compile the loss graphs this run will use (counted in the wall time); fall back to
        eager execution if torch.compile fails."""
        t0 = time.perf_counter()
        gen_state = self.gen.get_state()
        try:
            if self.phase in ("fit", "lbfgs"):
                ps, idx = self._lbfgs_points(), None
            else:
                ps, idx = self._collocation(), self._data_index()
            modes = [True]
            if (self.phase == "fit") or (self.phase == "adam" and self.s.warmup_epochs > 0):
                modes.append(False)
            for use_res in modes:
                self._compute(ps, idx, use_res=use_res)  # result discarded
        except Exception as exc:  # torch.compile is optional
            self.print(f"torch.compile failed ({type(exc).__name__}); running eagerly")
            self._loss_fn = self._loss_terms
        finally:
            self.gen.set_state(gen_state)  # the warm-up must not shift the random stream
        self.compile_seconds = time.perf_counter() - t0


    # ---------------------------------------------------------------- the Trainer's hooks
    @property
    def _lbfgs_from(self) -> int | None:
        """The epoch at which the Adam recipe's final L-BFGS phase starts (None: none)."""
        if self.s.lbfgs_fraction > 0:
            return int(round(self.s.max_epochs * (1.0 - self.s.lbfgs_fraction)))
        return None

    def begin(self) -> None:
        """Before the first step of a run: training mode, the L-BFGS recipe's first phase,
        the compiled graphs (their compile time counts in the wall time)."""
        s = self.s
        self.net.train()
        if self.epoch == 0 and s.optimizer == "lbfgs" and self.phase == "adam":
            self._start_lbfgs("fit" if (s.fit_iters > 0 and self.obs is not None) else "lbfgs")
        if s.compile and self.compile_seconds is None and self.epoch < s.max_epochs:
            self._warm_up_compile()

    def before_step(self) -> None:
        """Phase changes: Adam -> final L-BFGS (epoch or time budget), data-only fit -> joint
        L-BFGS (after ``fit_iters`` or at the noise, with the least-squares start)."""
        s = self.s
        if self.phase == "adam":
            budget_switch = (s.time_budget is not None and s.lbfgs_fraction > 0
                             and self.elapsed >= (1 - s.lbfgs_fraction) * s.time_budget)
            lbfgs_from = self._lbfgs_from
            if (lbfgs_from is not None and self.epoch >= lbfgs_from) or budget_switch:
                self._start_lbfgs()
        elif self.phase == "fit" and (self.epoch >= s.fit_iters or self.fit_reached_noise()):
            self._report_fit()
            if s.ls_init and s.param_mode != "fixed":
                self.least_squares_init()
            self._lbfgs_ps = None
            self._lbfgs_key = None
            self._start_lbfgs("lbfgs")

    def step(self) -> int:
        """One optimiser step; returns the epochs it counts for (Adam 1, L-BFGS its
        iterations)."""
        if self.phase == "adam":
            self._adam_step()
            return 1
        return self._lbfgs_step()

    def row(self, check: bool = True) -> dict[str, float]:
        """The log row of the current state (``check`` False: the end-of-run row, not a
        check)."""
        last = {k: float(v.item()) for k, v in self._last.items()} if self._last else {}
        return {
            "epoch": float(self.epoch),
            "seconds": float(self.elapsed),
            "loss": last.get("loss", float("nan")),
            "loss_res": last.get("loss_res", float("nan")),
            "loss_data": last.get("loss_data", float("nan")),
            "dw": self.dw,
            "rho": self.rho,
            "lr": float(self.opt.param_groups[0]["lr"]) if self.phase == "adam" else 1.0,
            "phase": PHASES[self.phase],
            "check": 1.0 if check else 0.0,
        }

    def progress_line(self, row: dict[str, float] | None = None) -> str:
        last = {k: float(v.item()) for k, v in self._last.items()} if self._last else {}
        dw, rho = self.dw, self.rho
        msg = (f"epoch {self.epoch:7d} [{self.phase}] loss {last.get('loss', float('nan')):.3e} "
               f"(res {last.get('loss_res', float('nan')):.2e}, data "
               f"{last.get('loss_data', float('nan')):.2e})  Dw {dw:.4f}  rho {rho:.5f}")
        if self.truth is not None:
            msg += (f"  err {100 * (dw / self.truth[0] - 1):+.1f}% / "
                    f"{100 * (rho / self.truth[1] - 1):+.1f}%")
        msg += f"  {self.elapsed:6.0f} s"
        return msg

    def stop_reason(self, log: list[dict[str, float]]) -> str | None:
        """The stopping rule (Eq. 11, with ``tol`` and trainable parameters): a reason when it
        fires at the last check."""
        s = self.s
        if s.tol is None or s.param_mode == "fixed":
            return None
        dws = [r["dw"] for r in log]
        rhos = [r["rho"] for r in log]
        i = first_stop(dws, rhos, s.tol, s.window, trainable_checks(log))
        if i is not None and i == len(log) - 1:
            return f"tolerance {s.tol:g} (Eq. 11)"
        return None

    def final_row_needed(self, log: list[dict[str, float]]) -> bool:
        """Whether the run ends between checks (an end-of-run row is added then)."""
        return not log or log[-1]["epoch"] != self.epoch

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The loss object's part of a checkpoint (the Trainer adds epoch, wall time, log and
        the global RNG states)."""
        return {
            "net": self.net.state_dict(),
            "log_dw": self.log_dw.detach().clone(),
            "log_rho": self.log_rho.detach().clone(),
            "opt": self.opt.state_dict(),
            "lbfgs": self.lbfgs.state_dict() if self.lbfgs is not None else None,
            "phase": self.phase,
            "phase_start": int(self.phase_start),
            "gen": self.gen.get_state(),
            "settings": asdict(self.s),
            "extra": self.extra_state,
            "w_data": float(self.w_data),
            "noise_estimate": self.noise_estimate,
            "average_k": int(self.average_k),
            "fit_stop": self.fit_stop,
        }

    def load_state_dict(self, st: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the Trainer has restored the epoch first)."""
        self.net.load_state_dict(st["net"])
        with torch.no_grad():
            self.log_dw.copy_(st["log_dw"])
            self.log_rho.copy_(st["log_rho"])
        self.opt.load_state_dict(st["opt"])
        self.phase = str(st["phase"])
        self.gen.set_state(st["gen"])
        self.w_data = float(st.get("w_data", self.s.w_data))
        self.fit_stop = st.get("fit_stop")
        if self.phase in ("lbfgs", "fit"):
            self._start_lbfgs(self.phase)
            self.phase_start = int(st["phase_start"])
            self._lbfgs_key = None
            self._lbfgs_points()
            if st["lbfgs"] is not None:
                assert self.lbfgs is not None
                self.lbfgs.load_state_dict(st["lbfgs"])


def trainable_checks(log: list[dict[str, float]]) -> list[bool]:
    """Per log row: were the parameters trainable (not the frozen data-only "fit" phase)?"""
    return [r.get("phase", 0.0) != PHASES["fit"] for r in log]


def _lsq_ab(ta: Tensor, tb: Tensor, tc: Tensor, a0: Tensor, b0: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares (a, b) of mean (ta - a tb - b tc)^2, kept positive (falls back to a0, b0)."""
    bb = (tb * tb).mean()
    bc = (tb * tc).mean()
    cc = (tc * tc).mean()
    ab = (ta * tb).mean()
    ac = (ta * tc).mean()
    det = bb * cc - bc * bc
    det = torch.where(det.abs() > 1e-30, det, torch.full_like(det, 1e-30))
    a = (ab * cc - ac * bc) / det
    b = (ac * bb - ab * bc) / det
    a = torch.where(a > 0, a, a0)
    b = torch.where(b > 0, b, b0)
    return a, b
