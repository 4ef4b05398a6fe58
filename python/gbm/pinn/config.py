"""Settings of the PINN runs as frozen dataclasses (TOML-loadable; CLI flags override them).

Units: mm, days, Dw in mm^2/day, rho in 1/day, times in seconds where named ``*_seconds`` or
``time_budget``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gbm.errors import require
from gbm.problem.density.config import ProblemConfig

__all__ = ["InferConfig", "ForwardPinnConfig", "ExtrapolateConfig"]


@dataclass(frozen=True)
class InferConfig(ProblemConfig):
    """Parameter inference (paper Sec. 2.4) with the defaults this project measured best.

    The problem fields are those of :class:`gbm.problem.density.config.ProblemConfig`.

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

    Data weighting (``data_weight``, see :mod:`gbm.pinn.train`)
    -----------------------------------------------------------
    ``"auto"`` (default): sigma_hat = the observations' noise level, estimated before training
    from nearest-neighbour differences (:func:`gbm.problem.density.noise.estimate_noise`). Up to
    sigma_hat = ``noise_floor`` (0.005, 0.5 % of the carrying capacity) the recipe is
    ``"fixed"``'s, bit for bit. Above it the data term compares network and data averaged over the
    k = ceil((sigma_hat / noise_floor)^2) nearest observations::

        w_data mean_i ((1/k) sum_{j in N_k(i)} (u(x_j, t_j) - u_obs,j))^2

    so that the noise left in it, sigma^2 / k, is no more than ``noise_floor``^2 (k = 5 at 1 %
    noise, 102 at 5 %), with the clean-data weight ``w_data`` = 10, and the data-only fit stops
    once that term is down to sigma_hat^2 / k (discrepancy principle). ``"fixed"``: the plain
    mean((u - u_obs)^2), weight ``w_data``, ``fit_iters`` data-only iterations.

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
    data_weight: str = "auto"
    noise_floor: float = 0.005
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
        require(self.dtype in ("float32", "float64"),
             f"--dtype must be float32 or float64, got {self.dtype}")
        require(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"--device must be auto, cpu or cuda, got {self.device!r}")
        require(self.optimizer in ("adam", "lbfgs"),
             f"optimizer must be 'adam' or 'lbfgs', got {self.optimizer!r}")
        require(self.data_weight in ("auto", "fixed"),
             f"--data-weight must be auto or fixed, got {self.data_weight!r}")
        require(self.noise_floor >= 0, f"noise_floor must be >= 0, got {self.noise_floor}")
        require(self.param_mode in ("adam", "lsq"),
             f"param_mode must be 'adam' or 'lsq', got {self.param_mode!r}")
        for name in ("lr", "lr_params", "dw0", "rho0"):
            v = getattr(self, name)
            require(isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf"),
                 f"{name} must be a finite positive number, got {v}")
        require(self.width > 0 and self.depth > 0, "width and depth must be > 0")
        require(self.fourier >= 0, "fourier must be >= 0")
        require(self.n_colloc > 0, "n_colloc must be > 0")
        require(self.resample_every >= 0, "resample_every must be >= 0 (0: never)")
        require(self.check_every is None or self.check_every > 0,
             f"--check-every must be > 0, got {self.check_every}")
        require(self.window > 0, f"--window must be > 0, got {self.window}")
        require(self.tol is None or self.tol > 0, f"--tol must be > 0, got {self.tol}")
        require(self.max_epochs > 0, f"--max-epochs must be > 0, got {self.max_epochs}")
        require(self.time_budget is None or self.time_budget > 0,
             f"--time-budget must be > 0 seconds, got {self.time_budget}")
        require(0.0 <= self.lbfgs_fraction < 1.0, "lbfgs_fraction must be in [0, 1)")
        require(self.checkpoint_every > 0, "checkpoint_every must be > 0")

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
