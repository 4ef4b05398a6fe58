"""``gbm bench``: the parser and the command for both studies (the jobs are
:func:`gbm.jobs.bench.run_bench`, the paper's experiments, and
:func:`gbm.jobs.bench.patient_study.run_patient_study`, the patient-fitting methods fd, pinn,
pinn-gbm and bilo side by side on synthetic patients)."""

from __future__ import annotations

import argparse
from typing import Any

from gbm.cli.common import (
    EPILOG,
    add_config,
    add_force,
    add_out,
    add_threads,
    config_from,
    default_of,
    float_list,
    name_list,
)
from gbm.jobs.bench import BenchConfig, run_bench
from gbm.jobs.bench.patient_study import CASES, METHODS, PatientStudyConfig, run_patient_study

#: The flags that set BenchConfig fields (``--study paper``).
PAPER_FIELDS = ("quick", "domains", "noise", "pinn_optimizer", "pinn_epochs",
                "extrapolate_epochs", "seed", "device", "threads", "methods")
#: The flags that set PatientStudyConfig fields (``--study patient``).
PATIENT_FIELDS = ("downsample", "cases", "pinn_budget", "threads", "device", "seed", "methods")
#: What ``--quick`` changes in the patient study.
PATIENT_QUICK = {"downsample": 3, "pinn_budget": 120.0, "cases": ("one", "two")}
#: ``--isolate``/``--no-isolate`` of the patient study (a PatientStudyConfig field).
PATIENT_FIELDS += ("isolate",)


def register(sub: Any) -> None:
    """Add ``bench`` to the ``gbm`` subparsers."""
    q, f = BenchConfig(quick=True).budgets(), BenchConfig().budgets()
    p = sub.add_parser(
        "bench", help="the paper's experiments, PINN vs FD-based inference, one report",
        description="Reproduce the paper's experiments (Sec. 3.1 disk, Sec. 3.2 patient slice) "
        "and compare PINN inference with FD-based inference on the same observations, at each "
        "noise level, on this machine; writes report.md (tables and figures comparable to the "
        "paper's), report.json and figures/.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small budgets: the whole report in <= 15 minutes on 2 CPU cores")
    p.add_argument("--domains", type=name_list, default=None,
                   help="comma-separated subset of disk,slice (default: "
                   f"{default_of(BenchConfig, 'domains')})")
    p.add_argument("--noise", type=float_list, default=None,
                   help="noise levels (std in units of u), comma-separated (default: "
                   f"{default_of(BenchConfig, 'noise')})")
    adam = BenchConfig(pinn_optimizer="adam").budgets()["pinn_epochs"]
    p.add_argument("--pinn-optimizer", choices=["lbfgs", "adam"], default=None,
                   help="lbfgs (gbm's recipe) or adam (the paper's: Adam 1e-3 halved half-way; "
                   f"full budget the paper's {adam:,} epochs)")
    p.add_argument("--pinn-epochs", type=int, default=None,
                   help=f"PINN epochs per run (L-BFGS iterations: quick {q['pinn_epochs']}, "
                   f"full {f['pinn_epochs']})")
    p.add_argument("--extrapolate-epochs", type=int, default=None,
                   help="epochs of the 300 -> 450 d extrapolation (quick "
                   f"{q['extrapolate_epochs']}, full {f['extrapolate_epochs']})")
    p.add_argument("--seed", type=int, default=None,
                   help=f"random seed (default: {default_of(BenchConfig, 'seed')})")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="PINN device, auto = cuda when available (default: "
                   f"{default_of(BenchConfig, 'device')})")
    p.add_argument("--methods", type=name_list, default=None, help="paper study: fd,pinn "
                   "(default) or fd: the FD parts alone, which need no torch (the pinn extra); "
                   f"patient study: a subset of {','.join(METHODS)}, all of them if omitted "
                   "(a method gbm fit refuses gets a row saying why)")
    add_threads(p, "CPU threads for torch (if omitted: all)")
    _patient_study_args(p)
    add_config(p, "TOML file with the settings of gbm.jobs.bench.BenchConfig")
    add_out(p, "bench", "output folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted study in --out: finished runs are kept, an "
                   "interrupted PINN run continues from its checkpoint (patient study: the "
                   "rows of finished fits with the same settings are kept)")
    add_force(p, "discard an existing output folder")
    p.set_defaults(func=command)


def _patient_study_args(p: argparse.ArgumentParser) -> None:
    """``--study`` and the flags of the patient study."""
    ps = p.add_argument_group(
        "patient study (--study patient: fd, pinn, pinn-gbm and bilo on the same synthetic "
        "atlas patients)")
    ps.add_argument("--study", choices=["paper", "patient"], default="paper",
                    help="paper: the paper's experiments (default); patient: the fitting "
                    "methods side by side on gbm synth patients (one/two scans, clean/noisy "
                    "labels, a patient made by another solver)")
    ps.add_argument("--downsample", type=int, default=None,
                    help="atlas block-averaging factor of the patients (default: "
                    f"{default_of(PatientStudyConfig, 'downsample')}; quick 3)")
    ps.add_argument("--cases", type=name_list, default=None,
                    help=f"comma-separated subset of {','.join(CASES)}")
    ps.add_argument("--pinn-budget", type=float, default=None,
                    help="training budget of each network fit (pinn, pinn-gbm, bilo), s "
                    f"(default: {default_of(PatientStudyConfig, 'pinn_budget')}; quick 120)")
    ps.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                    help="run each fit in a fresh process, so that its peak memory is its own "
                    "(default: on)")


def command(a: argparse.Namespace) -> int:
    """Run the chosen study into ``--out``."""
    if a.study == "patient":  # --config holds BenchConfig settings: not read here
        cfg_p = config_from(PatientStudyConfig, a, PATIENT_FIELDS,
                            values=PATIENT_QUICK if a.quick else {})
        run_patient_study(cfg_p, a.out, force=a.force, resume=a.resume)
        return 0
    cfg = config_from(BenchConfig, a, PAPER_FIELDS, extra={"quick": True if a.quick else None})
    run_bench(cfg, a.out, force=a.force, resume=a.resume)
    return 0
