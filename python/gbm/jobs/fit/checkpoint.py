"""Where ``gbm fit`` keeps finished stages so that an interrupted run can resume (``--resume``).

``.<out>.checkpoint.json`` beside the output folder holds the finished stages (global, local,
posterior) under a fingerprint of the settings and the input files (path, size, mtime), so a
resumed run never mixes stages of different problems; the PINN keeps its own
``.<out>.checkpoint.pt`` beside it. Both are removed when the run completes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gbm import io
from gbm.inference.segmentation_fit import Checkpoint
from gbm.jobs.fit.config import FitConfig

__all__ = ["FileCheckpoint"]


class FileCheckpoint(Checkpoint):
    """The finished stages of one fit in ``.<out>.checkpoint.json`` (module header).

    Parameters
    ----------
    out : path
        The fit's output folder.
    cfg : FitConfig
        Its settings (with the input files, fingerprinted).
    resume : bool
        Load the stages an earlier run with the same fingerprint finished; otherwise start empty.
    """

    def __init__(self, out: str | Path, cfg: FitConfig, resume: bool) -> None:
        o = Path(out)
        self.path = o.parent / f".{o.name}.checkpoint.json"
        self.fingerprint = _fingerprint(cfg)
        self.method = cfg.method
        self.stages: dict[str, Any] = {}
        self.resumed: list[str] = []
        #: why nothing was loaded with ``resume`` (None: stages were loaded, or no resume asked)
        self.nothing_to_resume: str | None = None
        if resume:
            self._load()

    @property
    def pinn_path(self) -> Path:
        """The PINN fit's own checkpoint (network and optimiser state)."""
        return self.path.with_suffix(".pt")

    def _load(self) -> None:
        data: dict[str, Any] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = {}
        if data.get("fingerprint") == self.fingerprint:
            self.stages = dict(data.get("stages", {}))
        if self.method in ("pinn", "bilo"):   # the network checks its own checkpoint's fingerprint
            if not self.pinn_path.is_file():
                self.nothing_to_resume = "no checkpoint"
        elif not self.stages:
            self.nothing_to_resume = ("its checkpoint is for other settings or inputs"
                                      if self.path.is_file() else "no checkpoint")

    def load(self, stage: str) -> dict[str, Any] | None:
        got = self.stages.get(stage)
        if got is not None:
            self.resumed.append(stage)
        return got

    def save(self, stage: str, data: dict[str, Any]) -> None:
        self.stages[stage] = data
        self.path.parent.mkdir(parents=True, exist_ok=True)
        io.write_json_atomic(self.path, {"fingerprint": self.fingerprint,
                                         "stages": self.stages}, force=True)

    def remove(self) -> None:
        """Delete the checkpoint files of this run's method (the run completed)."""
        self.path.unlink(missing_ok=True)
        if self.method in ("pinn", "bilo"):
            self.pinn_path.unlink(missing_ok=True)


def _fingerprint(cfg: FitConfig) -> str:
    """sha256 of the settings and each input file's path, size and mtime."""
    files = sorted(str(v) for v in (cfg.wm, cfg.gm, cfg.csf, cfg.recurrence, *cfg.scans) if v)
    if cfg.patient:
        files += sorted(str(q) for q in Path(cfg.patient).rglob("*") if q.is_file())
    stamp = []
    for f in files:
        f = f.split("@")[0]
        try:
            st = os.stat(f)
            stamp.append([f, st.st_size, st.st_mtime_ns])
        except OSError:
            stamp.append([f, None, None])
    settings = {k: v for k, v in cfg.to_json().items() if k != "phase_cache"}  # bit-identical
    key = json.dumps({"config": settings, "files": stamp}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()
