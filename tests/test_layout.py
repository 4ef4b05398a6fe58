"""The package's architecture, kept by ``tools/check_layout.py`` (run here on the source tree):
layers import only downward, no import cycle counting imports inside functions, at most
``MAX_LOCAL_IMPORTS`` function-local imports of gbm modules each with a reason, no function over
``MAX_FUNCTION_LINES`` lines; and the checker itself catches each kind of violation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools" / "check_layout.py"


def _checker():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("check_layout", TOOLS)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_layout"] = mod
    spec.loader.exec_module(mod)
    return mod


cl = _checker()


@pytest.fixture(scope="module")
def edges() -> list:  # type: ignore[type-arg]
    return list(cl.imports(cl.modules()))


def test_every_module_is_in_a_layer() -> None:
    outside = [m for m in cl.modules() if m not in ("gbm", "gbm.__main__") and cl.rank(m) is None]
    assert not outside


def test_layers_import_only_downward(edges: list) -> None:  # type: ignore[type-arg]
    assert cl.layer_violations(edges) == []


def test_no_import_cycle(edges: list) -> None:  # type: ignore[type-arg]
    assert cl.cycles(edges) == []


def test_function_local_imports_are_few_and_explained(edges: list) -> None:  # type: ignore[type-arg]
    assert cl.local_import_problems(edges) == []


def test_functions_are_short() -> None:
    assert cl.long_functions(cl.modules()) == []


# ----------------------------------------------------------------------------- the checker
def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        p = tmp_path / "gbm" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return cl.modules(tmp_path)


def test_checker_finds_upward_sibling_and_cyclic_imports(tmp_path: Path) -> None:
    known = _package(tmp_path, {
        "__init__.py": "",
        "model/__init__.py": "",
        "model/geometry.py": "from gbm.jobs import forward\n",            # upward
        "jobs/__init__.py": "",
        "jobs/forward.py": "from gbm.model import geometry\n",            # cycle with the above
        "pinn/__init__.py": "",
        "pinn/patient.py": "def f():\n    from gbm.inference import fit\n",  # sibling, no reason
        "inference/__init__.py": "",
        "inference/fit.py": "def g():\n    import gbm.model.geometry  # torch: test\n",
    })
    e = list(cl.imports(known))
    v = cl.layer_violations(e)
    assert any("gbm.model.geometry:1 imports gbm.jobs.forward (layer 6 above 1)" in x for x in v)
    assert any("gbm.pinn.patient:2 imports gbm.inference.fit (sibling packages)" in x for x in v)
    assert cl.cycles(e) == [["gbm.jobs.forward", "gbm.model.geometry"]]
    problems = cl.local_import_problems(e)
    assert problems == ["gbm.pinn.patient:2 function-local import of gbm.inference.fit without "
                        "a reason comment"]


def test_checker_counts_function_lines(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(cl.MAX_FUNCTION_LINES))
    known = _package(tmp_path, {"__init__.py": "", "io.py": "def long():\n" + body +
                                "def short():\n    return 1\n"})
    assert cl.long_functions(known) == [
        f"gbm.io.long (io.py:1): {cl.MAX_FUNCTION_LINES + 1} lines"]
