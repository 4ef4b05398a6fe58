"""The seed paper's figures, quoted (NVIDIA Tesla V100; never measured here).

Tables 2 and 4: tolerance -> (epoch, minutes, Dw % error, rho % error). Sec. 4: the FD cost model
(6,000 forward solves for a calibration, ref. [3]; 60-180 s per 3D solve, 15-30 s estimated per 2D
solve) and the extrapolation of Sec. 3.1.2 (mean-squared difference 6.62e-5 after 8 minutes).
"""

from __future__ import annotations

#: Per domain: the paper's section, table, stopping tolerances and table rows.
PAPER: dict[str, dict] = {
    "disk": {
        "section": "3.1",
        "table": 2,
        "horizon": 300.0,
        "n_obs": 20_000,
        "total_minutes": 250,
        "final_error_pct": (5.0, 1.0),
        "rows": {
            0.20: (82_000, 26, 46.69, 8.74),
            0.15: (234_000, 75, 16.00, 2.36),
            0.10: (428_000, 136, 9.97, 0.74),
            0.05: (512_000, 163, 6.78, 1.06),
            0.04: (700_000, 223, 5.54, 0.81),
        },
    },
    "slice": {
        "section": "3.2",
        "table": 4,
        "horizon": 150.0,
        "n_obs": 26_830,
        "total_minutes": 450,
        "final_error_pct": (3.0, 1.0),
        "rows": {
            0.20: (137_000, 76, 12.90, 3.87),
            0.15: (407_000, 224, 4.15, 1.74),
            0.10: (490_000, 271, 3.54, 1.28),
            0.07: (663_000, 365, 3.53, 0.92),
        },
    },
}

#: Sec. 4: forward solves a calibration needs (ref. [3]) and seconds per FD solve (quoted / the
#: paper's own 2D estimate).
PAPER_FD = {"solves": 6000, "seconds_3d": (60.0, 180.0), "seconds_2d": (15.0, 30.0)}

#: Sec. 3.1.2: extrapolation 300 -> 450 d.
PAPER_EXTRAPOLATION = {"mse": 6.62e-5, "minutes": 8.0}

__all__ = ["PAPER", "PAPER_FD", "PAPER_EXTRAPOLATION"]
