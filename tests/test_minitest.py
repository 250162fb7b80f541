"""benchmarks/minitest.py runs pytest-style files where pytest is missing (the GPU machine): it must pass,
fail and skip what pytest would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import HANG

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = """
import pytest

pytestmark = [pytest.mark.gpu]


@pytest.fixture
def ten():
    yield 10


@pytest.mark.parametrize(("a", "b"), [(1, 2), (2, 4)])
def test_double(a, b, ten, tmp_path):
    (tmp_path / "x").write_text("ok")
    assert a * 2 == b and ten == 10 and b * 1.0000001 == pytest.approx(b)


@pytest.mark.parametrize("n", [1, 3])
def test_odd(n):
    with pytest.raises(ValueError, match="odd"):
        raise ValueError(f"{n} is odd")
    assert n == 1


@pytest.mark.skipif(True, reason="not here")
def test_skipped():
    raise RuntimeError


def test_uses_conftest(seven):
    if seven == 7:
        pytest.skip("seven")
"""

CONFTEST = """
import pytest


@pytest.fixture(scope="session")
def seven():
    return 7
"""


def test_minitest_without_pytest(tmp_path: Path):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    code = (
        "import runpy, sys; sys.modules['pytest'] = None; "  # import pytest now fails, as on the GPU machine
        f"sys.argv = ['minitest', {str(tmp_path / 'test_sample.py')!r}]; "
        f"runpy.run_path({str(ROOT / 'benchmarks' / 'minitest.py')!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert lines[-1] == "3 passed, 1 failed, 2 skipped", done.stdout
    assert "FAILED  test_sample.py::test_odd[3]" in done.stdout
    assert "SKIPPED test_sample.py::test_skipped: not here" in done.stdout


def test_minitest_runs_the_gpu_file_here(tmp_path: Path):
    """Without CUDA every gpu test is skipped, through the stand-in too (its imports and marks work)."""
    code = (
        "import runpy, sys; sys.modules['pytest'] = None; "
        f"sys.argv = ['minitest', {str(ROOT / 'tests' / 'test_gpu.py')!r}]; "
        f"runpy.run_path({str(ROOT / 'benchmarks' / 'minitest.py')!r}, run_name='__main__')"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "11 skipped", done.stdout
