"""The paper's stopping rule (Eq. 11) as pure functions of the parameter history.

Parameters are recorded every ``check_every`` epochs (1000 in the paper) at checks
i = 0, 1, 2, ... (check 0 = the initial guesses). With a window of W checks (10 in the paper),
the rule evaluated at check i >= W is::

    S_i = sum_{k=0}^{W-1} |D_{i-W+k+1} - D_{i-W+k}| / |D_{i-W+k}|
        + sum_{k=0}^{W-1} |rho_{i-W+k+1} - rho_{i-W+k}| / |rho_{i-W+k}|

i.e. Eq. 11 with N = epoch of check i - W. Training stops at the first check with S_i < tol: the
epoch reported is that of check i, the first moment the window is complete.

Checks taken while the parameters are frozen (the data-only "fit" phase of the L-BFGS recipe) can
end no window: there S_i = 0 says nothing about convergence. ``valid`` marks the checks that may.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["stopping_sums", "first_stop", "tolerance_table"]


def stopping_sums(dw: Sequence[float], rho: Sequence[float], window: int = 10) -> np.ndarray:
    """S_i for every check i (NaN where i < window). Shape (len(dw),)."""
    d = np.asarray(dw, dtype=np.float64)
    r = np.asarray(rho, dtype=np.float64)
    if d.shape != r.shape or d.ndim != 1:
        raise ValueError("dw and rho must be 1D sequences of the same length")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out = np.full(d.shape, np.nan)
    if len(d) <= window:
        return out
    rel = np.abs(np.diff(d)) / np.abs(d[:-1]) + np.abs(np.diff(r)) / np.abs(r[:-1])
    c = np.r_[0.0, np.cumsum(rel)]
    # S_i = sum of rel[i-W .. i-1]
    idx = np.arange(window, len(d))
    out[window:] = c[idx] - c[idx - window]
    return out


def first_stop(dw: Sequence[float], rho: Sequence[float], tol: float,
               window: int = 10, valid: Sequence[bool] | None = None) -> int | None:
    """Index of the first check (among the ``valid`` ones, default all) whose window sum is < tol,
    or None."""
    s = stopping_sums(dw, rho, window)
    ok = s < tol
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    hit = np.nonzero(ok)[0]
    return int(hit[0]) if hit.size else None


def tolerance_table(
    epochs: Sequence[int],
    seconds: Sequence[float],
    dw: Sequence[float],
    rho: Sequence[float],
    tolerances: Sequence[float],
    window: int = 10,
    truth: tuple[float, float] | None = None,
    valid: Sequence[bool] | None = None,
) -> list[dict]:
    """Table-4-like rows: for each tolerance, where Eq. 11 would have stopped.

    Returns
    -------
    list of dict with keys tol, epoch, minutes, dw, rho and (when ``truth`` is given) dw_err_pct,
    rho_err_pct; epoch etc. are None when the rule never fired.
    """
    rows = []
    for tol in tolerances:
        i = first_stop(dw, rho, tol, window, valid)
        row: dict = {"tol": float(tol), "epoch": None, "minutes": None, "dw": None, "rho": None}
        if i is not None:
            row.update(epoch=int(epochs[i]), minutes=float(seconds[i]) / 60.0,
                       dw=float(dw[i]), rho=float(rho[i]))
            if truth is not None:
                row["dw_err_pct"] = 100.0 * (float(dw[i]) - truth[0]) / truth[0]
                row["rho_err_pct"] = 100.0 * (float(rho[i]) - truth[1]) / truth[1]
        elif truth is not None:
            row["dw_err_pct"] = None
            row["rho_err_pct"] = None
        rows.append(row)
    return rows
