"""The PINN training loop: one :class:`Trainer` for both network methods.

The Trainer runs the loop; a *loss object* (:class:`TrainingLoss`) holds what a method trains
and how: the network, its point sets, the observation model's terms, the unknowns, the
optimisers and the phase state. Two loss objects exist:

* :class:`gbm.pinn.density_loss.DensityLoss` -- density observations (paper Sec. 2.3-2.4):
  ``gbm infer``, ``pinn-forward``, ``extrapolate``; built by ``Trainer(net, domain, settings,
  dw, rho, ...)`` (the recipe and its loss are described in :mod:`gbm.pinn.density_loss`);
* :class:`gbm.pinn.patient_loss.PatientLoss` -- a patient's segmentations (``gbm fit --method
  pinn``, :mod:`gbm.pinn.patient`); run by ``Trainer.for_loss(loss, loop_settings, ...)``.

The loop (:meth:`Trainer.run`)::

    if the log is empty: a first row (the start)
    loss.begin()                                   # the run's first phase, compiled graphs
    while epoch < max_epochs:
        loss.before_step()                         # phase changes
        epoch += loss.step()                       # one optimiser step: 1 (Adam) or the
                                                   # L-BFGS iterations it did
        every check_every epochs: a log row (loss.row), a progress line, loss.stop_reason
        every checkpoint_every epochs: a checkpoint
        stop at the time budget
    an end-of-run row where loss.final_row_needed; a checkpoint

One *epoch* is one Adam step or one L-BFGS iteration. Checks are the only host syncs in the loop
(apart from a progress line every ``progress_seconds``).

Checkpoints (every ``checkpoint_every`` epochs, and at the end) hold the epoch, the wall time,
the log, all global RNG states (:mod:`gbm.pinn.checkpoint`), the caller's metadata
(``extra``) and the loss object's state (network, parameters, optimiser states, phase); a run
resumed from one continues bit-identically on CPU.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from gbm.errors import InputError
from gbm.pinn.checkpoint import rng_state, save_checkpoint, set_rng_state
from gbm.pinn.density_loss import (
    LOG_COLUMNS,
    PHASES,
    DensityLoss,
    TrainSettings,
    trainable_checks,
)
from gbm.pinn.network import PinnNet
from gbm.pinn.optim import LoopSettings, Progress
from gbm.problem.domain import Domain

__all__ = [
    "LOG_COLUMNS",
    "PHASES",
    "LoopSettings",
    "TrainResult",
    "TrainSettings",
    "Trainer",
    "TrainingLoss",
    "resolve_device",
    "setup_threads",
    "trainable_checks",
]


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():

        raise InputError("--device cuda: CUDA is not available on this machine")
    return dev


def setup_threads(n: int | None) -> int:
    """Use ``n`` threads (default: all logical cores) for torch's CPU kernels."""
    n = n or os.cpu_count() or 1
    torch.set_num_threads(int(n))
    return int(n)


