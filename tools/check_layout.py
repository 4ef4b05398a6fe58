"""Check the package's architecture: layers import only downward, no import cycle, few
function-local imports (each with a reason), short functions.

    python tools/check_layout.py        # prints every violation; exit status 1 if any

Reads the source with :mod:`ast` (imports nothing of gbm), so it also runs without the compiled
core. ``tests/test_layout.py`` runs the same checks in the test suite.

Layers, bottom to top (a module may import its own layer's modules of its own package and any
lower layer; ``gbm.inference`` and ``gbm.pinn`` are siblings that never import each other):

    0  gbm._core, gbm.errors, gbm.io, gbm.config, gbm.provenance, gbm.extras
    1  gbm.model        the physics on a grid
    2  gbm.viz          figures: arrays in, PNG bytes out
    3  gbm.problem      what is observed and what is unknown
    4  gbm.inference    FD-based methods      |  gbm.pinn   network methods
    5  gbm.clinical     plans, identifiability, forecasts
    6  gbm.jobs         what a command does end to end
    7  gbm.cli          the command line
    -  gbm (the public API) and gbm.__main__ may import anything.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "python"

#: (prefix, rank); the longest matching prefix wins.
LAYERS: tuple[tuple[str, int], ...] = (
    ("gbm._core", 0), ("gbm.errors", 0), ("gbm.io", 0), ("gbm.config", 0),
    ("gbm.provenance", 0), ("gbm.extras", 0),
    ("gbm.model", 1), ("gbm.viz", 2), ("gbm.problem", 3),
    ("gbm.inference", 4), ("gbm.pinn", 4), ("gbm.clinical", 5), ("gbm.jobs", 6), ("gbm.cli", 7),
)
#: Same-rank packages that must not import each other.
SIBLINGS = (("gbm.inference", "gbm.pinn"),)
#: The most function-local imports of gbm modules the package may hold.
MAX_LOCAL_IMPORTS = 20
#: The longest a function may be, in lines (decorators and docstring included).
MAX_FUNCTION_LINES = 120


@dataclass(frozen=True)
class Import:
    """One import of a gbm module by a gbm module."""

    source: str  # importing module
    target: str  # imported module (the longest existing module name)
    line: int
    local: bool  # inside a function
    reason: str  # the comment on the line (or the line above), for local imports


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every gbm module: dotted name -> file."""
    out = {}
    for f in sorted((root / "gbm").rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    out["gbm._core"] = root / "gbm" / "_core.pyi"
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _comment(lines: list[str], lineno: int) -> str:
    line = lines[lineno - 1]
    if "#" in line:
        return line.split("#", 1)[1].strip()
    prev = lines[lineno - 2].strip() if lineno >= 2 else ""
    return prev[1:].strip() if prev.startswith("#") else ""


def imports(known: dict[str, Path]) -> Iterator[Import]:
    """Every import of a gbm module inside the package (module-level and function-local)."""
    for mod, path in known.items():
        if path.suffix != ".py":
            continue
        src = path.read_text()
        lines = src.splitlines()
        tree = ast.parse(src)
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        local_nodes = {id(n) for f in ast.walk(tree)
                       if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f)}
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] or [base]
            for n in names:
                if not n.startswith("gbm"):
                    continue
                target = _resolve(n, known)
                if target is None or target == mod:
                    continue
                local = id(node) in local_nodes
                yield Import(mod, target, node.lineno, local,
                             _comment(lines, node.lineno) if local else "")


def rank(mod: str) -> int | None:
    best = None
    for prefix, r in LAYERS:
        if (mod == prefix or mod.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[0])):
            best = (prefix, r)
    return None if best is None else best[1]


def _package(mod: str) -> str:
    for prefix, _ in LAYERS:
        if mod == prefix or mod.startswith(prefix + "."):
            return prefix
    return mod


def layer_violations(edges: list[Import]) -> list[str]:
    out = []
    for e in edges:
        rs, rt = rank(e.source), rank(e.target)
        if e.source in ("gbm", "gbm.__main__"):
            continue
        if rs is None or rt is None:
            out.append(f"{e.source}:{e.line} imports {e.target}: module outside every layer")
            continue
        if rt > rs:
            out.append(f"{e.source}:{e.line} imports {e.target} (layer {rt} above {rs})")
        elif any({_package(e.source), _package(e.target)} == set(pair) for pair in SIBLINGS):
            out.append(f"{e.source}:{e.line} imports {e.target} (sibling packages)")
    return out


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def local_import_problems(edges: list[Import]) -> list[str]:
    local = list({(e.source, e.line): e for e in edges if e.local}.values())
    out = [f"{e.source}:{e.line} function-local import of {e.target} without a reason comment"
           for e in local if not e.reason]
    if len(local) > MAX_LOCAL_IMPORTS:
        out.append(f"{len(local)} function-local imports of gbm modules (at most "
                   f"{MAX_LOCAL_IMPORTS}): " + ", ".join(f"{e.source}:{e.line}" for e in local))
    return out


def long_functions(known: dict[str, Path], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for mod, path in known.items():
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = (node.end_lineno or node.lineno) - first + 1
                if n > limit:
                    out.append(f"{mod}.{node.name} ({path.name}:{node.lineno}): {n} lines")
    return out


def main() -> int:
    known = modules()
    edges = list(imports(known))
    problems = (layer_violations(edges)
                + [" -> ".join(c) + " (import cycle)" for c in cycles(edges)]
                + local_import_problems(edges) + long_functions(known))
    for p in problems:
        print(p)
    print(f"{len(known)} modules, {len(edges)} imports of gbm modules, "
          f"{sum(e.local for e in edges)} function-local; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
