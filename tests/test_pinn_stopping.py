"""The paper's stopping rule (Eq. 11) on synthetic parameter sequences."""

from __future__ import annotations

import numpy as np
import pytest
from gbm.pinn.stopping import first_stop, stopping_sums, tolerance_table


def test_constant_parameters_stop_at_first_full_window() -> None:
    dw = [0.12] * 30
    rho = [0.024] * 30
    assert first_stop(dw, rho, tol=1e-9, window=10) == 10
    assert first_stop(dw, rho, tol=1e-9, window=3) == 3
    s = stopping_sums(dw, rho, 10)
    assert np.all(np.isnan(s[:10])) and np.all(s[10:] == 0.0)


def test_short_history_never_stops() -> None:
    assert first_stop([0.1] * 10, [0.01] * 10, tol=1.0, window=10) is None


def test_oscillating_parameters_do_not_stop() -> None:
    n = 200
    dw = 0.13 * (1 + 0.05 * (-1) ** np.arange(n))  # +-5 % every check
    rho = np.full(n, 0.025)
    s = stopping_sums(dw, rho, 10)
    # each step changes Dw by ~10 % relative: the window sum is ~1.0
    assert np.nanmin(s) > 0.9
    assert first_stop(dw, rho, tol=0.2, window=10) is None


def test_exact_window_sum() -> None:
    # Dw doubles once inside the window, rho decreases by 1 % per check
    dw = [1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    rho = [0.99**k for k in range(6)]
    s = stopping_sums(dw, rho, window=4)
    # |2 - 1|/1 + 4 * 0.01
    assert s[4] == pytest.approx(1.0 + 4 * 0.01, rel=1e-12)
    s3 = stopping_sums(dw, rho, window=3)
    assert s3[3] == pytest.approx(1.0 + 3 * 0.01, rel=1e-12)
    assert s3[4] == pytest.approx(1.0 + 3 * 0.01, rel=1e-12)
    assert s3[5] == pytest.approx(3 * 0.01, rel=1e-12)
    assert first_stop(dw, rho, tol=0.05, window=3) == 5


def test_converging_sequence_stops_when_changes_are_small() -> None:
    k = np.arange(100)
    dw = 0.13 * (1 - 0.5 * np.exp(-k / 10))
    rho = 0.025 * (1 - 0.5 * np.exp(-k / 5))
    i = first_stop(dw, rho, tol=0.05, window=10)
    assert i is not None
    s = stopping_sums(dw, rho, 10)
    assert s[i] < 0.05 <= s[i - 1]


def test_tolerance_table_rows() -> None:
    k = np.arange(60)
    dw = 0.13 * (1 - 0.5 * np.exp(-k / 10))
    rho = 0.025 * (1 - 0.5 * np.exp(-k / 5))
    epochs = (k * 1000).tolist()
    seconds = (k * 30.0).tolist()
    rows = tolerance_table(epochs, seconds, dw, rho, [0.2, 0.05, 1e-9], 10, truth=(0.13, 0.025))
    assert [r["tol"] for r in rows] == [0.2, 0.05, 1e-9]
    i = first_stop(dw, rho, 0.2, 10)
    assert rows[0]["epoch"] == i * 1000 and rows[0]["minutes"] == pytest.approx(i * 0.5)
    assert rows[0]["dw_err_pct"] == pytest.approx(100 * (dw[i] / 0.13 - 1))
    assert rows[1]["epoch"] > rows[0]["epoch"]
    assert rows[2]["epoch"] is None and rows[2]["dw_err_pct"] is None


def test_frozen_phase_checks_end_no_window() -> None:
    # parameters frozen for 12 checks (the data-only "fit" phase), then moving, then converged
    dw = [0.1] * 12 + [0.12, 0.125, 0.128] + [0.13] * 12
    rho = [0.01] * 12 + [0.02, 0.024, 0.025] + [0.025] * 12
    valid = [False] * 12 + [True] * 15
    assert first_stop(dw, rho, tol=0.05, window=10) == 10  # S = 0 inside the frozen phase
    i = first_stop(dw, rho, tol=0.05, window=10, valid=valid)
    assert i == 14 + 10  # the first window after the last change
    rows = tolerance_table(list(range(27)), [60.0 * k for k in range(27)], dw, rho, [0.05], 10,
                           (0.13, 0.025), valid)
    assert rows[0]["epoch"] == 24 and rows[0]["dw_err_pct"] == pytest.approx(0.0)
