"""Settings of the PINN runs as frozen dataclasses (TOML-loadable; CLI flags override them).

Units: mm, days, Dw in mm^2/day, rho in 1/day, times in seconds where named ``*_seconds`` or
``time_budget``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gbm.errors import InputError

__all__ = ["ProblemConfig", "InferConfig", "ForwardPinnConfig", "ExtrapolateConfig",
           "config_from_dict"]


@dataclass(frozen=True)
class ProblemConfig:
    """The inference problem: domain, seed, horizon and observations (shared by the PINN's
    :class:`InferConfig` and the FD-based :class:`gbm.fdfit.FdFitConfig`, so that both methods
    see exactly the same observations for the same settings).

    problem : "atlas" (embedded ICBM152 axial slice, or --wm/--gm maps) or "disk" (paper Sec. 3.1).
    horizon : T, days (atlas 150, disk 300 when left at None).
    dw_true, rho_true : parameters of the synthetic FD observations (and the truth for errors).
    n_obs : number of synthetic observations (paper: 26,830 patient slice, 20,000 disk).
    noise : standard deviation of Gaussian noise added to synthetic observations (absolute, in
        units of the carrying capacity: 0.01 = "1 % noise").
    region_threshold, region_factor : the region radius (= the PINN's length scale L and the
        collocation sampling radius) is region_factor x the largest distance from the seed of an
        observation with u >= region_threshold ...
    region_radius : ... unless given here (mm). Noisy observations exceed any small threshold
        everywhere, so with noise the automatic rule returns the whole sampled area.
    seed : random seed (observation sampling, noise, network initialisation).
    """

    problem: str = "atlas"
    wm: str | None = None
    gm: str | None = None
    csf: str | None = None
    slice: int | None = None
    three_d: bool = False
    seed_mm: tuple[float, ...] | None = None
    observations: tuple[str, ...] | None = None
    days: tuple[float, ...] | None = None
    horizon: float | None = None
    dw_true: float = 0.13
    rho_true: float = 0.025
    ratio: float = 10.0
    n_obs: int | None = None
    noise: float = 0.0
    region_threshold: float = 1e-3
    region_factor: float = 1.25
    region_radius: float | None = None
    seed: int = 0

    def validate_problem(self) -> None:
        """Raise :class:`InputError` for an unusable problem description."""
        _req(self.problem in ("atlas", "disk"),
             f"problem must be 'atlas' or 'disk', got {self.problem!r}")
        for name in ("dw_true", "rho_true", "ratio", "region_factor"):
            v = getattr(self, name)
            _req(isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf"),
                 f"{name} must be a finite positive number, got {v}")
        _req(self.horizon is None or self.horizon > 0,
             f"--horizon must be > 0, got {self.horizon}")
        _req(self.noise >= 0, f"--noise must be >= 0, got {self.noise}")
        _req(self.n_obs is None or self.n_obs > 0, f"--n-obs must be > 0, got {self.n_obs}")
        _req(self.region_radius is None or self.region_radius > 0,
             f"--region-radius must be > 0 mm, got {self.region_radius}")
        if self.seed_mm is not None:
            _req(len(self.seed_mm) == 3, f"--seed-mm needs x,y,z in world mm, got {self.seed_mm}")
        if self.days is not None:
            _req(self.observations is not None, "--days needs --observations")

    def resolved_horizon(self) -> float:
        if self.horizon is not None:
            return float(self.horizon)
        return 300.0 if self.problem == "disk" else 150.0

    def resolved_n_obs(self) -> int:
        if self.n_obs is not None:
            return int(self.n_obs)
        return 20_000 if self.problem == "disk" else 26_830


def _req(cond: bool, msg: str) -> None:
    if not cond:
        raise InputError(msg)


@dataclass(frozen=True)
class InferConfig(ProblemConfig):
    """Parameter inference (paper Sec. 2.4) with the defaults this project measured best.

    The problem fields are those of :class:`ProblemConfig`.

    Default recipe (``optimizer="lbfgs"``)
    --------------------------------------
    1. *fit*: ``fit_iters`` L-BFGS iterations on the data term only (parameters frozen);
    2. *least-squares start*: Dw, rho set to the least-squares optimum of the PDE residual for the
       fitted network (``ls_init``; the residual is linear in Dw and rho);
    3. *joint*: L-BFGS on ``w_res * residual + w_data * data`` over the network and log Dw,
       log rho, with ``lbfgs_points`` fixed collocation points (redrawn every ``redraw_every``
       iterations when > 0), until the time budget, ``max_epochs`` or the stopping rule.
    Inputs: x' = (x - x_ic)/L, t' = t/T, 64 fixed Fourier features with sigma_x = 0.75 (low
    frequencies: the network's Laplacian, which D is read from, stays smooth). One L-BFGS
    iteration counts as one epoch; checks every 100 iterations.

    The paper's recipe is ``optimizer="adam"`` (Adam on resampled ``n_colloc`` points per epoch,
    trainable log-parameters with learning rate ``lr_params``, checks every 1000 epochs,
    ``halve_every`` for the learning-rate halving, optional final L-BFGS ``lbfgs_fraction``).
    """

    # network
    width: int = 100
    depth: int = 3
    fourier: int = 64
    sigma_x: float = 0.75
    sigma_t: float = 1.0
    dtype: str = "float32"
    # training
    n_colloc: int = 4000
    resample_every: int = 1
    obs_colloc: int = 0
    data_batch: int | None = None
    w_res: float = 1.0
    w_data: float = 10.0
    lr: float = 1e-3
    lr_params: float = 1e-3
    param_mode: str = "adam"
    lsq_rate: float = 0.05
    dw0: float = 0.1
    rho0: float = 0.01
    warmup_epochs: int = 0
    halve_every: int | None = None
    lbfgs_fraction: float = 0.0
    optimizer: str = "lbfgs"
    fit_iters: int = 500
    ls_init: bool = True
    redraw_every: int = 0
    lbfgs_points: int = 8000
    lbfgs_iters_per_step: int = 20
    # stopping / logging
    check_every: int | None = None
    window: int = 10
    tol: float | None = None
    tolerances: tuple[float, ...] = (0.2, 0.15, 0.1, 0.07, 0.05)
    max_epochs: int = 800_000
    time_budget: float | None = 510.0
    checkpoint_every: int = 500
    progress_seconds: float = 10.0
    report_days: tuple[float, ...] | None = None
    # machinery
    compile: bool = True
    device: str = "auto"
    threads: int | None = None

    def validate(self) -> None:
        self.validate_problem()
        _req(self.dtype in ("float32", "float64"),
             f"--dtype must be float32 or float64, got {self.dtype}")
        _req(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"--device must be auto, cpu or cuda, got {self.device!r}")
        _req(self.optimizer in ("adam", "lbfgs"),
             f"optimizer must be 'adam' or 'lbfgs', got {self.optimizer!r}")
        _req(self.param_mode in ("adam", "lsq"),
             f"param_mode must be 'adam' or 'lsq', got {self.param_mode!r}")
        for name in ("lr", "lr_params", "dw0", "rho0"):
            v = getattr(self, name)
            _req(isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf"),
                 f"{name} must be a finite positive number, got {v}")
        _req(self.width > 0 and self.depth > 0, "width and depth must be > 0")
        _req(self.fourier >= 0, "fourier must be >= 0")
        _req(self.n_colloc > 0, "n_colloc must be > 0")
        _req(self.resample_every >= 0, "resample_every must be >= 0 (0: never)")
        _req(self.check_every is None or self.check_every > 0,
             f"--check-every must be > 0, got {self.check_every}")
        _req(self.window > 0, f"--window must be > 0, got {self.window}")
        _req(self.tol is None or self.tol > 0, f"--tol must be > 0, got {self.tol}")
        _req(self.max_epochs > 0, f"--max-epochs must be > 0, got {self.max_epochs}")
        _req(self.time_budget is None or self.time_budget > 0,
             f"--time-budget must be > 0 seconds, got {self.time_budget}")
        _req(0.0 <= self.lbfgs_fraction < 1.0, "lbfgs_fraction must be in [0, 1)")
        _req(self.checkpoint_every > 0, "checkpoint_every must be > 0")

    def resolved_check_every(self) -> int:
        """Epochs between checks: 1000 for Adam (the paper), 100 for L-BFGS iterations."""
        if self.check_every is not None:
            return int(self.check_every)
        return 1000 if self.optimizer == "adam" else 100


@dataclass(frozen=True)
class ForwardPinnConfig:
    """Forward PINN solve (paper Sec. 3.2.1): Adam then L-BFGS with fixed Dw, rho."""

    problem: str = "atlas"
    wm: str | None = None
    gm: str | None = None
    csf: str | None = None
    slice: int | None = None
    three_d: bool = False
    seed_mm: tuple[float, ...] | None = None
    horizon: float | None = None
    dw: float = 0.13
    rho: float = 0.025
    ratio: float = 10.0
    radius: float | None = None
    width: int = 100
    depth: int = 3
    fourier: int = 64
    sigma_x: float = 0.75
    sigma_t: float = 1.0
    dtype: str = "float32"
    n_colloc: int = 4000
    resample_every: int = 1
    lr: float = 1e-3
    adam_epochs: int = 2000
    lbfgs_iters: int = 5000
    lbfgs_points: int = 8000
    time_budget: float | None = 540.0
    check_every: int = 100
    checkpoint_every: int = 5000
    progress_seconds: float = 10.0
    report_days: tuple[float, ...] | None = None
    compile: bool = True
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def resolved_horizon(self) -> float:
        if self.horizon is not None:
            return float(self.horizon)
        return 300.0 if self.problem == "disk" else 150.0


@dataclass(frozen=True)
class ExtrapolateConfig:
    """Extrapolation (paper Sec. 3.1.2 end): hold the inferred Dw, rho, warm-start the trained
    network and train on [T, T2]."""

    horizon2: float | None = None
    n_colloc: int = 4000
    lr: float = 1e-3
    adam_epochs: int = 0
    lbfgs_iters: int = 4000
    lbfgs_points: int = 8000
    time_budget: float | None = 480.0
    check_every: int = 100
    progress_seconds: float = 10.0
    compile: bool = True
    seed: int = 0
    device: str = "auto"
    threads: int | None = None


def config_from_dict(cls: type, values: dict[str, Any], overrides: dict[str, Any] | None = None):
    """Build a frozen config from TOML values then CLI overrides (None = not given).

    Keys may use '-' or '_'; lists become tuples; unknown keys raise InputError.
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    merged: dict[str, Any] = {}
    for src in (values, overrides or {}):
        for k, v in src.items():
            key = k.replace("-", "_")
            if key not in names:
                raise InputError(f"--config: unknown setting {k!r}")
            if v is None and src is overrides:
                continue
            merged[key] = tuple(v) if isinstance(v, list) else v
    try:
        return cls(**merged)
    except TypeError as e:
        raise InputError(f"--config: {e}") from None
