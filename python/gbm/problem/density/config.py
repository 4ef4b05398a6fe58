"""The inference problem's settings, shared by both inference methods (no torch needed).

:class:`ProblemConfig` describes the domain, seed, horizon and observations; the PINN's
:class:`gbm.pinn.config.InferConfig` and the FD-based :class:`gbm.inference.density_fit.FdFitConfig` extend
it, so that both methods see exactly the same observations for the same settings.

Units: mm, days, Dw in mm^2/day, rho in 1/day.
"""

from __future__ import annotations

from dataclasses import dataclass

from gbm.errors import require

__all__ = ["ProblemConfig"]


@dataclass(frozen=True)
class ProblemConfig:
    """The inference problem: domain, seed, horizon and observations (shared by the PINN's
    :class:`gbm.pinn.config.InferConfig` and the FD-based
    :class:`gbm.inference.density_fit.FdFitConfig`, so that both methods see exactly the same observations for the same settings).

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
        require(self.problem in ("atlas", "disk"),
             f"problem must be 'atlas' or 'disk', got {self.problem!r}")
        for name in ("dw_true", "rho_true", "ratio", "region_factor"):
            v = getattr(self, name)
            require(isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf"),
                 f"{name} must be a finite positive number, got {v}")
        require(self.horizon is None or self.horizon > 0,
             f"--horizon must be > 0, got {self.horizon}")
        require(self.noise >= 0, f"--noise must be >= 0, got {self.noise}")
        require(self.n_obs is None or self.n_obs > 0, f"--n-obs must be > 0, got {self.n_obs}")
        require(self.region_radius is None or self.region_radius > 0,
             f"--region-radius must be > 0 mm, got {self.region_radius}")
        if self.seed_mm is not None:
            require(len(self.seed_mm) == 3, f"--seed-mm needs x,y,z in world mm, got {self.seed_mm}")
        if self.days is not None:
            require(self.observations is not None, "--days needs --observations")

    def resolved_horizon(self) -> float:
        if self.horizon is not None:
            return float(self.horizon)
        return 300.0 if self.problem == "disk" else 150.0

    def resolved_n_obs(self) -> int:
        if self.n_obs is not None:
            return int(self.n_obs)
        return 20_000 if self.problem == "disk" else 26_830
