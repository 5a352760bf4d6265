"""The package's imports go one way: no module imports one that is built on it.

The graph is read from the source with ``ast``, so an import inside a function (a "lazy" import,
which a runtime check never sees until the function runs) counts like any other. Importing
``a.b.c`` also runs the packages ``a.b`` and ``a``, so an import counts as an edge to each
enclosing package too (except the importer's own packages, which it runs anyway, and the root
``msgen``, which imports nothing).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import msgen

PACKAGE = Path(msgen.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _known(name: str) -> str | None:
    """The longest prefix of ``name`` that is a module of the package (names of objects drop off)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str, path: Path) -> set[str]:
    """The package modules ``module`` imports anywhere in its source, enclosing packages included."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names = [f"{origin}.{alias.name}" for alias in node.names] + [origin]
        else:
            continue
        for name in names:
            target = _known(name) if name.split(".")[0] == "msgen" else None
            while target and target != "msgen":
                found.add(target)
                target = target.rpartition(".")[0]
    own_packages = {module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)}
    return found - own_packages - {module}


GRAPH = {module: _imported(module, path) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _floor(module: str) -> str:
    """The floor a module belongs to: a top-level module, or a subpackage with all it holds."""
    return ".".join(module.split(".")[:2])


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    # What the other tests rest on: imports inside functions count, and a known edge is found.
    assert "msgen.evaluation" in GRAPH["msgen.training.loop"]
    assert "msgen.checkpoint" in GRAPH["msgen.export"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    lazy = ast.parse("def f():\n    from msgen.checkpoint import load_checkpoint\n")
    assert any(isinstance(node, ast.ImportFrom) for node in ast.walk(lazy))


def test_no_module_imports_one_built_on_it() -> None:
    assert _cycles(GRAPH) == [], "import circles between modules (each list is one circle's members)"


def test_no_floor_imports_a_floor_above_it() -> None:
    floors: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        floors.setdefault(_floor(module), set()).update(_floor(t) for t in targets if _floor(t) != _floor(module))
    assert _cycles(floors) == [], "import circles between floors (msgen.<module or subpackage>)"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("msgen.training")))
def test_training_reaches_evaluation_only_through_its_package(module: str) -> None:
    inside = sorted(t for t in GRAPH[module] if t.startswith("msgen.evaluation.") or t == "msgen.metrics")
    assert inside == [], f"{module} imports evaluation internals {inside}; import from msgen.evaluation"


def test_nothing_of_evaluation_is_left_under_training() -> None:
    assert not (PACKAGE / "training" / "evaluation.py").exists()


def test_metrics_keeps_its_names_as_the_evaluation_packages_objects() -> None:
    import msgen.evaluation
    import msgen.metrics

    assert msgen.metrics.__all__, "msgen.metrics re-exports nothing"
    for name in msgen.metrics.__all__:
        assert getattr(msgen.metrics, name) is getattr(msgen.evaluation, name), name
