"""Why the PINN's lambda is low on segmentations: the PINN patient fit started at the FD fit's
estimate (near the truth), its unknowns trained jointly, held there, or held then released.

The 2 mm synthetic atlas patient (`gbm synth --downsample 2`: origin (28, 18, 27) mm, Dw 0.13,
rho 0.025, age 400 d, so lambda 2.28 mm, rho*T 10) is fitted by the FD-based fit; the PINN then
starts from that estimate (the FD fit's search coordinates replace the start of
`start_and_box` as `gbm.jobs.fit.steps` calls it) instead of its own start (core centroid, lambda
2 mm), with three schedules after the warm start (`PinnFitSettings.hold_iters`):

* ``joint``: the recipe (network and unknowns trained together from the start);
* ``held``: the unknowns held at the FD estimate for the whole budget (network alone);
* ``hold-then-joint``: held for ``--hold`` iterations, then released.

Usage::

    python benches/pinn_patient_diagnostic.py [--out /tmp/pinn_diag] [--budget 240]
        [--hold 1500] [--threads 2]

Prints, per schedule, lambda, rho*T, the origin error, the network's Dice and the last logged
residual, and the FD model's Dice at the estimate. One run per schedule, one seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import gbm.jobs.fit.steps as gf
from gbm.cli import main as gbm_main
from gbm.jobs.fit.config import FitConfig

TRUE_ORIGIN = (28.0, 18.0, 27.0)


def _with_hold(pinn_settings, hold: int):
    """FitConfig.pinn_settings with ``hold_iters`` set."""
    return lambda self: replace(pinn_settings(self), hold_iters=hold)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/pinn_diag")
    p.add_argument("--budget", type=float, default=240.0, help="PINN budget per run, s")
    p.add_argument("--hold", type=int, default=1500, help="held iterations before release")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    out = Path(args.out)
    patient, fd = out / "patient", out / "fd"
    if not patient.is_dir():
        assert gbm_main(["synth", "--downsample", "2", "--out", str(patient)]) == 0
    if not (fd / "results.json").is_file():
        assert gbm_main(["fit", "--patient", str(patient), "--assume-days", "400", "--out",
                         str(fd), "--force"]) == 0
    fd_res = json.loads((fd / "results.json").read_text())
    x_fd = np.asarray(fd_res["search"]["x"], dtype=np.float64)
    start_and_box, pinn_settings = gf.start_and_box, FitConfig.pinn_settings

    def from_fd(*a, **k):
        u = start_and_box(*a, **k)
        assert list(u.names) == fd_res["search"]["names"]
        u.x0 = np.clip(x_fd, u.lo, u.hi)
        return u

    gf.start_and_box = from_fd
    rows = []
    try:
        for name, hold in (("joint", 0), ("held", 10**9), ("hold-then-joint", args.hold)):
            FitConfig.pinn_settings = _with_hold(pinn_settings, hold)
            dest = out / name
            assert gbm_main(["fit", "--patient", str(patient), "--method", "pinn", "--threads",
                             str(args.threads), "--assume-days", "400", "--pinn-budget",
                             f"{args.budget:g}", "--out", str(dest), "--force"]) == 0
            res = json.loads((dest / "results.json").read_text())
            log = list(csv.DictReader((dest / "log.csv").open()))
            est, scan = res["estimates"], res["scans"][0]
            rows.append((name, est["lambda_mm"], est["rho_T"],
                         math.dist(est["origin_world_mm"], TRUE_ORIGIN),
                         scan["pinn_dice_core"], scan["pinn_dice_whole"],
                         float(log[-1]["loss_res"]), scan["dice_core"], scan["dice_whole"],
                         res["pinn"]["iterations"]))
    finally:
        gf.start_and_box, FitConfig.pinn_settings = start_and_box, pinn_settings
    e = fd_res["estimates"]
    print(f"FD fit: lambda {e['lambda_mm']:.3f} mm, rho*T {e['rho_T']:.3f}, origin error "
          f"{math.dist(e['origin_world_mm'], TRUE_ORIGIN):.2f} mm (truth: lambda 2.28, rho*T 10)")
    print("| schedule | lambda mm | rho*T | origin err mm | network Dice core/whole | "
          "last residual | FD model Dice core/whole | iterations |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.1f} | {r[4]:.3f}/{r[5]:.3f} | "
              f"{r[6]:.1e} | {r[7]:.3f}/{r[8]:.3f} | {r[9]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
