"""How the global stage (CMA-ES) converges with its solve budget, per time integrator: the best
point after ``--budgets`` solves for ``--seeds`` seeds, global stage only (issue 19; benches/
RESULTS.md "Speed", "The global stage needs its budget").

    python benches/bench_global_budget.py --patient runs/patient [--budgets 200,500] [--seeds 6]

The patient is a ``gbm synth`` folder (its truth.json gives the errors); one scan, fitted with
``--assume-days`` = the true age and gbm fit's defaults otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

from gbm.inference.segmentation_fit import fit_segmentations
from gbm.jobs.fit import steps
from gbm.jobs.fit.config import FitConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patient", required=True)
    ap.add_argument("--budgets", default="200,500")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--schemes", default="strang-rkl2,euler")
    a = ap.parse_args()
    truth = json.loads((Path(a.patient) / "truth.json").read_text())
    cfg = FitConfig(patient=a.patient, assume_days=truth["age_days"])
    inputs = steps.load_inputs(cfg)
    setup = steps.build_levels(cfg, inputs)
    print("| scheme | global solves | per seed: lambda mm (truth %.2f) / origin error mm / misfit |"
          % truth["lambda_mm"])
    print("|---|---|---|")
    for budget in (int(b) for b in a.budgets.split(",")):
        for scheme in a.schemes.split(","):
            cells = []
            for seed in range(a.seeds):
                s = replace(setup.settings, scheme=scheme, seed=seed, global_solves=budget,
                            local_solves=0)
                r = fit_segmentations(setup.levels, setup.unknowns, s)
                o = setup.levels[-1].geom.local_to_world(r.params.origin_local)
                err = math.dist(o, truth["origin_world_mm"])
                cells.append(f"{r.params.lam:.2f} / {err:.1f} / {r.misfit:.1e}")
            print(f"| {scheme} | {budget} | {'; '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
