"""Provenance for result files: gbm's version, its dependencies', the optional extras present, the
machine, peak memory.

Bottom layer: imports only :mod:`gbm.extras` (which never imports an extra's package).
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from gbm import extras

try:
    #: gbm's version, from the installed package's metadata (pyproject.toml's ``version``).
    __version__ = metadata.version("gbm")
except metadata.PackageNotFoundError:  # pragma: no cover - source tree without an install
    __version__ = "0+unknown"


def versions() -> dict[str, Any]:
    """Versions of gbm and its main dependencies, which optional extras are installed
    (``extras``: name -> bool, :func:`gbm.extras.installed`), and the machine (CPU model, cores),
    for result files."""
    import nibabel
    import numpy
    import scipy

    v = {"gbm": __version__, "numpy": numpy.__version__, "nibabel": nibabel.__version__,
         "scipy": scipy.__version__, "extras": extras.installed(),
         "python": platform.python_version(), "machine": platform.machine(),
         "processor": platform.processor() or platform.machine(), "cores": os.cpu_count() or 1}
    try:
        v["cpu"] = next(line.split(":", 1)[1].strip() for line in
                        Path("/proc/cpuinfo").read_text().splitlines()
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return v


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB (``ru_maxrss``: KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
