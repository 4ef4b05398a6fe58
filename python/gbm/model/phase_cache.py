"""An on-disk cache of phase fields, keyed by a hash of what the Cahn-Hilliard solve reads.

The phase field phi of a brain box (:meth:`gbm.model.geometry.Geometry.with_phase_field`) depends
only on the binary brain mask, the voxel spacing, epsilon and the solver options; a cohort on one
atlas, a refit of a patient or a forecast after a fit solve the same problem again (10-15 s at
1 mm). The cache stores phi once per distinct problem:

* **key**: SHA-256 of a format tag, gbm's version (a new release may change the solver, so it
  never reads an older release's entries), the mask's shape and packed bits, the spacing,
  epsilon and the sorted options (``repr`` of each value: exact floats);
* **entry**: ``<root>/phase_field/<key>.npz`` with ``phi`` (float64, exactly the solver's output)
  and the solver's ``info`` (JSON); written to a temporary file in the same folder and renamed
  into place (readers never see a partial entry; two processes writing one key write the same
  bytes). An unreadable or mismatched entry is ignored and rewritten.

Where: ``$GBM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/gbm`` or ``~/.cache/gbm``.
``GBM_CACHE_DIR=off`` (or ``none``, ``0``) disables it for a process; the commands that solve a
phase field take ``--no-cache``. The cache is a pure speed-up: a cached phi is bit-identical to a
fresh solve (tested), and the entry's ``info`` says ``"cached": true``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gbm.provenance import __version__

__all__ = ["PhaseFieldCache", "cache_key", "default_cache"]

#: Bump when the entry's layout changes.
FORMAT = "gbm-phase-field-cache-1"
#: Values of ``GBM_CACHE_DIR`` that switch the cache off.
OFF = ("off", "none", "0", "")


def cache_key(mask: np.ndarray, spacing: Any, epsilon: float, options: dict[str, Any]) -> str:
    """The hex SHA-256 of one phase-field problem (see the module header).

    Parameters
    ----------
    mask : ndarray, bool, shape (nx, ny[, nz])
    spacing : sequence of float, mm
    epsilon : float, mm
    options : dict
        The other keyword arguments of :func:`gbm._core.phase_field`.
    """
    m = np.ascontiguousarray(mask, dtype=bool)
    h = hashlib.sha256()
    head = {"format": FORMAT, "version": __version__, "shape": list(m.shape),
            "spacing": [repr(float(s)) for s in spacing], "epsilon": repr(float(epsilon)),
            "options": {k: repr(options[k]) for k in sorted(options)}}
    h.update(json.dumps(head, sort_keys=True).encode())
    h.update(np.packbits(m.reshape(-1)).tobytes())
    return h.hexdigest()


class PhaseFieldCache:
    """Phase fields on disk under ``root/phase_field`` (see the module header)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / "phase_field" / f"{key}.npz"

    def get(self, key: str, shape: tuple[int, ...]) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The entry of ``key`` (phi of ``shape``, info), or None when absent or unreadable."""
        p = self.path(key)
        try:
            with np.load(p, allow_pickle=False) as z:
                phi = np.ascontiguousarray(z["phi"], dtype=np.float64)
                info = json.loads(bytes(z["info"]).decode())
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, json.JSONDecodeError):
            return None
        if phi.shape != tuple(shape) or not isinstance(info, dict):
            return None
        return phi, info

    def put(self, key: str, phi: np.ndarray, info: dict[str, Any]) -> None:
        """Store an entry (staged and renamed into place); a full disk or a read-only folder is
        not an error: the cache is a speed-up only."""
        p = self.path(key)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=p.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, phi=np.ascontiguousarray(phi, dtype=np.float64),
                             info=np.frombuffer(json.dumps(info).encode(), dtype=np.uint8))
                os.replace(tmp, p)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return

    def solve(self, mask: np.ndarray, spacing: Any, epsilon: float, options: dict[str, Any],
              solver: Callable[[], tuple[np.ndarray, dict[str, Any]]]
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """phi and info of the problem: from the cache, or from ``solver()`` (then stored)."""
        key = cache_key(mask, spacing, epsilon, options)
        hit = self.get(key, tuple(np.shape(mask)))
        if hit is not None:
            phi, info = hit
            return phi, dict(info, cached=True, cache_key=key)
        phi, info = solver()
        info = dict(info)
        self.put(key, phi, info)
        return phi, dict(info, cached=False, cache_key=key)


def default_cache() -> PhaseFieldCache | None:
    """The user's cache (``$GBM_CACHE_DIR``, ``$XDG_CACHE_HOME/gbm`` or ``~/.cache/gbm``), or
    None when ``GBM_CACHE_DIR`` switches it off."""
    env = os.environ.get("GBM_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in OFF else PhaseFieldCache(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return PhaseFieldCache(base / "gbm")
