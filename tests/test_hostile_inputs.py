"""Hostile inputs get one clear line: crafted checkpoints and safetensors headers, bad flags and devices.

Each test is named after the defect of issue 12 it guards against.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet.checkpoint import load_checkpoint
from resnet.checkpoint.statedict import strip_wrapper_prefixes
from resnet.cli import main
from resnet.config import load_config
from resnet.errors import UserError
from resnet.interop.convert import convert_file, load_any
from resnet.models import build_network
from resnet.train.loop import fit

from conftest import HANG, ROOT, tiny_overrides


@pytest.fixture(scope="module")
def run_ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real training checkpoint (ResNet-8 on the digits, 2 iterations), as the dict on disk."""
    out = tmp_path_factory.mktemp("run") / "r"
    fit(load_config(None, tiny_overrides(**{"schedule.iterations": 2})), out, echo=False)
    return torch.load(out / "checkpoint.pt", weights_only=True)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# 10. A state dict holding both k and module.k.


def test_defect10_a_key_with_and_without_a_wrapper_prefix_is_refused(tmp_path: Path, capsys):
    state = build_network("resnet8").state_dict()
    zeros = {f"module.{k}": torch.zeros_like(v) for k, v in state.items()}
    torch.save({**state, **zeros}, tmp_path / "both.pth")
    assert main(["convert", str(tmp_path / "both.pth"), "--to", str(tmp_path / "out.pt"), "--model", "resnet8"]) == 2
    err = one_line_error(capsys)
    assert "hold both 'conv1.weight' and 'module.conv1.weight'" in err and not (tmp_path / "out.pt").exists()
    with pytest.raises(UserError, match="'_orig_mod.fc.bias' and 'module.fc.bias'"):
        strip_wrapper_prefixes({"_orig_mod.fc.bias": torch.zeros(1), "module.fc.bias": torch.ones(1)})


# 21. Malformed but pickle-safe checkpoints and safetensors headers.


BAD_FIELDS = [
    ("model_name", 5, "'model_name' is missing"),
    ("model_kwargs", torch.zeros(2), "'model_kwargs' must be a dict"),
    ("model_kwargs", ["num_classes", 10], "'model_kwargs' must be a dict"),
    ("model_kwargs.num_classes", "10", "'model_kwargs.num_classes' must be a whole number"),
    ("model_kwargs.num_classes", 10**12, "'model_kwargs.num_classes' must be a whole number in 1..1,000,000"),
    ("model_kwargs.in_channels", 1.5, "'model_kwargs.in_channels' must be a whole number"),
    ("model_kwargs.shortcut", 3, "'model_kwargs.shortcut' must be a name or null"),
    ("model_kwargs.zero_init_residual", "yes", "'model_kwargs.zero_init_residual' must be true or false"),
    ("preprocessing", torch.zeros(2), "'preprocessing' must be a dict"),
    ("config", [1, 2], "'config' must be a dict"),
    ("data", "cifar", "'data' must be a dict"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_FIELDS)
def test_defect21_wrong_types_in_a_checkpoint_are_named(run_ckpt: dict, tmp_path: Path, field, value, message):
    obj = copy.deepcopy(run_ckpt)
    *parents, last = field.split(".")
    target = obj
    for p in parents:
        target = target[p]
    target[last] = value
    torch.save(obj, tmp_path / "c.pt")
    for read in (load_checkpoint, load_any):
        with pytest.raises(UserError, match=re.escape(message)):
            read(tmp_path / "c.pt")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("loader", {}),
        ("loader", {"epoch": "x", "step": 0}),
        ("schedule", {"warming_up": False}),
        ("optimizer", {"state": {}, "param_groups": [{"params": [0]}]}),
        ("rng", {"torch": torch.zeros(3)}),
    ],
)
def test_defect21_a_damaged_train_state_fails_resume_in_one_line(run_ckpt: dict, tmp_path: Path, field, value):
    obj = {**run_ckpt, field: value}
    run = tmp_path / "r"
    run.mkdir()
    torch.save(obj, run / "checkpoint.pt")
    (run / "run.json").write_text('{"invocations": []}\n')
    with pytest.raises(UserError, match=r"checkpoint.pt: damaged checkpoint: its training state does not fit"):
        fit(load_config(None, tiny_overrides(**{"schedule.iterations": 4})), run, echo=False)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 2  # left as it was


