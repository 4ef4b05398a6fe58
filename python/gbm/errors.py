"""The one exception type for bad user input.

Every check of user-supplied data raises :class:`InputError` (a ``ValueError``) with a single-line
message that names the input and what is wrong.  The CLI turns it into ``gbm: error: <message>`` on
stderr and exit status 2; Python callers can catch ``ValueError``.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: missing/unreadable file, wrong shape, NaN, empty mask, bad parameter, ..."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)


def positive(name: str, value: float) -> float:
    """Return ``value`` as float if it is finite and > 0, else raise :class:`InputError`."""
    v = float(value)
    if not (v == v and abs(v) != float("inf") and v > 0):
        raise InputError(f"{name} must be a finite positive number, got {value}")
    return v
