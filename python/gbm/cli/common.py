"""What the ``gbm`` subcommands share, declared once: the parser class, the float-list parser,
the output flags (``--config``, ``--out``, ``--force``, ``--threads``), the geometry, problem and
observation flag groups, the fit flags of ``fit``, ``cohort`` and ``infer``'s patient mode, and
:func:`config_from`, the one mapping of a TOML file and flags onto a config dataclass.

Imports no other module of :mod:`gbm.cli` (they all import it). Defaults shown in ``--help``
come from the config dataclasses (:func:`gbm.config.default_of`), so they cannot drift from the
values the commands use. Units: mm, days, Dw in mm^2/day, rho in 1/day.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from gbm.config import build, default_of, load_toml
from gbm.errors import InputError
from gbm.jobs.fit.run import FitConfig
from gbm.jobs.forward import ForwardConfig
from gbm.model.geometry import DEFAULT_SEED_WORLD_MM
from gbm.problem.density.config import ProblemConfig

__all__ = [
    "EPILOG", "FIT_FLAGS", "GEOMETRY_FIELDS", "PROBLEM_FIELDS", "SEGMENTATION_FIELDS",
    "VECTOR_OPTIONS", "FitFlag", "Parser", "add_config", "add_fit_flags", "add_force",
    "add_geometry_args", "add_observation_args", "add_out", "add_problem_args",
    "add_segmentation_args", "add_threads", "config_from", "day_list", "default_of",
    "float_list", "floats", "glue_negative_values", "items", "name_list", "parse_floats",
    "problem_overrides", "read_config", "seed_mm_text", "world_point",
]

C = TypeVar("C")


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


# ----------------------------------------------------------------------------- value parsers
def parse_floats(text: str, n: int | None = None, *, form: str | None = None,
                 skip_empty: bool = True) -> tuple[float, ...]:
    """The one float-list parser: ``"1, 2.5,3"`` -> ``(1.0, 2.5, 3.0)``.

    ``n``: the count required (None: any); ``skip_empty``: ignore empty items (``"1,,2"``);
    ``form``: the expected form named when the count is wrong (default ``"<n> comma-separated
    numbers"``, which is then also the message for a non-number). Raises
    :class:`argparse.ArgumentTypeError` (argparse prefixes the option's name).
    """
    counted = f"{n} comma-separated numbers" if n is not None else "comma-separated numbers"
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(",") if v or not skip_empty)
    except ValueError:
        what = "comma-separated numbers" if form else counted
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if n is not None and len(vals) != n:
        raise argparse.ArgumentTypeError(f"expected {form or counted}, got {text!r}")
    return vals


def floats(n: int) -> Callable[[str], tuple[float, ...]]:
    """An argparse type: exactly ``n`` comma-separated numbers -> tuple of float."""

    def parse(text: str) -> tuple[float, ...]:
        return parse_floats(text, n, skip_empty=False)

    return parse


def float_list(text: str) -> tuple[float, ...]:
    """An argparse type: ``"1,2.5,3"`` -> ``(1.0, 2.5, 3.0)`` (any length)."""
    return parse_floats(text)


def world_point(text: str) -> tuple[float, ...]:
    """An argparse type: a point ``x,y,z`` in world mm -> tuple of three floats."""
    return parse_floats(text, 3, form="x,y,z in world mm")


def items(values: list[str] | None) -> tuple[str, ...] | None:
    """``nargs="+"`` values split at commas (``["a,b", "c"]`` -> ``("a", "b", "c")``); None if
    not given."""
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out.extend(p for p in v.split(",") if p)
    return tuple(out)


def name_list(text: str) -> tuple[str, ...]:
    """An argparse type: ``"disk,slice"`` -> ``("disk", "slice")``."""
    return items([text]) or ()


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


# ----------------------------------------------------------------------------- config + flags
def read_config(a: argparse.Namespace) -> dict[str, Any]:
    """The settings of the ``--config`` TOML file (empty when not given)."""
    path = getattr(a, "config", None)
    return load_toml(path) if path else {}


def config_from(cls: type[C], a: argparse.Namespace, fields: Iterable[str] = (), *,
                extra: Mapping[str, Any] | None = None,
                values: Mapping[str, Any] | None = None) -> C:
    """The one mapping of a TOML file and flags onto the frozen config dataclass ``cls``.

    ``values`` are the settings under the flags (if None: the ``--config`` file, or none);
    ``fields`` name flags whose ``dest`` is a field of ``cls``; ``extra`` holds further
    overrides (renamed or converted flags). An override of None means 'flag not given'; see
    :func:`gbm.config.build` for the merge and its errors.
    """
    file_values = dict(values) if values is not None else read_config(a)
    over = {n: getattr(a, n) for n in fields} | dict(extra or {})
    return build(cls, file_values, over)


def add_config(p: Any, help: str = "TOML file with these settings (flags override it)") -> None:
    """``--config FILE``: settings under the flags (read by :func:`config_from`)."""
    p.add_argument("--config", help=help)


def add_out(p: Any, default: str | None, help: str, *, required: bool = False) -> None:
    """``--out``: the output folder (or file) of a command."""
    if required:
        p.add_argument("--out", required=True, help=help)
    else:
        p.add_argument("--out", default=default, help=help)


def add_force(p: Any, help: str | None = "overwrite an existing output folder") -> None:
    """``--force``: replace existing outputs (without it, an existing output is an error)."""
    p.add_argument("--force", action="store_true", help=help)


def add_threads(p: Any, help: str) -> None:
    """``--threads N``: CPU threads (None = the command's default)."""
    p.add_argument("--threads", type=int, default=None, help=help)


# ----------------------------------------------------------------------------- geometry/problem
#: The flags of :func:`add_geometry_args` (fields of :class:`gbm.jobs.forward.ForwardConfig`).
GEOMETRY_FIELDS = ("wm", "gm", "csf", "slice", "margin", "epsilon")


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


# ----------------------------------------------------------------------------- fit flags
@dataclass(frozen=True)
class FitFlag:
    """One flag of a :class:`gbm.jobs.fit.run.FitConfig` field (its ``dest`` is the field).

    ``help`` is ``gbm fit``'s text, ``brief`` the shorter one of ``gbm cohort`` and ``gbm
    infer`` (None: the same); ``{d}`` in either stands for the field's default.
    """

    option: str
    help: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    brief: str | None = None


_F, _I = {"type": float, "default": None}, {"type": int, "default": None}
_ON = {"action": "store_true", "default": None}

#: Every ``gbm fit`` flag that sets a FitConfig field, in ``--help`` order (``--threads`` is
#: :func:`add_threads`); ``gbm cohort`` and ``gbm infer``'s patient mode add subsets.
FIT_FLAGS: dict[str, FitFlag] = {
    "patient": FitFlag("--patient", "patient folder: PredictGBM layout (tissue_segmentation/, "
                       "tumor_segmentation/, optional scans.json, longitudinal/) or container "
                       "layout (<id>-{wm,gm,csf,tumorseg}.nii.gz)"),
    "scans": FitFlag("--scan", "a tumour segmentation and its day (repeat for several scans; "
                     "with --wm/--gm)",
                     {"action": "append", "default": None, "metavar": "SEG.nii.gz@DAY"}),
    "labels": FitFlag("--labels", "label convention: brats2021 (1 necrosis, 2 edema, 4 "
                      "enhancing), brats2023 (1, 2, 3 = enhancing), brats2024post (+ 4 cavity), "
                      "tum (1 enhancing, 3 edema, 4 necrosis) or necrosis=..,edema=..,enhancing="
                      "..[,cavity=..]; default: detected where unambiguous", {"default": None},
                      brief="label convention (default: detected)"),
    "tumour_tissue": FitFlag("--tumour-tissue", "treat the tumour region as white matter (maps "
                             "segmented from the patient's own scan); default: maps used as "
                             "they are (atlas-registered)", {"choices": ["wm"], "default": None}),
    "recurrence": FitFlag("--recurrence", "follow-up segmentation for plan coverage (same grid)",
                          {"default": None}),
    "tissue_preset": FitFlag("--tissue-preset", "a BraTS case folder without tissue maps: the "
                             "registration preset of the maps made on the way (see gbm tissue) "
                             "({d})", {"choices": ["affine", "quick", "default", "predictgbm"],
                                       "default": None}),
    "wm": FitFlag("--wm", "white-matter probability map (NIfTI)"),
    "gm": FitFlag("--gm", "gray-matter probability map (same grid)"),
    "csf": FitFlag("--csf", "optional CSF probability map (voxels where CSF dominates are outside "
                   "the brain)"),
    "slice": FitFlag("--slice", "axial slice index for a 2D fit (default: 3D)", _I,
                     brief="axial slice index: 2D fits"),
    "ratio": FitFlag("--ratio", "Dw/Dg, fixed ({d})", _F),
    "lambda_range": FitFlag("--lambda-range", "bounds of lambda, mm ({d})",
                            {"type": floats(2), "default": None}),
    "fit_thresholds": FitFlag("--fit-thresholds", "also fit theta_c, theta_e within their ranges "
                              "(default: fixed; with one scan they trade off against lambda and "
                              "rho*T)", _ON),
    "theta_c": FitFlag("--theta-c", "core threshold, u >= theta_c ({d})", _F),
    "theta_e": FitFlag("--theta-e", "whole-tumour threshold, u >= theta_e ({d})", _F),
    "theta_c_range": FitFlag("--theta-c-range", "bounds of theta_c ({d})",
                             {"type": floats(2), "default": None}),
    "theta_e_range": FitFlag("--theta-e-range", "bounds of theta_e ({d})",
                             {"type": floats(2), "default": None}),
    "assume_days": FitFlag("--assume-days", "one scan: assumed tumour age at the scan, days "
                           "(gives Dw, rho, forecasts)", _F,
                           brief="one scan: assumed tumour age at the scan, days"),
    "assume_speed": FitFlag("--assume-speed", "one scan: assumed front speed 2 sqrt(Dw rho), "
                            "mm/day (instead of --assume-days)", _F,
                            brief="one scan: assumed front speed, mm/day"),
    "start": FitFlag("--start", "the tumour's start: paper (the paper's Gaussian at the fitted "
                     "origin at age 0) or first-scan (two or more scans: solve from a density "
                     "built from the first scan's segmentation; robust to how the tumour began) "
                     "({d})", {"choices": ["paper", "first-scan"], "default": None}),
    "coarse_mm": FitFlag("--coarse-mm", "voxel size of the global stage's grid, mm; 0 = none "
                         "({d})", _F, brief="global stage grid, mm; 0 = none ({d})"),
    "crop_mm": FitFlag("--crop-mm", "margin of the solve box around the tumour, mm ({d})", _F),
    "global_solves": FitFlag("--global-solves", "CMA-ES solve budget ({d})", _I),
    "local_solves": FitFlag("--local-solves", "local least-squares solve budget ({d})", _I),
    "popsize": FitFlag("--popsize", "CMA-ES population (4 + 3 ln n)", _I),
    "scheme": FitFlag("--scheme", "time integrator of the solves: strang-rkl2 (second order: "
                      "Strang splitting, exact reaction, RKL2 diffusion) or euler (explicit, the "
                      "fit of gbm 0.1.0; step = --safety x the stability bound) ({d})",
                      {"choices": ["strang-rkl2", "euler"], "default": None}),
    "safety": FitFlag("--safety", "--scheme euler: time step / stability bound ({d})", _F),
    "phase_cache": FitFlag("--no-cache", "solve every phase field afresh instead of reusing "
                           "the ones in $GBM_CACHE_DIR or ~/.cache/gbm (keyed by a hash of the "
                           "brain mask; bit-identical)", {"action": "store_false",
                                                           "default": None}),
    "seed": FitFlag("--seed", "random seed ({d})", _I),
    "uncertainty": FitFlag("--uncertainty", "sample the posterior (emcee on the coarse grid): "
                           "90 %% intervals and P(u > level) maps", _ON,
                           brief="sample each posterior: 90 %% intervals in the table"),
    "steps": FitFlag("--steps", "MCMC steps per walker ({d})", _I),
    "burn": FitFlag("--burn", "burn-in steps ({d})", _I),
    "walkers": FitFlag("--walkers", "walkers (2 n + 2)", _I),
    "corr_mm": FitFlag("--corr-mm", "correlation length of label errors, mm ({d})", _F),
    "draws": FitFlag("--draws", "posterior samples solved for the probability maps ({d})", _I),
    "prob_levels": FitFlag("--prob-levels", "levels of the P(u > level) maps ({d})",
                           {"type": float_list, "default": None}),
    "forecast": FitFlag("--forecast", "days after the last scan to forecast, comma-separated",
                        {"type": float_list, "default": None}),
    "margin_mm": FitFlag("--margin-mm", "standard CTV margin around the core, mm ({d})", _F,
                         brief="standard CTV margin, mm ({d})"),
    "iso_levels": FitFlag("--iso-levels", "extra iso-density plans u >= level, comma-separated",
                          {"type": float_list, "default": None}),
    "method": FitFlag("--method", "inference method: fd (FD solver + CMA-ES + least squares), "
                      "pinn (physics-informed network, same observation model) or bilo "
                      "(bilevel local operator learning; budget and points from --pinn-*) ({d})",
                      {"choices": ["fd", "pinn", "bilo"], "default": None}),
    "pinn_budget": FitFlag("--pinn-budget", "PINN training time budget, seconds ({d})", _F),
    "pinn_iters": FitFlag("--pinn-iters", "PINN L-BFGS iteration cap ({d})", _I),
    "pinn_colloc": FitFlag("--pinn-colloc", "PINN collocation points per draw ({d})", _I),
    "pinn_data_points": FitFlag("--pinn-data-points", "segmentation voxels in the PINN's data "
                                "term ({d})", _I),
    "pinn_w_data": FitFlag("--pinn-w-data", "weight of the PINN's data term ({d})", _F),
    "pinn_compile": FitFlag("--pinn-compile", "torch.compile the PINN's loss ({d})",
                            {"action": argparse.BooleanOptionalAction, "default": None}),
    "device": FitFlag("--device", "PINN device: auto (CUDA when present), cpu, cuda; cuda on a "
                      "machine without it is an error (auto)", {"default": None}),
}

#: The segmentation flags (``gbm fit``, ``gbm infer``'s patient mode).
SEGMENTATION_FIELDS = ("patient", "scans", "labels", "tumour_tissue", "recurrence")


def add_fit_flags(g: Any, names: Sequence[str], *, brief: bool = False,
                  help: Mapping[str, str] | None = None) -> None:
    """Add the :data:`FIT_FLAGS` ``names`` to the argparse group ``g``: ``gbm fit``'s help texts,
    or with ``brief`` the shorter ones; ``help`` replaces the text of single flags."""
    for name in names:
        f = FIT_FLAGS[name]
        text = (help or {}).get(name) or (f.brief if brief and f.brief else f.help)
        if "{d}" in text:
            text = text.format(d=default_of(FitConfig, name))
        g.add_argument(f.option, dest=name, help=text, **f.kwargs)


def add_segmentation_args(g: Any) -> None:
    """--patient, --scan, --labels, --tumour-tissue, --recurrence on an argparse group (``gbm fit``
    and ``gbm infer``'s patient mode)."""
    add_fit_flags(g, SEGMENTATION_FIELDS)


# ----------------------------------------------------------------------------- negative values
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
