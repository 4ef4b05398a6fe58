"""Frozen configuration dataclasses, loadable from TOML; CLI flags override file values."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError

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


def build(cls: type[C], file_values: dict[str, Any], overrides: dict[str, Any]) -> C:
    """Instantiate ``cls`` from TOML values, then CLI overrides (``None`` means 'not given')."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(file_values) - names)
    if unknown:
        raise InputError(f"--config: unknown key(s) {', '.join(unknown)}")
    values = dict(file_values)
    values.update({k: v for k, v in overrides.items() if v is not None and k in names})
    for k, v in list(values.items()):
        if isinstance(v, list):
            values[k] = tuple(v)
    return cls(**values)
