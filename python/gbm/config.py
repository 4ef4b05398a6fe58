"""Frozen configuration dataclasses, loadable from TOML; CLI flags override file values.

The one config loader of every command: :func:`load_toml` reads the file, :func:`build` merges
it with the flags given on the command line into the command's frozen dataclass (every command
reaches them through :func:`gbm.cli.common.config_from`). :func:`default_of` is what the
``--help`` texts show as defaults, read from the same dataclasses so that they cannot drift.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from gbm.errors import InputError

__all__ = ["build", "default_of", "load_toml"]

C = TypeVar("C")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict (InputError on a missing or malformed file)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--config: file not found: {p}")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"--config: {p} is not valid TOML ({str(e).splitlines()[0]})") from None


def build(cls: type[C], values: dict[str, Any], overrides: dict[str, Any] | None = None) -> C:
    """Instantiate the frozen dataclass ``cls`` from TOML ``values``, then CLI ``overrides``.

    Keys may use '-' or '_'; an override of ``None`` means 'not given'; lists become tuples;
    an unknown key raises :class:`InputError` naming it (``--config: unknown setting 'key'``).
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    merged: dict[str, Any] = {}
    for src, is_override in ((values, False), (overrides or {}, True)):
        for k, v in src.items():
            key = k.replace("-", "_")
            if key not in names:
                raise InputError(f"--config: unknown setting {k!r}")
            if v is None and is_override:
                continue
            merged[key] = tuple(v) if isinstance(v, list) else v
    try:
        return cls(**merged)
    except TypeError as e:
        raise InputError(f"--config: {e}") from None


def default_of(cls: type, name: str) -> str:
    """The default of field ``name`` of dataclass ``cls`` as shown in ``--help``.

    Numbers in ``%g`` form, sequences comma-separated, booleans as on/off, None as "none"
    (``%`` is doubled for argparse).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise KeyError(f"{cls.__name__} has no field {name!r}")
    f = fields[name]
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        raise KeyError(f"{cls.__name__}.{name} has no default")
    return format_default(value).replace("%", "%%")


def format_default(value: Any) -> str:
    """A config value as ``--help`` shows it (see :func:`default_of`)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(format_default(v) for v in value)
    return str(value)
