"""Flag groups and parsing helpers shared by the ``gbm`` subcommands (:mod:`gbm.cli`,
:mod:`gbm.pinn.commands`).

Imports neither :mod:`gbm.cli` nor :mod:`gbm.pinn`: both import it. Defaults shown in ``--help``
come from the config dataclasses (:func:`gbm.config.default_of`), so they cannot drift from the
values the commands use. Units: mm, days, Dw in mm^2/day, rho in 1/day.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from .config import default_of
from .errors import InputError
from .geometry import DEFAULT_SEED_WORLD_MM
from .problem.config import ProblemConfig
from .runs import ForwardConfig

__all__ = [
    "EPILOG", "PROBLEM_FIELDS", "VECTOR_OPTIONS", "Parser", "add_geometry_args",
    "add_observation_args", "add_problem_args", "day_list", "default_of", "float_list", "floats",
    "glue_negative_values", "items", "problem_overrides", "seed_mm_text",
]


def _epilog() -> str:
    d = {k: default_of(ForwardConfig, k) for k in ("dw", "rho", "ratio")}
    return ("units: lengths in mm (world/MNI coordinates of the input image), time in days,\n"
            "Dw (white-matter diffusivity) in mm^2/day, rho (proliferation rate) in 1/day; "
            "gray-matter\ndiffusivity Dg = Dw/ratio. Defaults are the paper's (Table 1): "
            f"Dw {d['dw']}, rho {d['rho']}, ratio {d['ratio']}.")


EPILOG = _epilog()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gbm: error: {message} (see --help)\n")


def floats(n: int) -> Callable[[str], tuple[float, ...]]:
    """An argparse type: exactly ``n`` comma-separated numbers -> tuple of float."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            vals = tuple(float(v) for v in text.replace(" ", "").split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
        if len(vals) != n:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
        return vals

    return parse


def float_list(text: str) -> tuple[float, ...]:
    """``"1,2.5,3"`` -> ``(1.0, 2.5, 3.0)`` (any length)."""
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def items(values: list[str] | None) -> tuple[str, ...] | None:
    """``nargs="+"`` values split at commas (``["a,b", "c"]`` -> ``("a", "b", "c")``); None if
    not given."""
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out.extend(p for p in v.split(",") if p)
    return tuple(out)


def day_list(values: list[str] | None, name: str = "--days") -> tuple[float, ...] | None:
    """Days given as ``nargs="+"`` values and/or comma-separated (InputError naming ``name``)."""
    got = items(values)
    if got is None:
        return None
    try:
        return tuple(float(v) for v in got)
    except ValueError:
        raise InputError(f"{name}: expected numbers, got {', '.join(got)}") from None


def seed_mm_text() -> str:
    """The default seed in world mm as ``x,y,z``."""
    return ",".join(f"{v:g}" for v in DEFAULT_SEED_WORLD_MM)


def add_geometry_args(p: argparse.ArgumentParser, cls: type) -> None:
    """--wm/--gm/--csf/--slice/--margin/--epsilon (``forward``, ``phase-field``); the defaults
    shown are those of the dataclass ``cls`` (fields ``margin``, ``epsilon``)."""
    g = p.add_argument_group("geometry (default: embedded ICBM152 2009a atlas, 1 mm)")
    g.add_argument("--wm", help="white-matter map (NIfTI, fractions 0..1 or uint8 0..255)")
    g.add_argument("--gm", help="gray-matter map (same grid as --wm)")
    g.add_argument("--csf", help="optional CSF map: voxels where CSF dominates are excluded")
    g.add_argument("--slice", type=int, default=None,
                   help="axial slice index (RAS z voxel index) for a 2D run; omit for 3D")
    g.add_argument("--margin", type=int, default=None,
                   help=f"voxels around the brain box (default: {default_of(cls, 'margin')})")
    g.add_argument("--epsilon", type=float, default=None,
                   help="Cahn-Hilliard interface parameter in mm (default: "
                   f"{default_of(cls, 'epsilon')})")