class TrainingLoss(Protocol):
    """What the :class:`Trainer` asks of a loss object (module docstring).

    ``progress`` is the run's :class:`gbm.pinn.optim.Progress`, created by the loss object and
    advanced by the Trainer; the loss object reads the epoch and wall time from it.
    """

    progress: Progress
    net: PinnNet
    compile_seconds: float | None

    def begin(self) -> None:
        """Before the first step of a run (also of a resumed one)."""

    def before_step(self) -> None:
        """Before every step: phase changes."""

    def step(self) -> int:
        """One optimiser step; returns the epochs it counts for (>= 1)."""

    def row(self, check: bool = True) -> dict[str, Any]:
        """The log row of the current state (``check`` False: an end-of-run row)."""

    def progress_line(self, row: dict[str, Any] | None = None) -> str:
        """A one-line summary of the current state (``row``: the check's row, if any)."""

    def stop_reason(self, log: list[dict[str, Any]]) -> str | None:
        """A reason to stop at the check just logged (None: go on)."""

    def final_row_needed(self, log: list[dict[str, Any]]) -> bool:
        """Whether the run's end needs a row of its own."""

    def state_dict(self) -> dict[str, Any]:
        """The loss object's part of a checkpoint."""

    def load_state_dict(self, st: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (called after the Trainer restored the epoch)."""


@dataclass
class TrainResult:
    """What a run produced: the final state and its log (one row per check)."""

    epochs: int
    seconds: float
    stopped: str
    log: list[dict[str, float]] = field(default_factory=list)
    compile_seconds: float | None = None


def _print(msg: str) -> None:
    print(msg, file=sys.stdout, flush=True)


class Trainer:
    """The training loop of both network methods (module docstring).

    ``Trainer(net, domain, settings, dw, rho, ...)`` trains the density method's loss
    (:class:`gbm.pinn.density_loss.DensityLoss`; its parameters are documented there);
    :meth:`for_loss` runs any loss object. Attributes the Trainer does not have are read from
    its loss object (``trainer.dw``, ``trainer.obs``, ``trainer.noise_estimate``, ...).

    Parameters
    ----------
    net, domain, settings, dw, rho, radius, t_max, obs, device, dtype, truth, extra_state
        The density method's loss (:class:`gbm.pinn.density_loss.DensityLoss`); its
        ``extra_state`` is stored in every checkpoint.
    checkpoint_path : path or None
    printer : callable, optional
        Receives the progress lines (default: print).
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
        obs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        truth: tuple[float, float] | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        extra_state: dict[str, Any] | None = None,
        printer: Callable[[str], None] | None = None,
    ) -> None:
        say = printer or _print
        loss = DensityLoss(net, domain, settings, dw, rho, radius, t_max, obs, device, dtype,
                           truth, extra_state, say)
        self._bind(loss, settings.loop_settings(), checkpoint_path, None, say)

    @classmethod
    def for_loss(cls, loss: TrainingLoss, loop: LoopSettings,
                 checkpoint_path: str | os.PathLike[str] | None = None,
                 extra_state: dict[str, Any] | None = None,
                 printer: Callable[[str], None] | None = None) -> Trainer:
        """A Trainer running ``loss`` with the loop knobs ``loop``; ``extra_state`` (plain
        types) is stored in every checkpoint under "extra"."""
        trainer = cls.__new__(cls)
        trainer._bind(loss, loop, checkpoint_path, extra_state, printer or _print)
        return trainer

    def _bind(self, loss: TrainingLoss, loop: LoopSettings,
              checkpoint_path: str | os.PathLike[str] | None,
              extra_state: dict[str, Any] | None, printer: Callable[[str], None]) -> None:
        self.loss = loss
        self.loop = loop
        self.progress = loss.progress
        self.checkpoint_path = checkpoint_path
        self.extra_state = extra_state
        self.print = printer

    def __getattr__(self, name: str) -> Any:
        """The loss object's attributes, read through (module docstring)."""
        if name == "loss":  # not bound yet
            raise AttributeError(name)
        return getattr(self.loss, name)

    # ---------------------------------------------------------------- progress
    @property
    def epoch(self) -> int:
        return self.progress.epoch

    @property
    def elapsed(self) -> float:
        return self.progress.elapsed

    @property
    def log(self) -> list[dict[str, Any]]:
        return self.progress.log

    @property
    def net(self) -> PinnNet:
        return self.loss.net

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: the loss object's state, the epoch, wall time, log, RNG states and,
        where given, the caller's ``extra_state``."""
        st = self.loss.state_dict()
        st.update({"epoch": int(self.epoch), "elapsed": float(self.elapsed),
                   "log": [dict(r) for r in self.log], "rng": rng_state()})
        if self.extra_state is not None:
            st["extra"] = self.extra_state
        return st

    def load_state_dict(self, st: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        p = self.progress
        p.epoch = int(st["epoch"])
        p.elapsed = float(st["elapsed"])
        p.log = [dict(r) for r in st["log"]]
        while p.log and p.log[-1].get("check", 1.0) == 0.0:
            p.log.pop()  # the end-of-run row of the interrupted run is not a check
        set_rng_state(st["rng"])
        self.loss.load_state_dict(st)

    def save(self) -> None:
        if self.checkpoint_path is not None:
            save_checkpoint(self.checkpoint_path, self.state_dict())

    # ---------------------------------------------------------------- loop
    def _record(self, on_check: Callable[[Trainer, dict[str, Any]], None] | None,
                check: bool = True) -> dict[str, Any]:
        row = self.loss.row(check)
        self.log.append(row)
        if on_check is not None:
            on_check(self, row)
        return row

    def run(self, on_check: Callable[[Trainer, dict[str, Any]], None] | None = None
            ) -> TrainResult:
        """Train until max_epochs, the time budget, or the loss object's stopping rule
        (module docstring); ``on_check(trainer, row)`` is called with every log row."""
        loop, loss, p = self.loop, self.loss, self.progress
        if not self.log:
            self._record(on_check)
        t_start = time.perf_counter() - p.elapsed
        next_print = time.perf_counter() + loop.progress_seconds
        stopped = "max_epochs"
        loss.begin()
        while p.epoch < loop.max_epochs:
            loss.before_step()
            n = loss.step()
            prev = p.epoch
            p.epoch += n
            p.elapsed = time.perf_counter() - t_start
            if p.epoch // loop.check_every > prev // loop.check_every:
                row = self._record(on_check)
                if loop.print_every_check or time.perf_counter() >= next_print:
                    self.print(loss.progress_line(row))
                    next_print = time.perf_counter() + loop.progress_seconds
                reason = loss.stop_reason(self.log)
                if reason is not None:
                    stopped = reason
                    break
            elif loop.print_every_check and time.perf_counter() >= next_print:
                self.print(loss.progress_line())
                next_print = time.perf_counter() + loop.progress_seconds
            if p.epoch // loop.checkpoint_every > prev // loop.checkpoint_every:
                self.save()
            if loop.time_budget is not None and p.elapsed >= loop.time_budget:
                stopped = f"time budget {loop.time_budget:g} s"
                break
        if loss.final_row_needed(self.log):
            self._record(on_check, check=False)
        self.save()
        return TrainResult(p.epoch, p.elapsed, stopped, self.log, loss.compile_seconds)
