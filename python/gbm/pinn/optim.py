"""What the :class:`gbm.pinn.train.Trainer` and its loss objects share: the loop's knobs
(:class:`LoopSettings`), where a run stands (:class:`Progress`), the L-BFGS optimiser with this
project's settings (:func:`make_lbfgs`) and one L-BFGS step of at most ``cap`` iterations
(:func:`lbfgs_step`).

L-BFGS (torch.optim.LBFGS): learning rate 1, strong-Wolfe line search, 50 curvature pairs,
tolerances small enough (gradient 1e-12, change 1e-14) that a step ends at its iteration cap,
not early. One *iteration* is one quasi-Newton update (its line search may evaluate the loss more
than once); the Trainer counts iterations as epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["LoopSettings", "Progress", "lbfgs_step", "make_lbfgs"]


@dataclass(frozen=True)
class LoopSettings:
    """Knobs of the :class:`gbm.pinn.train.Trainer`'s loop (the method's own knobs are its loss
    object's).

    Attributes
    ----------
    max_epochs : int
        Stop after this many epochs (optimiser steps; L-BFGS iterations).
    time_budget : float or None
        Stop once the training wall time reaches it, seconds (None: no budget).
    check_every : int
        A check (a log row; the stopping rule) every ``check_every`` epochs.
    checkpoint_every : int
        A checkpoint every ``checkpoint_every`` epochs, and at the end.
    progress_seconds : float
        At most one progress line per ``progress_seconds`` (but see ``print_every_check``).
    print_every_check : bool
        True: a progress line at every check, and between checks every ``progress_seconds``
        (the density method); False: a line at a check only when ``progress_seconds`` have
        passed since the last one (the patient fit).
    """

    max_epochs: int
    time_budget: float | None
    check_every: int
    checkpoint_every: int
    progress_seconds: float
    print_every_check: bool = True


@dataclass
class Progress:
    """Where a run stands: the Trainer advances it, its loss object reads it.

    Attributes
    ----------
    epoch : int
        Optimiser steps done (Adam steps or L-BFGS iterations).
    elapsed : float
        Training wall time so far, seconds (a resumed run continues the interrupted one's).
    log : list of dict
        One row per check (the loss object writes the rows; the Trainer appends them).
    """

    epoch: int = 0
    elapsed: float = 0.0
    log: list[dict] = field(default_factory=list)


def make_lbfgs(params: Iterable[Tensor], max_iter: int = 20) -> torch.optim.LBFGS:
    """A fresh L-BFGS optimiser over ``params`` (module docstring; ``max_iter`` is reset by
    :func:`lbfgs_step` before every step)."""
    return torch.optim.LBFGS(list(params), lr=1.0, max_iter=max_iter, history_size=50,
                             line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                             tolerance_change=1e-14)


def lbfgs_step(opt: torch.optim.LBFGS, closure: Callable[[], Tensor], cap: int,
               max_eval: int) -> int:
    """One ``opt.step(closure)`` of at most ``cap`` iterations and ``max_eval`` loss
    evaluations; returns the iterations it did (at least 1, so a stalled step still advances the
    run)."""
    opt.param_groups[0]["max_iter"] = cap
    opt.param_groups[0]["max_eval"] = max_eval
    before = opt.state[opt._params[0]].get("n_iter", 0)
    opt.step(closure)
    after = opt.state[opt._params[0]].get("n_iter", 0)
    return max(int(after - before), 1)
