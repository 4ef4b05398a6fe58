"""Physics-informed neural networks (PINN) for the diffuse-domain Fisher-Kolmogorov equation:
the network methods, both trained by one :class:`gbm.pinn.train.Trainer`.

Two methods: the paper's density experiments (Sec. 2.3-2.4: forward solve, inference of Dw and
rho, extrapolation; ``python -m gbm infer | pinn-forward | extrapolate``) and the fit of a
patient's segmentations (``gbm fit --method pinn``). Modules:

Network and physics
    * :mod:`gbm.pinn.network` -- the network: an MLP on scaled (x', t') with a hard initial
      condition and a forward Laplacian (u, grad u, u_t, lap u in one pass);
    * :mod:`gbm.pinn.kernels` -- the fused feature-major MLP pass with its hand-written backward,
      oneDNN products, the glibc heap setting (the epoch's speed);
    * :mod:`gbm.pinn.residual` -- the scaled diffuse-domain residual, its point sets (phi, F,
      grad F interpolated once), the least-squares Dw, rho of a network;
    * :mod:`gbm.pinn.sampling` -- collocation points drawn by the Rust core, deterministic in
      (seed, draw).
Training
    * :mod:`gbm.pinn.train` -- the Trainer (the loop: checks, checkpoints, time budget) and the
      loss-object protocol it runs;
    * :mod:`gbm.pinn.optim` -- what the Trainer and its loss objects share: loop settings,
      progress, the L-BFGS optimiser and one capped L-BFGS step;
    * :mod:`gbm.pinn.density_loss` -- the density method's loss object (Adam / L-BFGS recipes,
      data weighting, least-squares start) and its settings;
    * :mod:`gbm.pinn.patient_loss` -- the patient fit's loss object (scales, network + unknowns,
      data voxels, collocation with the warm-start target, phases warm -> hold -> joint);
    * :mod:`gbm.pinn.stopping` -- the stopping rule (paper Eq. 11) and the tolerance table;
    * :mod:`gbm.pinn.checkpoint` -- atomic checkpoints with every RNG state (exact resume).
Methods (what a command calls)
    * :mod:`gbm.pinn.inverse` -- ``gbm infer``: parameter inference and its results folder;
    * :mod:`gbm.pinn.forward` -- ``gbm pinn-forward`` and ``gbm extrapolate``;
    * :mod:`gbm.pinn.patient` -- ``gbm fit --method pinn``: the patient fit (the recipe is in
      its docstring) and the network's u on a grid;
    * :mod:`gbm.pinn.config` -- the density commands' settings (frozen dataclasses, TOML);
    * :mod:`gbm.pinn.settings` -- the patient fit's settings (torch-free, for ``gbm fit``'s
      flags);
    * :mod:`gbm.pinn.report` -- log.csv, the figures and tables of a density run, u on a grid.

The command-line parsers are in :mod:`gbm.cli.pinn`. ``gbm.pinn`` imports nothing from
:mod:`gbm.inference` (its sibling): what both patient methods share lives in
:mod:`gbm.problem.segmentation`.

Public API::

    from gbm.pinn import InferConfig, infer, ForwardPinnConfig, pinn_forward,
                         ExtrapolateConfig, extrapolate
    res = infer(InferConfig(), "runs/infer")      # -> dict (results.json)

The names are imported lazily: the CLI can register the subcommands without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExtrapolateConfig": "gbm.pinn.config",
    "ForwardPinnConfig": "gbm.pinn.config",
    "InferConfig": "gbm.pinn.config",
    "PinnNet": "gbm.pinn.network",
    "extrapolate": "gbm.pinn.forward",
    "first_stop": "gbm.pinn.stopping",
    "infer": "gbm.pinn.inverse",
    "load_network": "gbm.pinn.forward",
    "pinn_forward": "gbm.pinn.forward",
    "stopping_sums": "gbm.pinn.stopping",
    "tolerance_table": "gbm.pinn.stopping",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import on first use, so that ``gbm.cli.pinn`` (the CLI) does not load torch."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gbm.pinn' has no attribute {name!r}")
