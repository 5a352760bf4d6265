"""Every randomized test seeds its generator, so a failure reproduces whatever the process and
the test order: an AST check of tests/, and a check of the seeding that conftest.py does.

conftest.py seeds torch's, NumPy's legacy and Python's global generators before every test (an
autouse fixture), so a draw from them inside a test or a function-scoped fixture is reproducible.
Flagged: ``np.random.default_rng()`` without a seed and ``torch.Generator()`` never given
``manual_seed`` (anywhere); draws from the global generators (``torch.rand``, ``randn``,
``randint``, ..., without ``generator=``; legacy ``np.random.*``; ``random.*``) at module level or
in a module-, class- or session-scoped fixture (those run before the per-test seeding) unless that
scope seeds them first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TORCH_SAMPLERS = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal",
                  "bernoulli", "multinomial", "poisson"}
NUMPY_LEGACY = {"rand", "randn", "randint", "random", "random_sample", "normal", "uniform", "choice", "shuffle",
                "permutation", "integers"}
PYTHON_RANDOM = {"random", "randint", "choice", "shuffle", "gauss", "uniform", "sample", "randrange"}


def _dotted(node: ast.AST) -> str:
    """'np.random.default_rng' for the call's function, '' when not a plain dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _calls_in_scope(scope: ast.AST) -> list[ast.Call]:
    """The calls of one function (or of the module outside its functions), in source order."""
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and child is not scope:
                continue  # its own scope
            if isinstance(child, ast.Call):
                found.append(child)
            visit(child)

    visit(scope)
    return sorted(found, key=lambda c: (c.lineno, c.col_offset))


def _runs_before_the_per_test_seed(scope: ast.AST) -> bool:
    """The module itself, or a fixture of a scope wider than a function."""
    if isinstance(scope, ast.Module):
        return True
    for decorator in getattr(scope, "decorator_list", []):
        if isinstance(decorator, ast.Call) and _dotted(decorator.func).endswith("fixture"):
            for keyword in decorator.keywords:
                if keyword.arg == "scope" and not (isinstance(keyword.value, ast.Constant)
                                                   and keyword.value.value == "function"):
                    return True
    return False


def unseeded(source: str, filename: str = "<test>") -> list[str]:
    """'file:line: what' for every unseeded random draw in ``source``."""
    tree = ast.parse(source, filename)
    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]
    problems = []
    for scope in scopes:
        # Inside a test or a function-scoped fixture conftest.py has seeded the global generators.
        seeded: set[str] = set() if _runs_before_the_per_test_seed(scope) else {"torch", "numpy", "random"}
        calls = _calls_in_scope(scope)
        seeds_a_generator = any(isinstance(c.func, ast.Attribute) and c.func.attr == "manual_seed" for c in calls)
        for call in calls:
            name = _dotted(call.func)
            head, _, last = name.rpartition(".")
            kwargs = {k.arg for k in call.keywords}
            where = f"{filename}:{call.lineno}: {name}"
            if name in ("torch.manual_seed", "torch.random.manual_seed"):
                seeded.add("torch")
            elif name in ("np.random.seed", "numpy.random.seed"):
                seeded.add("numpy")
            elif name == "random.seed":
                seeded.add("random")
            elif name in ("np.random.default_rng", "numpy.random.default_rng"):
                if not call.args and "seed" not in kwargs or (call.args and isinstance(call.args[0], ast.Constant)
                                                              and call.args[0].value is None):
                    problems.append(f"{where}() without a seed")
            elif name == "torch.Generator" and not seeds_a_generator:
                problems.append(f"{where}() never given manual_seed")
            elif head == "torch" and last in TORCH_SAMPLERS and "generator" not in kwargs and "torch" not in seeded:
                problems.append(f"{where} without generator= or an earlier torch.manual_seed")
            elif head in ("np.random", "numpy.random") and last in NUMPY_LEGACY and "numpy" not in seeded:
                problems.append(f"{where} without an earlier np.random.seed")
            elif head == "random" and last in PYTHON_RANDOM and "random" not in seeded:
                problems.append(f"{where} without an earlier random.seed")
    return problems


def test_the_check_catches_each_kind_of_unseeded_draw():
    bad = """
import numpy as np, random, pytest, torch
x = torch.rand(3)
def test_a():
    rng = np.random.default_rng()
    g = torch.Generator()
@pytest.fixture(scope="module")
def data():
    y = np.random.rand(2)
    z = random.random()
"""
    good = """
import numpy as np, random, pytest, torch
def test_b():
    x = torch.rand(3)  # conftest.py seeded torch before the test
@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, generator=g)
    torch.manual_seed(2); np.random.seed(3); random.seed(4)
    y = torch.randn(2), np.random.rand(2), random.random()
"""
    assert [p.split(": ", 1)[1] for p in unseeded(bad)] == [
        "torch.rand without generator= or an earlier torch.manual_seed", "np.random.default_rng() without a seed",
        "torch.Generator() never given manual_seed", "np.random.rand without an earlier np.random.seed",
        "random.random without an earlier random.seed"]
    assert unseeded(good) == []


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: p.name)
def test_every_random_draw_in_the_tests_is_seeded(path: Path):
    problems = unseeded(path.read_text(), str(path.relative_to(TESTS.parent)))
    assert not problems, "unseeded random draws:\n" + "\n".join(problems)


def test_conftest_seeds_the_global_generators_before_each_test():
    import random

    import numpy as np
    import torch

    assert torch.initial_seed() == 0
    state, fresh = np.random.get_state(), np.random.RandomState(0).get_state()
    assert state[0] == fresh[0] and np.array_equal(state[1], fresh[1]) and state[2] == fresh[2]
    assert random.getstate() == random.Random(0).getstate()
