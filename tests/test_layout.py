"""The house plan holds: kb/'s imports point one way along the declared layers, and there is no cycle.

Every `import kb.x` / `from kb.x import y` in kb/ (lazy ones inside functions too) is read with `ast`. A module
may import its own package's modules and any package of a lower layer; never one of its own layer or above.
docs/ARCHITECTURE.md draws the same layers.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KB = ROOT / "kb"

# Bottom to top. A unit is a package (kb.index) or a top-level module (kb.chunk); "kb" is kb/__init__.py.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("kb.config", "kb.errors", "kb.pool"),
    ("kb.text", "kb.legal"),
    ("kb.ingest",),
    ("kb.chunk",),
    ("kb.cite", "kb.embed"),
    ("kb.catalog",),
    ("kb.index",),
    ("kb.search",),
    ("kb.milvus", "kb.quote"),
    ("kb.backends", "kb.research"),
    ("kb.present",),
    ("kb.bench", "kb.serve"),
    ("kb.train",),  # reads the benchmarks' data and judges through kb.bench.evaluate
    ("kb.commands", "kb.commands_research"),
    ("kb.cli", "kb"),
    ("kb.__main__",),
)
LAYER = {unit: n for n, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The kb modules a file imports, by absolute name (`from kb import config` is kb.config)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name == "kb" or a.name.startswith("kb.")}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and (node.module == "kb" or node.module.startswith("kb."))
        ):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in modules else node.module)
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in KB.rglob("*.py")}
    return {name: imports(path, set(files)) & set(files) for name, path in files.items()}


def unit_of(module: str) -> str:
    """The declared unit a module belongs to: the longest declared name that is it or a package above it."""
    if module == "kb":
        return module
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in LAYER:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS (and to docs/ARCHITECTURE.md)")


def backward(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Imports against the declared direction: into a unit of the same layer or a higher one."""
    bad = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            a, b = unit_of(source), unit_of(target)
            if a != b and LAYER[b] >= LAYER[a]:
                bad.append(f"{source} (layer {LAYER[a]}) imports {target} (layer {LAYER[b]})")
    return bad


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Import cycles between modules (each found once, from the first module on it)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    for module in graph():
        unit_of(module)


def test_imports_point_down_the_layers() -> None:
    assert backward(graph()) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_the_checks_catch_a_planted_cycle_and_a_backward_import() -> None:
    planted = {
        "kb.chunk": {"kb.cli"},
        "kb.cli": {"kb.chunk"},
        "kb.index.loader": {"kb.index.build"},
        "kb.index.build": {"kb.index.loader"},
    }
    assert backward(planted) == ["kb.chunk (layer 3) imports kb.cli (layer 14)"]
    assert cycles(planted) == [
        ["kb.chunk", "kb.cli", "kb.chunk"],
        ["kb.index.build", "kb.index.loader", "kb.index.build"],
    ]
    with pytest.raises(AssertionError, match="belongs to no layer"):
        backward({"kb.newthing": {"kb.config"}})


def test_subpackages_reexport_nothing() -> None:
    """A reader of kb.index must not import the builder by importing the package: __init__ files hold no code."""
    for init in KB.glob("*/__init__.py"):
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), init


def test_only_config_reads_the_environment() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in [*KB.rglob("*.py"), ROOT / "app.py"]
        if p.name != "config.py" and re.search(r"os\.environ|os\.getenv", p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_readme_lists_every_environment_variable() -> None:
    from kb import config

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [v.name for v in config.VARIABLES if f"`{v.name}`" not in readme] == []
