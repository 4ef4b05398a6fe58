"""``python -m gbm <command>``: thin wrappers over the Python API, one parser module per command.

Every command validates its input first; bad input ends with one line ``gbm: error: ...`` on stderr
and exit status 2 (no traceback, no partial output).  Units: mm, days, Dw in mm^2/day, rho in 1/day.

Modules (each adds its parser(s) with ``register(subparsers)`` and holds its command function):

* :mod:`gbm.cli.common`: what the commands share, declared once: the one-line-error parser, the
  float-list parser, ``--config``/``--out``/``--force``/``--threads``, the geometry, problem,
  observation and fit flag groups, and :func:`~gbm.cli.common.config_from` (TOML + flags ->
  config dataclass)
* :mod:`gbm.cli.forward`: ``forward``, the FD simulation (:mod:`gbm.jobs.forward`)
* :mod:`gbm.cli.phase_field`: ``phase-field``, the brain mask's phase field
* :mod:`gbm.cli.fit`: ``fit``, a patient's segmentations -> calibrated model, forecast, plans
  (:mod:`gbm.jobs.fit`)
* :mod:`gbm.cli.synth`: ``synth``, synthetic patients with known truth (:mod:`gbm.jobs.synth`)
* :mod:`gbm.cli.fit_fd`: ``fit-fd``, FD least squares on density observations
  (:mod:`gbm.inference.density_fit`)
* :mod:`gbm.cli.bench`: ``bench``, the paper's experiments and the patient study
  (:mod:`gbm.jobs.bench`)
* :mod:`gbm.cli.pinn`: ``infer``, ``pinn-forward``, ``extrapolate``, the network methods
  (:mod:`gbm.pinn`; torch is imported only when one of them runs)
* :mod:`gbm.cli.cohort`: ``cohort``, one ``fit`` per patient, local or on Ray
  (:mod:`gbm.jobs.cohort`)
* :mod:`gbm.cli.tissue`: ``tissue``, tissue maps by atlas registration (:mod:`gbm.jobs.tissue`;
  the optional extra gbm[tissue])

This module holds only :func:`main`, :func:`build_parser`, :func:`entry` and :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gbm.cli import bench, cohort, fit, fit_fd, forward, phase_field, pinn, synth, tissue
from gbm.cli.common import EPILOG, Parser, glue_negative_values
from gbm.errors import InputError
from gbm.provenance import __version__

__all__ = ["COMMANDS", "build_parser", "entry", "main"]

#: The subcommands, in the order ``--help`` lists them: one ``register(subparsers)`` each.
COMMANDS: tuple[Callable[[Any], None], ...] = (
    forward.register, phase_field.register, fit.register, synth.register, fit_fd.register,
    bench.register, pinn.register, cohort.register, tissue.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``gbm`` argument parser."""
    p = Parser(prog="python -m gbm", description="Glioblastoma growth model (diffuse-domain "
               "Fisher-Kolmogorov) with an FD solver and PINN parameter inference.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"gbm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for register in COMMANDS:
        register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    argv = glue_negative_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed, one line)
        return int(e.code or 0)
    try:
        return int(args.func(args) or 0)
    except (InputError, ValueError) as e:
        print(f"gbm: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2
    except OSError as e:
        print(f"gbm: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gbm: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
