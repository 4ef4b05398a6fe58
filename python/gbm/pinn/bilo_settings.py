"""Settings of the bilevel local-operator fit (``gbm fit --method bilo``), torch-free.

:class:`BiloSettings` lives apart from :mod:`gbm.pinn.bilo` so that ``gbm fit``'s configuration
(:class:`gbm.jobs.fit.config.FitConfig`) builds it without importing torch. The method the
settings drive is described in :mod:`gbm.pinn.bilo`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gbm.errors import require
from gbm.pinn.settings import PinnFitSettings

__all__ = ["BiloSettings"]


@dataclass(frozen=True)
class BiloSettings:
    """Knobs of the BiLO patient fit (:mod:`gbm.pinn.bilo`; units mm, days, seconds).

    Network: ``width``, ``depth``, ``fourier``, ``sigma_x``, ``sigma_t`` as the PINN's
    (:class:`gbm.pinn.settings.PinnFitSettings`); the parameters enter as extra inputs.
    Points: ``colloc`` collocation points per draw (redrawn every ``redraw_every`` steps),
    ``data_points`` labelled voxels, ``phi_min``, ``length_margin_mm`` as the PINN's.
    Lower level: mean R^2 + ``w_grad`` mean |dR/dtheta|^2 + ``w_fit`` mean (u - u_FD(theta))^2
    over the network's weights, Adam at ``lr_net``; ``pre_iters`` L-BFGS iterations of the same
    loss at the start first (pre-training). Upper level: Adam at ``lr_theta`` on the parameters,
    one step after every ``lower_steps`` lower steps, on the data misfit only, its residuals at
    the network's u (``upper_u="network"``) or at u_FD(theta) (``"fd"``, an experiment).
    ``theta_jitter`` (an experiment; 0 = off): the residual terms at per-point parameters
    theta + jitter N(0, 1) in the network's input units (a neighbourhood, not a point).
    Loop: ``max_iters`` steps (one step = one lower Adam step, or one L-BFGS iteration of the
    pre-training), ``time_budget`` seconds, checks every ``check_every`` steps, checkpoints every
    ``checkpoint_every``. ``dtype``: "float32" or "float64".
    """

    width: int = 64
    depth: int = 3
    fourier: int = 32
    sigma_x: float = 1.0
    sigma_t: float = 1.0
    colloc: int = 4000
    data_points: int = 8000
    phi_min: float = 0.02
    length_margin_mm: float = 10.0
    w_grad: float = 10.0
    w_fit: float = 100.0
    pre_iters: int = 300
    lower_steps: int = 5
    lr_net: float = 3e-4
    lr_theta: float = 1e-2
    upper_u: str = "network"
    theta_jitter: float = 0.0
    max_iters: int = 100_000
    time_budget: float = 900.0
    check_every: int = 50
    redraw_every: int = 100
    checkpoint_every: int = 200
    progress_seconds: float = 15.0
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    dtype: str = "float32"

    def validate(self) -> None:
        require(self.width > 0 and self.depth > 0, "BiLO width and depth must be > 0")
        require(self.colloc > 0 and self.data_points > 0,
                "--pinn-colloc and --pinn-data-points must be > 0")
        require(0 <= self.phi_min < 0.5, f"phi_min must be in [0, 0.5), got {self.phi_min}")
        require(self.time_budget > 0, f"--pinn-budget must be > 0 seconds, got "
                f"{self.time_budget}")
        require(self.max_iters > 0 and self.pre_iters >= 0 and self.lower_steps >= 1,
                "BiLO iterations must be >= 0 (lower_steps >= 1)")
        require(self.theta_jitter >= 0, "theta_jitter must be >= 0")
        require(self.w_grad >= 0 and self.w_fit >= 0 and self.lr_net > 0 and self.lr_theta > 0,
                "BiLO weights must be >= 0 and learning rates > 0")
        require(self.redraw_every > 0, "redraw_every must be > 0")
        require(self.upper_u in ("network", "fd"), f"upper_u must be network or fd, got "
                f"{self.upper_u!r}")
        require(self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got "
                f"{self.dtype!r}")
        require(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
                f"--device must be auto, cpu or cuda, got {self.device!r}")

    def pinn_view(self) -> PinnFitSettings:
        """The PINN settings that the shared pieces read (scales, data voxels, collocation
        sampler of :mod:`gbm.pinn.patient_loss`): points, margin, seed; the pre-training as
        the PINN's warm start."""
        return PinnFitSettings(width=self.width, depth=self.depth, fourier=self.fourier,
                               sigma_x=self.sigma_x, sigma_t=self.sigma_t, colloc=self.colloc,
                               data_points=self.data_points, phi_min=self.phi_min,
                               length_margin_mm=self.length_margin_mm,
                               warm_iters=self.pre_iters, max_iters=self.max_iters,
                               redraw_every=self.redraw_every, seed=self.seed, compile=False,
                               device=self.device, threads=self.threads)
