"""Run a pytest-style test file where pytest is not installed (the GPU machine has torch, not pytest).

    PYTHONPATH=src python benchmarks/minitest.py tests/test_gpu.py

When ``import pytest`` fails, a stand-in module provides the part of pytest's API that tests/test_gpu.py and
tests/conftest.py use: marks (``skipif``, ``parametrize``, plain marks such as ``gpu``; module-level
``pytestmark``), fixtures (``tmp_path``, generator fixtures, ``conftest.py``'s), ``approx``, ``raises`` and
``skip``. Prints one line per test and a pytest-like summary ("3 passed, 1 skipped"); exits 1 if a test
failed. Where pytest is installed, use pytest.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import itertools
import math
import re
import shutil
import sys
import tempfile
import traceback
import types
from pathlib import Path
from typing import Any


class Skipped(Exception):
    pass


class Mark:
    """``pytest.mark.NAME`` and ``pytest.mark.NAME(*args)``; applied to a function, it is recorded on it."""

    def __init__(self, name: str, args: tuple = (), kwargs: dict | None = None) -> None:
        self.name, self.args, self.kwargs = name, args, kwargs or {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs and (self.args or self.name not in _TAKES_ARGS):
            args[0].__dict__.setdefault("_marks", []).append(self)
            return args[0]
        return Mark(self.name, args, kwargs)


_TAKES_ARGS = {"skipif", "parametrize", "xfail"}


class _MarkFactory:
    def __getattr__(self, name: str) -> Mark:
        return Mark(name)


class _Approx:
    def __init__(self, expected: float, rel: float | None = None, abs: float | None = None) -> None:
        self.expected, self.rel, self.abs = expected, rel, abs

    def __eq__(self, actual: object) -> bool:
        rel = 1e-6 if self.rel is None and self.abs is None else (self.rel or 0.0)
        return math.isclose(float(actual), self.expected, rel_tol=rel, abs_tol=self.abs or 0.0)  # type: ignore[arg-type]


@contextlib.contextmanager
def _raises(kind: type[BaseException], match: str | None = None):
    try:
        yield
    except kind as e:
        if match is not None and not re.search(match, str(e)):
            raise AssertionError(f"{type(e).__name__}({e!s}) does not match {match!r}") from None
    else:
        raise AssertionError(f"did not raise {kind.__name__}")


def _fixture(fn: Any = None, **_: Any) -> Any:
    def mark(f: Any) -> Any:
        f._fixture = True
        return f

    return mark(fn) if callable(fn) else mark


def _skip(reason: str = "") -> None:
    raise Skipped(reason)


def stand_in() -> types.ModuleType:
    mod = types.ModuleType("pytest")
    mod.mark, mod.fixture, mod.approx, mod.raises, mod.skip = _MarkFactory(), _fixture, _Approx, _raises, _skip  # type: ignore[attr-defined]
    return mod


def load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def cases(fn: Any) -> list[tuple[str, dict[str, Any]]]:
    """(id, arguments) for every combination of the function's parametrize marks."""
    axes = []
    for m in fn.__dict__.get("_marks", []):
        if m.name == "parametrize":
            names = [n.strip() for n in m.args[0].split(",")] if isinstance(m.args[0], str) else list(m.args[0])
            axes.append([dict(zip(names, v if len(names) > 1 else (v,), strict=True)) for v in m.args[1]])
    out = []
    for combo in itertools.product(*axes):
        args = {k: v for part in combo for k, v in part.items()}
        out.append(("-".join(map(str, args.values())), args))
    return out or [("", {})]


def skip_reason(marks: list[Mark]) -> str | None:
    for m in marks:
        if m.name == "skipif" and m.args and m.args[0]:
            return m.kwargs.get("reason", "skipif")
    return None


def run_test(fn: Any, args: dict[str, Any], fixtures: dict[str, Any]) -> None:
    with contextlib.ExitStack() as stack:
        for name in inspect.signature(fn).parameters:
            if name in args:
                continue
            if name == "tmp_path":
                tmp = Path(tempfile.mkdtemp(prefix="minitest-"))
                stack.callback(shutil.rmtree, tmp, True)
                args[name] = tmp
            elif name in fixtures:
                value = fixtures[name]()
                if inspect.isgenerator(value):
                    gen = value
                    value = next(gen)
                    stack.callback(lambda g=gen: next(g, None))
                args[name] = value
            else:
                raise RuntimeError(f"unknown fixture {name!r}")
        fn(**args)


def main(path: str) -> int:
    try:
        import pytest  # noqa: F401
    except ImportError:
        sys.modules["pytest"] = stand_in()
    test_file = Path(path).resolve()
    sys.path.insert(0, str(test_file.parent))
    fixtures: dict[str, Any] = {}
    conftest = test_file.parent / "conftest.py"
    for module in ([load(conftest, "conftest")] if conftest.is_file() else []) + [load(test_file, test_file.stem)]:
        fixtures.update({k: v for k, v in vars(module).items() if getattr(v, "_fixture", False)})
    module = sys.modules[test_file.stem]
    module_marks = list(getattr(module, "pytestmark", []))
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for name, fn in vars(module).items():
        if not (name.startswith("test_") and callable(fn)):
            continue
        for case_id, args in cases(fn):
            label = f"{test_file.name}::{name}" + (f"[{case_id}]" if case_id else "")
            reason = skip_reason(module_marks + fn.__dict__.get("_marks", []))
            try:
                if reason is not None:
                    raise Skipped(reason)
                run_test(fn, dict(args), fixtures)
                counts["passed"] += 1
                print(f"PASSED  {label}", flush=True)
            except Skipped as e:
                counts["skipped"] += 1
                print(f"SKIPPED {label}: {e}", flush=True)
            except Exception:
                counts["failed"] += 1
                print(f"FAILED  {label}\n{traceback.format_exc(limit=-3)}", flush=True)
    print(", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no tests ran")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "tests/test_gpu.py"))