def test_defect21_a_converted_checkpoint_is_not_resumed_as_a_run(run_ckpt: dict, tmp_path: Path):
    torch.save(run_ckpt, tmp_path / "w.pt")
    run = tmp_path / "r"
    run.mkdir()
    convert_file(tmp_path / "w.pt", run / "checkpoint.pt")
    with pytest.raises(UserError, match="holds weights without a training state .* cannot be resumed"):
        fit(load_config(None, tiny_overrides(**{"schedule.iterations": 4})), run, echo=False)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("preprocessing", "[1, 2]"),
        ("preprocessing", '{"kind": "pixel_mean", "mean": "x", "std": [1], "mean_shape": [1], "std_shape": [1]}'),
        ("preprocessing", '{"kind": "pixel_mean", "mean": [1], "std": [1], "mean_shape": [-7], "std_shape": [1]}'),
        ("model_kwargs", "[1, 2]"),
        ("model_kwargs", '{"num_classes": "ten"}'),
        ("classes", '"abc"'),
        ("input_size", "[3, 32.5, 32]"),
        ("model_name", "null"),
        ("config", '{"optim": {"lr": "fast"}}'),
        ("iteration", "true"),
    ],
)
def test_defect21_a_damaged_safetensors_header_is_named(run_ckpt: dict, tmp_path: Path, key: str, value: str, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    torch.save(run_ckpt, tmp_path / "w.pt")
    convert_file(tmp_path / "w.pt", tmp_path / "w.safetensors")
    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    if key in ("config", "iteration"):
        meta = {**meta, key: value}
    else:  # the description's fields live in one JSON object, "metadata" (resnet.metadata.ModelMetadata)
        meta = {**meta, "metadata": json.dumps({**json.loads(meta["metadata"]), key: json.loads(value)})}
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    for argv in (["convert", str(tmp_path / "bad.safetensors"), "--to", str(tmp_path / "o.pt")],
                 ["export", "--checkpoint", str(tmp_path / "bad.safetensors"), "--format", "torchscript"]):  # fmt: skip
        assert main(argv) == 2
        assert "bad.safetensors" in one_line_error(capsys)


# 11. Out-of-range command-line numbers.


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "runs/x", "--limit", "-5"],
        ["eval", "runs/x", "--limit", "0"],
        ["eval", "runs/x", "--workers", "-1"],
        ["summary", "resnet20", "--num-classes", "0"],
        ["train", "cifar10/resnet20", "--iterations", "-1"],
        ["train", "cifar10/resnet20", "--seed", "-1"],
        ["train", "cifar10/resnet20", "--checkpoint-every", "0"],
        ["train", "cifar10/resnet20", "--set", "schedule.warmup_until_error=.nan"],
    ],
)
def test_defect11_out_of_range_flags_fail_before_anything_runs(argv: list[str], capsys):
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert "must be" in err or "positive" in err, err


# 20. Devices, input sizes and Ctrl-C: one line each.


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "cifar10/resnet20", "--device", "tpu"], "'tpu'; choose auto, cpu, cuda or cuda:N"),
        (["train", "cifar10/resnet20", "--device", "mps"], "'mps'; choose auto, cpu, cuda or cuda:N"),
        (["train", "cifar10/resnet20", "--device", "meta"], "'meta'; choose auto, cpu, cuda or cuda:N"),
        (["train", "cifar10/resnet20", "--device", "cuda:abc"], "'cuda:abc'; choose auto, cpu, cuda or cuda:N"),
        (["eval", "runs/none", "--device", "tpu"], "device 'tpu' is not supported"),
        (["summary", "resnet20", "--input-size", "1", "32", "32"], "resnet20 cannot take an input of 1x32x32"),
    ],
)
def test_defect20_bad_devices_and_inputs_are_one_line(argv: list[str], message: str, capsys):
    assert main(argv) == 2
    assert message in one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_defect20_eval_on_cuda_without_cuda_is_one_line(run_ckpt: dict, tmp_path: Path, capsys):
    torch.save(run_ckpt, tmp_path / "c.pt")
    assert main(["eval", str(tmp_path / "c.pt"), "--device", "cuda"]) == 2
    assert "no CUDA device is available; use --device cpu" in one_line_error(capsys)


def test_defect20_summary_of_a_zero_input_size_is_one_line(capsys):
    assert main(["summary", "resnet50", "--input-size", "0", "32", "32"]) == 2
    assert "--input-size must be three positive numbers C H W, got 0 32 32" in one_line_error(capsys)


def test_defect20_negative_labels_are_refused_before_training(tmp_path: Path, monkeypatch):
    import resnet.data.datasets as datasets

    real = datasets.load_digits_arrays

    def damaged():
        train_x, train_y, test_x, test_y, classes = real()
        train_y = train_y.copy()
        train_y[7] = -1
        return train_x, train_y, test_x, test_y, classes

    monkeypatch.setattr(datasets, "load_digits_arrays", damaged)
    with pytest.raises(UserError, match=r"digits: the train labels hold -1, outside 0..9"):
        fit(load_config(None, tiny_overrides()), tmp_path / "r", echo=False)
    assert not (tmp_path / "r").exists()


def test_defect20_ctrl_c_during_start_up_is_one_line(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    code = "import sys, resnet.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout == "False\n"
    recipe = tmp_path / "r.yaml"  # long enough that only a stop can end it within the timeout
    recipe.write_text(json.dumps({"model": {"name": "resnet8"}, "data": {"dataset": "digits"}}))
    for delay in (0.3, 0.6, 0.9, 1.2):  # inside the imports of torch, numpy, scikit-learn (they take seconds)
        proc = subprocess.Popen([sys.executable, "-m", "resnet", "train", str(recipe), "--out", str(tmp_path / "r"),
                                 "--device", "cpu"], env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=HANG)
        assert proc.returncode in (130, -signal.SIGINT) and "Traceback" not in err, err[-2000:]
        assert err.strip().splitlines()[-1].startswith("resnet: "), err
