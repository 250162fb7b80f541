"""The capturable training step (resnet.train.graphed), run uncaptured on the CPU: the same training as the
eager step, bit for bit, with its warm-up decided on the device and no host read inside the step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnet.config import Config, ScheduleConfig, load_config
from resnet.data.datasets import load_dataset
from resnet.data.loader import DeviceLoader
from resnet.data.preprocess import Normalizer
from resnet.errors import NonFiniteLoss, UserError
from resnet.models import build_network
from resnet.train.graphed import GraphedStep
from resnet.train.loop import fit
from resnet.train.meters import LossWindow
from resnet.train.runtime import Runtime
from resnet.train.schedule import LRSchedule
from resnet.train.step import train_one_step

from conftest import tiny_overrides

CPU = torch.device("cpu")
# ResNet-110's warm-up (section 4.2) with a threshold that a ResNet-8 crosses early, so the switch from
# 0.01 to 0.1 happens within the 50 compared iterations.
WARMUP = ScheduleConfig(iterations=50, milestones=[60], warmup_lr=0.01, warmup_until_error=88.0, warmup_window=10)


def cifar_setup(cifar_subset: Path, batch: int = 32):
    cfg = Config()
    cfg.data.data_dir = str(cifar_subset)
    cfg.data.val_fraction = 0.1  # the 4,577 images the thresholds below were chosen on (warm-up ends at 10)
    data = load_dataset(cfg.data)
    images, labels = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    return images, labels, Normalizer.fit("pixel_mean", data.train_x), batch


def fresh(images, labels, norm, batch, seed: int = 0):
    torch.manual_seed(seed)
    model = build_network("resnet8")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=False)
    return model, opt, DeviceLoader(images, labels, batch, norm, seed=seed), LRSchedule(WARMUP, 0.1, CPU)


def test_the_capturable_step_trains_exactly_as_the_eager_step_across_the_warmup_switch(cifar_subset: Path):
    images, labels, norm, batch = cifar_setup(cifar_subset)
    m1, o1, l1, s1 = fresh(images, labels, norm, batch)
    m2, o2, l2, s2 = fresh(images, labels, norm, batch)
    window = LossWindow(50, CPU, batch, 1)
    graphed = GraphedStep(m2, o2, s2, l2, Runtime(CPU, None, False), window, capture=False)
    eager_ended = None
    for it in range(50):
        x, y = l1.next()
        _, wrong = train_one_step(m1, o1, x.contiguous(), y, s1.lr(it))
        if s1.observe(it + 1, wrong.double() * (100.0 / batch)):
            eager_ended = it + 1
        graphed.run(it)
        window.filled += 1
    ended = graphed.read_back()
    assert eager_ended is not None and 10 <= eager_ended < 50  # the switch happened inside the comparison
    assert ended is not None and ended[0] == eager_ended and ended[1] == s1.last_running_error
    assert s2.state_dict()["errors"].equal(s1.state_dict()["errors"]) and s2._seen == s1._seen
    worst = 0.0
    for (name, a), b in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # same ops in the same order: bit-identical on the CPU
        if a.is_floating_point():
            worst = max(worst, ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item())
    assert worst < 1e-5
    assert graphed.last_lr() == s1.lr(49) == s2.lr(50) == 0.1  # back to 0.1 after the warm-up


def test_the_step_reads_no_host_value(cifar_subset: Path, monkeypatch):
    """What a CUDA graph forbids: a step (and the warm-up check outside it) that asks the device for a value."""
    images, labels, norm, batch = cifar_setup(cifar_subset, batch=16)
    model, opt, loader, schedule = fresh(images, labels, norm, batch)
    window = LossWindow(40, CPU, batch, 1)
    graphed = GraphedStep(model, opt, schedule, loader, Runtime(CPU, None, False), window, capture=False)
    graphed.run(0)  # the first batch sets up the static buffers

    def host_read(*args, **kwargs):
        raise AssertionError("the captured step read a value from the device")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    for it in range(1, 21):  # iterations 10 and 20 run the warm-up check
        graphed.run(it)
    with pytest.raises(AssertionError, match="read a value"):  # the eager loop's NaN check does read
        window.first_nonfinite()
    monkeypatch.undo()
    window.filled = 21
    assert graphed.read_back() == (10, schedule.last_running_error) and schedule.last_running_error < 88.0
    assert window.record(21, 0.1)["loss"] > 0  # the losses went into the window at the device cursor


def graph_recipe(**extra: object) -> Config:
    warm = {"schedule.iterations": 16, "schedule.warmup_lr": 0.01, "schedule.warmup_until_error": 99.0,
            "schedule.warmup_window": 4, "schedule.milestones": [12, 14]}  # fmt: skip
    return load_config(None, tiny_overrides(**{**warm, **extra}))


def load(path: Path) -> dict:
    return torch.load(path / "checkpoint.pt", weights_only=True)


def strip_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in records]


def assert_same_run(a: dict, b: dict) -> None:
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]  # plain floats, eager flags
    sa, sb = a["schedule"], b["schedule"]
    assert sa.pop("errors").equal(sb.pop("errors")) and sa == sb


def test_fit_with_the_capturable_step_equals_the_eager_fit(tmp_path: Path):
    fit(graph_recipe(**{"train.cuda_graph": "false"}), tmp_path / "eager", echo=False)
    fit(graph_recipe(**{"train.cuda_graph": "true"}), tmp_path / "graph", echo=False)
    a, b = load(tmp_path / "eager"), load(tmp_path / "graph")
    assert a["schedule"]["warmup_ended_at"] == b["schedule"]["warmup_ended_at"] == 10
    assert_same_run(a, b)
    assert strip_timing(a["metrics"]) == strip_timing(b["metrics"])  # incl. the warm-up event and every lr
    assert isinstance(b["optimizer"]["param_groups"][0]["lr"], float)


def test_resume_across_step_kinds_is_bit_identical(tmp_path: Path):
    # Eager for 8 iterations (warm-up still on), then the capturable step resumes: the device warm-up state
    # starts from the checkpoint's schedule and ends the warm-up at iteration 10 as the eager run does.
    fit(graph_recipe(**{"train.cuda_graph": "false"}), tmp_path / "whole", echo=False)
    fit(graph_recipe(**{"schedule.iterations": 8, "train.cuda_graph": "false"}), tmp_path / "split", echo=False)
    fit(graph_recipe(**{"train.cuda_graph": "true"}), tmp_path / "split", echo=False)
    a, b = load(tmp_path / "whole"), load(tmp_path / "split")
    assert b["iteration"] == 16 and b["schedule"]["warmup_ended_at"] == 10
    assert_same_run(a, b)


def test_nan_guard_works_with_the_capturable_step(tmp_path: Path):
    cfg = graph_recipe(**{"schedule.iterations": 30, "schedule.warmup_until_error": 101.0,
                          "schedule.warmup_window": 2, "optim.lr": 1e30, "schedule.milestones": [100],
                          "train.checkpoint_every": 5, "train.log_every": 30, "train.eval_every": 30,
                          "train.cuda_graph": "true"})  # fmt: skip
    with pytest.raises(NonFiniteLoss, match=r"loss became (nan|inf) at iteration 1[1-3]; training stopped"):
        fit(cfg, tmp_path / "r", echo=False)
    assert load(tmp_path / "r")["iteration"] == 10


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"train.cuda_graph": "always"}, r"train.cuda_graph.*choose one of auto, true, false"),
        ({"train.cuda_graph": "true", "train.compile": "default"}, r"choose one"),
        ({"train.cuda_graph": "true", "data.dataset": "imagefolder", "data.data_dir": "x"}, r"device-resident"),
    ],
)
def test_bad_cuda_graph_settings_are_one_clear_line(sets: dict, message: str):
    with pytest.raises(UserError, match=message):
        load_config(None, tiny_overrides(**sets))
