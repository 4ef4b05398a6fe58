"""Physics-informed neural network (PINN) for the diffuse-domain Fisher-Kolmogorov equation.

Forward solve, parameter inference (Dw, rho) and extrapolation, after the paper's Sec. 2.3-2.4,
with a forward-Laplacian network (:mod:`gbm.pinn.network`), a scaled DDM residual
(:mod:`gbm.pinn.residual`), collocation sampling by the Rust core (:mod:`gbm.pinn.sampling`), the
training loop (:mod:`gbm.pinn.train`), the stopping rule (:mod:`gbm.pinn.stopping`) and the
commands behind ``python -m gbm infer | pinn-forward | extrapolate``.

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
