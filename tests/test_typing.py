"""The public API is typed for a user's type checker: ``resnet.create_model`` returns the model class (and the
backbone wrapper with ``features_only``), and ``pretrained_cfg`` is a TypedDict that says what the dict holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import resnet
from resnet.models.pretrained_cfg import PreprocessingCfg, PretrainedCfg, ResizeCfg

from conftest import HANG

#: What a user writes: every line must type-check with no error.
GOOD = """\
import resnet

model = resnet.create_model("resnet20")
cfg: resnet.PretrainedCfg = model.pretrained_cfg
mean: tuple[float, ...] = cfg["mean"]
side: int = model.pretrained_cfg["resize"]["shorter_side"]
classes: int = model.fc.out_features
backbone = resnet.create_model("resnet50", features_only=True, out_indices=(2, 3))
channels: list[int] = backbone.feature_info.channels()
size: tuple[int, int, int] = resnet.load("weights.pt").pretrained_cfg["input_size"]
"""

#: Mistakes the types must catch (were the results Any, mypy would pass these too): one error per line.
BAD = """\
import resnet

model = resnet.create_model("resnet20")
model.pretrained_cfg["no_such_key"]
name: int = model.pretrained_cfg["model_name"]
width: str = model.fc.out_features
channels: str = resnet.create_model("resnet50", features_only=True).feature_info.channels()
"""


def test_pretrained_cfg_holds_what_its_type_says():
    """The TypedDict names every key the built dict has (and no other), at both levels."""
    cfg = resnet.create_model("resnet20").pretrained_cfg
    assert set(cfg) == PretrainedCfg.__required_keys__
    assert set(cfg["preprocessing"]) == PreprocessingCfg.__required_keys__
    assert set(cfg["resize"]) == ResizeCfg.__required_keys__
    assert isinstance(cfg["input_size"], tuple) and cfg["num_classes"] == 10
    backbone = resnet.create_model("resnet20", features_only=True)
    assert isinstance(backbone, resnet.FeatureExtractor) and backbone.pretrained_cfg == cfg


def test_a_users_code_type_checks(tmp_path: Path):
    """mypy, run as a user would on their own code, accepts the typed uses and rejects the wrong ones."""
    pytest.importorskip("mypy")
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    # The resnet these tests import (a checkout's src/ or the installed package) is the one mypy reads.
    paths = [str(Path(resnet.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    cmd = [sys.executable, "-m", "mypy", "--config-file=", f"--cache-dir={os.devnull}", "good.py", "bad.py"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG)
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("good.py")], done.stdout
    assert sorted(int(e.split(":")[1]) for e in errors if e.startswith("bad.py")) == [4, 5, 6, 7], done.stdout
    assert len(errors) == 4, done.stdout + done.stderr
