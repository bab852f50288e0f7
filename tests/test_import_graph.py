"""The layering of the model packages: ``backends`` < ``query_encoder`` < ``models`` < ``export``, with no circle.

``backends`` runs towers (ONNX Runtime or torch) and caches their exports;
``query_encoder`` is what a query needs (the protocol, and the torch-free
encoder on an export folder); ``models`` builds the dual encoder and hands
it out through one handle (whose query-encoder view is the model or the
export); ``export`` writes a whole model as ONNX files. An import circle between them (even through an
import inside a function, which only moves the circle to run time) makes each
piece impossible to load, test or change alone, so the graph is read from the
source with ``ast``: every ``import`` and ``from ... import`` anywhere in a
file, module level or not, resolved to the ``modalens`` modules it loads
(a module's parent packages included: importing one runs their ``__init__``).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable
from pathlib import Path

import pytest

import modalens

PACKAGE = Path(modalens.__file__).parent
#: The four pieces kept apart, each a package or a module; everything inside one counts as it.
UNITS = ("modalens.backends", "modalens.models", "modalens.export", "modalens.query_encoder")


def _modules(package: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted name → (file, is a package) for every module of the package."""
    found = {}
    for file in sorted(package.rglob("*.py")):
        parts = list(file.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (file, is_package)
    return found


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: Iterable[str]) -> set[str]:
    """The modules one import statement loads (with their parent packages)."""
    known = set(known)
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, *([node.module] if node.module else [])])
        else:
            target = node.module or ""
        # `from pkg import sub` loads pkg.sub when sub is a module; else it names something in pkg.
        names = [target, *(f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known)]
    out = set()
    for name in names:
        parts = name.split(".")
        out.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if p in known)
    return out


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module → the ``modalens`` modules it imports, anywhere in its source (functions and TYPE_CHECKING included)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for module, (file, is_package) in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _targets(module, is_package, node, modules)
        graph[module] = edges - {module}
    return graph


def _unit(module: str) -> str:
    return next((u for u in UNITS if module == u or module.startswith(f"{u}.")), module)


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with each of :data:`UNITS` drawn as one node."""
    out: dict[str, set[str]] = {}
    for module, edges in graph.items():
        out.setdefault(_unit(module), set()).update(_unit(t) for t in edges)
    for node, edges in out.items():
        edges.discard(node)
    return out


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str]:
    """One import chain from ``start`` to ``goal`` (for the failure message)."""
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in previous and nxt != start:
                previous[nxt] = node
                if nxt == goal:
                    chain = [goal]
                    while chain[-1] != start:
                        chain.append(previous[chain[-1]])
                    return chain[::-1]
                queue.append(nxt)
    return []


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return unit_graph(import_graph())


def test_the_graph_reader_sees_function_level_and_relative_imports(tmp_path) -> None:
    package = tmp_path / "modalens"
    (package / "backends").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("")
    (package / "backends" / "__init__.py").write_text("")
    (package / "backends" / "onnx.py").write_text("def f():\n    from ..models import create_model\n")
    assert "modalens.models" in import_graph(package)["modalens.backends.onnx"]


@pytest.mark.parametrize("a, b", list(itertools.combinations(UNITS, 2)))
def test_no_import_circle_between_backends_models_export_and_query_encoder(graph, a, b) -> None:
    there, back = _path(graph, a, b), _path(graph, b, a)
    assert not (there and back), f"import circle: {' → '.join(there)} and {' → '.join(back)}"


def test_backends_import_neither_models_export_nor_query_encoder(graph) -> None:
    for above in ("modalens.models", "modalens.export", "modalens.query_encoder"):
        chain = _path(graph, "modalens.backends", above)
        assert not chain, f"backends reaches {above}: {' → '.join(chain)}"
