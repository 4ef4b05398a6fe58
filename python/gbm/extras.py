"""Optional extras: which are installed, and one error when a command needs a missing one.

The core install (numpy, scipy, nibabel, nilearn, matplotlib, tqdm, cma, emcee) runs everything
FD-based. The extras (``pip install "gbm[NAME]"``) add:

==========  =====================  =============================================================
extra       packages               what it unlocks
==========  =====================  =============================================================
``pinn``    torch                  ``infer``, ``pinn-forward``, ``extrapolate``, ``fit --method
                                   pinn``, the PINN parts of ``bench``
``ray``     ray, pyarrow           ``cohort --engine ray`` (pyarrow also writes cohort.parquet)
``tissue``  antspyx (ants)         ``tissue``: tissue maps by atlas registration (and ``fit`` /
                                   ``cohort`` on BraTS case folders without maps)
==========  =====================  =============================================================

Bottom layer: imports nothing of gbm but :mod:`gbm.errors`; never imports an extra's package
(:func:`importlib.util.find_spec` only looks for it).
"""

from __future__ import annotations

import importlib.util

from gbm.errors import InputError

#: extra -> the top-level packages it installs (all must be importable).
EXTRAS: dict[str, tuple[str, ...]] = {
    "pinn": ("torch",),
    "ray": ("ray", "pyarrow"),
    "tissue": ("ants",),
}


class MissingExtraError(InputError):
    """A command needs an optional extra that is not installed (a user error: exit status 2)."""


def _present(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken or half-removed install counts as absent
        return False


def available(extra: str) -> bool:
    """Whether every package of ``extra`` can be imported (without importing it)."""
    return all(_present(p) for p in EXTRAS[extra])


def installed() -> dict[str, bool]:
    """extra -> installed, for results.json's provenance."""
    return {name: available(name) for name in EXTRAS}


def require(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming ``extra`` unless it is installed.

    Parameters
    ----------
    extra : one of :data:`EXTRAS`.
    what : what needs it, for the message (e.g. ``"gbm infer"``, ``"--method pinn"``).
    """
    if extra not in EXTRAS:
        raise KeyError(extra)
    if not available(extra):
        missing = ", ".join(p for p in EXTRAS[extra] if not _present(p))
        raise MissingExtraError(f"{what} needs the optional extra '{extra}' ({missing} not "
                                f"installed): pip install \"gbm[{extra}]\"")
