"""The package's structure stays true: layers import only from lower ones, and no module import cycles.

Layers, lowest first: errors/io/paper/plugins/config -> rundir_format, models -> data -> eval -> checkpoint ->
train -> interop, analysis -> experiments -> cli (the README's "Layout"), and ``benchmarks/`` above them all.
Analysis reads run directories through ``rundir_format`` and never imports training. Every
import counts: those inside functions (a lazy import against the order is still a dependency against the
order), relative ones (``from ..train import loop``), and ``importlib.import_module("resnet.x")`` with a
name written in the code (an f-string counts by its fixed prefix, ``f"resnet.models.{name}"`` -> models).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "resnet"
BENCHMARKS = ROOT / "benchmarks"

#: Rank of each top-level part of ``resnet``; equal ranks of *different* parts may not import each other.
RANKS = {
    "errors": 0,
    "io": 1,
    "paper": 1,
    "version": 1,
    "safe_yaml": 1,
    "safe_json": 2,
    "ranges": 1,
    "logs": 1,  # how log lines reach a person (the CLI's console handler); nothing of ours
    "plugins": 1,  # imports a user's modules by name (RESNET_PLUGINS, entry points), nothing of ours
    "config": 2,
    "metadata": 3,
    "rundir_format": 3,  # the run directory's files: training writes them, analysis reads them (torch-free)
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
    "benchmarks": 12,  # measure the package from outside: may import any of it, nothing imports them
}


def module_name(path: Path) -> str:
    if path.is_relative_to(BENCHMARKS):
        return f"benchmarks.{path.stem}"
    parts = ["resnet", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    files = [*sorted(SRC.rglob("*.py")), *sorted(BENCHMARKS.glob("*.py"))]
    return {module_name(p): p for p in files}


def part(module: str) -> str:
    """``resnet.train.loop`` -> ``train``; the package itself -> ``__init__``; ``benchmarks.x`` -> ``benchmarks``."""
    pieces = module.split(".")
    if pieces[0] == "benchmarks":
        return "benchmarks"
    return pieces[1] if len(pieces) > 1 else "__init__"


def _absolute(node: ast.ImportFrom, path: Path, name: str | None) -> str | None:
    """The module a ``from`` import names, relative ones (``from ..x import y``) resolved against module ``name``."""
    if not node.level:
        return node.module
    package = (name or module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _importlib_target(node: ast.Call) -> str | None:
    """``importlib.import_module("resnet.x")`` (or ``import_module(f"resnet.x.{y}")``): the fixed part of the name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip(".")  # the package the name is built under
    return None


def imports(path: Path, modules: dict[str, Path], name: str | None = None) -> set[str]:
    """Modules of this package that ``path`` (module ``name``) imports (``from resnet.x import y`` counts y when
    it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "resnet"}
        elif isinstance(node, ast.ImportFrom) and (module := _absolute(node, path, name)):
            if module.split(".")[0] != "resnet":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in modules else module)
        elif isinstance(node, ast.Call) and (target := _importlib_target(node)):
            found.add(target)
    return {m for m in found if m in modules}


def unresolved(path: Path, modules: dict[str, Path]) -> list[str]:
    """``resnet...`` modules ``path`` imports that do not exist (a benchmark left behind by a rename)."""
    missing = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        missing += [n for n in names if n.split(".")[0] == "resnet" and n not in modules]
    return missing


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


def reaches(graph: dict[str, set[str]], source: str, target_part: str) -> list[str]:
    """A chain of imports from ``source`` to a module of ``target_part`` (empty when there is none)."""
    seen, todo = {source}, [[source]]
    while todo:
        chain = todo.pop()
        for nxt in sorted(graph.get(chain[-1], ())):
            if part(nxt) == target_part:
                return [*chain, nxt]
            if nxt not in seen:
                seen.add(nxt)
                todo.append([*chain, nxt])
    return []


def test_analysis_reads_runs_without_training(graph: dict[str, set[str]]):
    # Peers by rank, but a report must not need the training code: the run directory's format sits below both.
    chains = [" -> ".join(c) for m in sorted(graph) if part(m) == "analysis" and (c := reaches(graph, m, "train"))]
    assert not chains, "analysis imports training:\n" + "\n".join(chains)
    assert part("resnet.rundir_format") == "rundir_format" and RANKS["rundir_format"] < RANKS["train"]
    indirect = {"resnet.analysis.x": {"resnet.io"}, "resnet.io": {"resnet.train.loop"}}  # the check can fail
    assert reaches(indirect, "resnet.analysis.x", "train") == ["resnet.analysis.x", "resnet.io", "resnet.train.loop"]


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


def test_relative_imports_and_importlib_count(tmp_path: Path):
    pkg = tmp_path / "resnet" / "models"
    pkg.mkdir(parents=True)
    rel = pkg / "x.py"
    rel.write_text("from ..train import loop\nfrom . import arch\n")
    dyn = pkg / "y.py"
    dyn.write_text("import importlib\nimportlib.import_module('resnet.train.loop')\nimport_module(f'resnet.cli.{n}')\n")
    modules = {"resnet.train.loop": rel, "resnet.models.arch": rel, "resnet.cli": rel}
    assert imports(rel, modules, "resnet.models.x") == {"resnet.train.loop", "resnet.models.arch"}
    assert imports(dyn, modules, "resnet.models.y") == {"resnet.train.loop", "resnet.cli"}
    assert layer_violations({"resnet.models.x": imports(rel, modules, "resnet.models.x")})


def test_benchmarks_are_covered_and_import_only_what_exists():
    modules = all_modules()
    assert any(part(m) == "benchmarks" for m in modules)
    assert layer_violations({"resnet.train.loop": {"benchmarks.minitest"}})  # the package never imports them
    missing = {
        name: miss for name, p in modules.items() if part(name) == "benchmarks" and (miss := unresolved(p, modules))
    }
    assert not missing, f"benchmarks import modules that do not exist: {missing}"


def test_no_module_is_too_long():
    # Files of a readable size (the README's "Layout"); data files and generated lists are not .py.
    package = {name: p for name, p in all_modules().items() if part(name) != "benchmarks"}
    long = {name: n for name, p in package.items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these modules: {long}"


def test_no_function_is_longer_than_a_screen():
    too_long = []
    for name, path in all_modules().items():
        if part(name) == "benchmarks":  # scripts of measurements, not the library
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert not too_long, "functions over 80 lines: " + ", ".join(too_long)
