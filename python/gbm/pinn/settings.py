"""Settings of the PINN patient fit (``gbm fit --method pinn``), torch-free.

:class:`PinnFitSettings` lives here, apart from :mod:`gbm.pinn.patient`, so that ``gbm fit``'s
configuration (:class:`gbm.jobs.fit.run.FitConfig`) takes its ``--pinn-*`` defaults from it without
importing torch. The recipe the settings drive is in :mod:`gbm.pinn.patient`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gbm.errors import require

__all__ = ["RECIPES", "PinnFitSettings"]

#: ``--recipe`` of ``gbm fit --method pinn``: "gbm" (:mod:`gbm.pinn.patient`) or "pinn-gbm"
#: (PINN-GBM's recipe, :mod:`gbm.pinn.recipe`).
RECIPES = ("gbm", "pinn-gbm")


@dataclass(frozen=True)
class PinnFitSettings:
    """Knobs of the PINN patient fit (the recipe: :mod:`gbm.pinn.patient`; units mm, days,
    seconds)."""

    width: int = 100
    depth: int = 3
    fourier: int = 64
    sigma_x: float = 1.0
    sigma_t: float = 1.0
    colloc: int = 12000
    data_points: int = 24000
    phi_min: float = 0.02
    length_margin_mm: float = 10.0
    w_data: float = 100.0
    w_theta: float = 1.0
    warm_iters: int = 200
    hold_iters: int = 0
    max_iters: int = 100_000
    time_budget: float = 900.0
    check_every: int = 50
    redraw_every: int = 500
    checkpoint_every: int = 200
    progress_seconds: float = 15.0
    compile: bool = True
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    recipe: str = "gbm"

    def validate(self) -> None:
        require(self.recipe in RECIPES, f"--recipe must be {' or '.join(RECIPES)}, got "
                f"{self.recipe!r}")
        require(self.width > 0 and self.depth > 0, "PINN width and depth must be > 0")
        require(self.colloc > 0 and self.data_points > 0,
                "--pinn-colloc and --pinn-data-points must be > 0")
        require(0 <= self.phi_min < 0.5, f"phi_min must be in [0, 0.5), got {self.phi_min}")
        require(self.w_data > 0, f"--pinn-w-data must be > 0, got {self.w_data}")
        require(self.time_budget > 0, f"--pinn-budget must be > 0 seconds, got "
                f"{self.time_budget}")
        require(self.max_iters > 0 and self.warm_iters >= 0 and self.hold_iters >= 0,
                "iterations must be >= 0")
        require(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
                f"--device must be auto, cpu or cuda, got {self.device!r}")