def add_problem_args(p: argparse.ArgumentParser, cls: type = ProblemConfig) -> None:
    """The inference problem's flags (``infer``, ``pinn-forward``, ``fit-fd``); the defaults
    shown are those of the dataclass ``cls`` (a :class:`ProblemConfig` or a config with the same
    problem fields and ``resolved_horizon``)."""
    g = p.add_argument_group("problem")
    g.add_argument("--problem", choices=["atlas", "disk"], default=None,
                   help="atlas (the embedded ICBM152 atlas, or --wm/--gm) or the paper's disk "
                   f"(default: {default_of(cls, 'problem')})")
    g.add_argument("--wm", help="white-matter map (NIfTI)")
    g.add_argument("--gm", help="gray-matter map (NIfTI, same grid)")
    g.add_argument("--csf", help="optional CSF map")
    g.add_argument("--slice", type=int, default=None, help="axial slice index (2D)")
    g.add_argument("--3d", dest="three_d", action="store_true", default=None,
                   help="3D problem instead of the axial slice through the seed")
    g.add_argument("--seed-mm", type=float_list, default=None,
                   help="tumour origin x,y,z in world mm (if omitted: right frontal white matter, "
                   f"{seed_mm_text()})")
    g.add_argument("--horizon", type=float, default=None,
                   help=f"final time T in days (if omitted: atlas {cls().resolved_horizon():g}, "
                   f"disk {cls(problem='disk').resolved_horizon():g})")
    g.add_argument("--ratio", type=float, default=None,
                   help=f"Dw/Dg (default: {default_of(cls, 'ratio')})")


def add_observation_args(p: argparse.ArgumentParser, cls: type = ProblemConfig) -> None:
    """Observation flags of the inference commands (``infer``, ``fit-fd``); the defaults shown
    are those of the dataclass ``cls`` (a :class:`ProblemConfig`)."""
    o = p.add_argument_group("observations (default: synthetic, from the FD solver)")
    o.add_argument("--observations", nargs="+", default=None,
                   help="NIfTI density maps (one per --days entry) or one CSV x,y,z,t,u "
                   "(world mm, days)")
    o.add_argument("--days", nargs="+", default=None, help="day of each NIfTI map")
    o.add_argument("--noise", type=float, default=None,
                   help="std of Gaussian noise on synthetic observations, in units of u, "
                   f"0.01 = 1 %% (default: {default_of(cls, 'noise')})")
    o.add_argument("--n-obs", type=int, default=None,
                   help=f"number of observations (if omitted: atlas {cls().resolved_n_obs():,}, "
                   f"disk {cls(problem='disk').resolved_n_obs():,})")
    o.add_argument("--dw-true", type=float, default=None,
                   help=f"Dw of synthetic data (default: {default_of(cls, 'dw_true')})")
    o.add_argument("--rho-true", type=float, default=None,
                   help=f"rho of synthetic data (default: {default_of(cls, 'rho_true')})")
    o.add_argument("--seed", type=int, default=None,
                   help="random seed: observation sampling, noise (and the network) (default: "
                   f"{default_of(cls, 'seed')})")


PROBLEM_FIELDS = ["problem", "wm", "gm", "csf", "slice", "three_d", "seed_mm", "horizon", "ratio",
                  "noise", "n_obs", "dw_true", "rho_true", "seed", "region_radius"]


def problem_overrides(a: argparse.Namespace) -> dict[str, Any]:
    """The problem/observation flags given on the command line (None = not given)."""
    over = {n: getattr(a, n, None) for n in PROBLEM_FIELDS}
    over["observations"] = items(getattr(a, "observations", None))
    over["days"] = day_list(getattr(a, "days", None))
    return over


#: Options whose value may start with '-' (negative world coordinates).
VECTOR_OPTIONS = frozenset({"--seed-mm", "--seed0-mm", "--origin-mm"})


def glue_negative_values(argv: list[str], options: frozenset[str] = VECTOR_OPTIONS) -> list[str]:
    """Let ``--seed-mm -29,-8,33`` work: argparse would take ``-29,...`` for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = str(argv[i])
        if a in options and i + 1 < len(argv) and str(argv[i + 1]).startswith("-"):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
        else:
            out.append(a)
            i += 1
    return out
