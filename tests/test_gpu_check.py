"""benchmarks/gpu_check.py: its code paths at tiny sizes on the CPU, and a clean refusal without CUDA."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_cpu_smoke_runs_every_benchmark_and_prints_one_table(tmp_path: Path, capsys):
    out = tmp_path / "check.json"
    assert load_script().main(["--cpu-smoke", "--skip-tests", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| measurement |") == 1  # one table, at the end
    record = json.loads(out.read_text())
    assert record["smoke"] is True and record["table"] in printed
    variants = {(r["what"].split(",")[0], r["variant"]) for r in record["rows"]}
    assert ("CIFAR resnet8", "eager step (baseline)") in variants
    assert ("CIFAR resnet8", "capturable step (uncaptured)") in variants
    assert any(what.startswith("2 seeds of resnet8") for what, _ in variants)
    assert {"ResNet-50 training", "ResNet-50 inference"} <= {what for what, _ in variants}
    assert all(r["value"] is not None and r["value"] > 0 for r in record["rows"]), record["rows"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_in_one_line(tmp_path: Path, capsys):
    assert load_script().main(["--out", str(tmp_path / "x.json")]) == 1
    out = capsys.readouterr().out
    assert out.strip().count("\n") == 0 and "no CUDA device" in out and "--cpu-smoke" in out
    assert not (tmp_path / "x.json").exists()
