"""The package's structure stays true: layers import only from lower ones, and no module import cycles.

Layers, lowest first: errors/io/paper/config -> models -> data -> eval -> checkpoint -> train -> interop,
analysis -> experiments -> cli (the README's "Layout"). Every ``import`` counts, also those inside functions:
a lazy import against the order is still a dependency against the order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "resnet"

#: Rank of each top-level part of ``resnet``; equal ranks of *different* parts may not import each other.
RANKS = {
    "errors": 0,
    "io": 1,
    "paper": 1,
    "version": 1,
    "safe_yaml": 1,
    "safe_json": 2,
    "ranges": 1,
    "config": 2,
    "metadata": 2,
    "models": 3,
    "data": 4,
    "eval": 5,
    "checkpoint": 6,
    "train": 7,
    "interop": 8,
    "analysis": 8,
    "experiments": 9,
    "cli": 10,
    "__main__": 11,
    "__init__": 11,  # the package facade (``import resnet``): may re-export anything below it
}


def module_name(path: Path) -> str:
    parts = ["resnet", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def part(module: str) -> str:
    """``resnet.train.loop`` -> ``train``; the package itself -> ``__init__``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of this package that ``path`` imports (``from resnet.x import y`` counts y when it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "resnet"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "resnet":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports(path, modules) - {name} for name, path in modules.items()}


def test_every_part_has_a_rank():
    unknown = sorted({part(m) for m in all_modules()} - set(RANKS))
    assert not unknown, f"place these in RANKS (and the README's layout table): {unknown}"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for source, targets in graph.items():
        for target in targets:
            a, b = part(source), part(target)
            if a != b and RANKS[b] >= RANKS[a]:
                wrong.append(f"{source} imports {target} ({a} rank {RANKS[a]} -> {b} rank {RANKS[b]})")
    return sorted(wrong)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_imports_follow_the_layers(graph: dict[str, set[str]]):
    wrong = layer_violations(graph)
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycles(graph: dict[str, set[str]]):
    assert not find_cycles(graph), f"import cycles: {find_cycles(graph)}"


def test_the_checks_catch_what_they_should(tmp_path: Path):
    # An upward import, a sideways one between peers, a cycle, and an in-function import.
    assert layer_violations({"resnet.models.x": {"resnet.train.loop"}})
    assert layer_violations({"resnet.analysis.x": {"resnet.interop.convert"}})
    assert not layer_violations({"resnet.train.loop": {"resnet.models.x", "resnet.train.state"}})
    assert find_cycles({"resnet.a": {"resnet.b"}, "resnet.b": {"resnet.a"}, "resnet.c": set()}) == [
        ["resnet.a", "resnet.b"]
    ]
    fake = tmp_path / "m.py"
    fake.write_text("def f():\n    from resnet.train.loop import fit\n")
    assert imports(fake, {"resnet.train.loop": fake}) == {"resnet.train.loop"}


def test_no_module_is_too_long():
    # Files of a readable size (the README's "Layout"); data files and generated lists are not .py.
    long = {name: n for name, p in all_modules().items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these modules: {long}"


def test_no_function_is_longer_than_a_screen():
    too_long = []
    for name, path in all_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert not too_long, "functions over 80 lines: " + ", ".join(too_long)
