"""Weights in and out: torchvision and wrapped state_dicts, our checkpoints, safetensors, diffs, refusing code."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from resnet.checkpoint import FORMAT, Checkpoint, load_checkpoint
from resnet.checkpoint.statedict import compact_keys, infer_architecture, strip_wrapper_prefixes
from resnet.cli import main
from resnet.config import load_config
from resnet.data.classes import IMAGENET_MEAN, IMAGENET_STD
from resnet.errors import UserError
from resnet.interop.convert import convert_file, load_any, read_weights
from resnet.models import build_network
from resnet.train.loop import fit

from conftest import tiny_overrides


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics, so that equal outputs prove every tensor landed in the right place."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def resnet50_tv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """A state_dict in torchvision's format (same keys and layout as its resnet50: test_torchvision_interop)."""
    torch.manual_seed(0)
    model = randomized(build_network("resnet50", bottleneck_stride="3x3"))
    path = tmp_path_factory.mktemp("tv") / "resnet50-0676ba61.pth"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real training checkpoint of this project (ResNet-8 on the digits, seconds on a CPU)."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    fit(load_config(None, tiny_overrides()), out, echo=False)
    return out


def outputs(model: nn.Module, size: int, channels: int = 3) -> torch.Tensor:
    x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval()(x)


def test_torchvision_resnet50_converts_with_imagenet_metadata_and_same_outputs(resnet50_tv, tmp_path: Path):
    src, ref = resnet50_tv
    ckpt, notes, _ = convert_file(src, tmp_path / "r50.pt")
    saved = load_checkpoint(tmp_path / "r50.pt")
    assert saved.to_dict()["format"] == FORMAT and saved.training is None
    assert saved.model_name == "resnet50"
    assert saved.model_kwargs == {"num_classes": 1000, "shortcut": "B", "bottleneck_stride": "3x3"}
    assert saved.input_size == [3, 224, 224] and saved.dataset == "imagenet" and saved.iteration is None
    assert saved.classes[0] == "tench" and saved.classes[281] == "tabby" and len(saved.classes) == 1000
    pre = saved.preprocessing
    assert pre["kind"] == "channel_mean_std" and pre["mean"].shape == (3, 1, 1)
    assert torch.allclose(pre["mean"].flatten(), torch.tensor(IMAGENET_MEAN))
    assert torch.allclose(pre["std"].flatten(), torch.tensor(IMAGENET_STD))
    assert any("torchvision" in n for n in notes)
    torch.testing.assert_close(outputs(saved.build_model(), 64), outputs(ref, 64), rtol=0, atol=0)


def test_dataparallel_and_compile_prefixes_are_stripped(resnet50_tv, tmp_path: Path):
    src, ref = resnet50_tv
    state = torch.load(src, weights_only=True)
    torch.save({f"module._orig_mod.{k}": v for k, v in state.items()}, tmp_path / "dp.pth")
    ckpt = load_any(tmp_path / "dp.pth").checkpoint
    assert list(ckpt.state_dict) == list(state)
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in state.items())
    assert strip_wrapper_prefixes({"_orig_mod.module.fc.bias": 1, "fc.weight": 2}) == {"fc.bias": 1, "fc.weight": 2}


def test_legacy_weights_without_bn_counters_convert(resnet50_tv, tmp_path: Path):
    # Older torchvision files (and Caffe ports) have no num_batches_tracked; PyTorch itself accepts that.
    src, ref = resnet50_tv
    state = {k: v for k, v in torch.load(src, weights_only=True).items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "legacy.pth")
    convert_file(tmp_path / "legacy.pth", tmp_path / "out.pt")
    saved = load_checkpoint(tmp_path / "out.pt")
    assert saved.state_dict["bn1.num_batches_tracked"].item() == 0
    torch.testing.assert_close(outputs(saved.build_model(), 64), outputs(ref, 64), rtol=0, atol=0)


def test_a_different_depth_gives_a_readable_diff_and_writes_nothing(resnet50_tv, tmp_path: Path, capsys):
    src, _ = resnet50_tv
    out = tmp_path / "wrong.pt"
    assert main(["convert", str(src), "--to", str(out), "--model", "resnet101"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("resnet: error:")
    # 17 missing bottlenecks of 18 tensors each, folded into one entry, and the way out.
    assert "weights do not fit resnet101" in err and "missing 306 (layer3.6-22.*)" in err
    assert "look like resnet50: pass --model resnet50" in err
    assert not out.exists()


def test_wrong_num_classes_and_stray_keys_are_named(tmp_path: Path):
    state = build_network("resnet18", num_classes=10).state_dict()
    ckpt = {
        "format": FORMAT,
        "model": {**state, "head.extra": torch.zeros(3)},
        "model_name": "resnet18",
        "model_kwargs": {"num_classes": 1000},
    }
    torch.save(ckpt, tmp_path / "c.pt")
    with pytest.raises(UserError) as e:
        load_any(tmp_path / "c.pt")
    msg = str(e.value)
    assert "unexpected 1 (head.extra)" in msg
    assert "wrong shape 2 (fc.weight: file [10, 512], model [1000, 512]; fc.bias: file [10], model [1000])" in msg
    del state["bn1.running_var"], state["layer4.1.conv2.weight"]
    torch.save(state, tmp_path / "bare.pth")
    with pytest.raises(UserError, match=r"missing 2 \(bn1.running_var, layer4.1.conv2.weight\)"):
        load_any(tmp_path / "bare.pth")


def test_plain_and_option_a_weights_need_model_and_then_convert(tmp_path: Path):
    torch.manual_seed(0)
    ref = randomized(build_network("resnet20"))
    torch.save(ref.state_dict(), tmp_path / "r20.pth")
    with pytest.raises(UserError, match="resnet20 and plain20 .* pass --model resnet20 or --model plain20"):
        load_any(tmp_path / "r20.pth")
    ckpt, notes, _ = convert_file(tmp_path / "r20.pth", tmp_path / "r20.pt", model="resnet20")
    assert ckpt.model_kwargs == {"num_classes": 10, "shortcut": "A"} and ckpt.dataset == "cifar10"
    assert ckpt.classes[0] == "airplane" and ckpt.input_size == [3, 32, 32]
    assert any("assumed" in n for n in notes)
    torch.testing.assert_close(outputs(load_checkpoint(tmp_path / "r20.pt").build_model(), 32), outputs(ref, 32))
    plain = load_any(tmp_path / "r20.pth", model="plain20").checkpoint  # same tensors, no shortcuts: another net
    assert plain.model_kwargs == {"num_classes": 10}
    assert not torch.allclose(outputs(plain.build_model(), 32), outputs(ref, 32))


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("resnet18", {}, ["resnet18"]),
        ("resnet34", {"shortcut": "C"}, ["resnet34"]),
        ("resnet50", {}, ["resnet50"]),
        ("resnet101", {}, ["resnet101"]),
        ("resnet152", {"num_classes": 7, "in_channels": 1}, ["resnet152"]),
        ("plain34", {}, ["resnet34", "plain34"]),
        ("resnet56", {"shortcut": "B"}, ["resnet56"]),
        ("plain110", {}, ["resnet110", "plain110"]),
    ],
)
def test_architecture_is_inferred_from_shapes(name: str, kwargs: dict, expected: list[str]):
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        state = build_network(name, **kwargs).state_dict()
    arch = infer_architecture(state)
    assert arch.names == expected
    assert arch.kwargs["num_classes"] == kwargs.get("num_classes", 1000 if name[-2:] not in ("56", "10") else 10)
    assert arch.kwargs.get("in_channels", 3) == kwargs.get("in_channels", 3)
    assert arch.kwargs["shortcut"] == kwargs.get("shortcut", "B" if len(expected) == 1 else "A")


def test_compact_keys_folds_blocks_and_modules():
    universe = {f"layer3.{i}.{m}.{p}": 0 for i in range(6) for m in ("conv1", "bn1") for p in ("weight", "bias")}
    missing = [k for k in universe if k.startswith(("layer3.2.", "layer3.3.", "layer3.5."))] + ["layer3.0.bn1.bias"]
    assert compact_keys(missing, universe) == "layer3.0.bn1.bias, layer3.2-3.*, layer3.5.*"
    assert compact_keys(["layer3.1.bn1.weight", "layer3.1.bn1.bias"], universe) == "layer3.1.bn1.*"
    many = [f"k{i}" for i in range(9)]
    assert compact_keys(many, {}, limit=3) == "k0, k1, k2 (+6 more)"


def test_our_training_checkpoint_converts_to_final_weights(tiny_run: Path, tmp_path: Path):
    original = load_checkpoint(tiny_run)
    ckpt, notes, _ = convert_file(tiny_run, tmp_path / "final.pt")  # a run directory means its checkpoint.pt
    saved = load_checkpoint(tmp_path / "final.pt")
    assert notes == []
    for key in ("model_name", "model_kwargs", "iteration", "classes", "input_size", "dataset", "config"):
        assert getattr(saved, key) == getattr(original, key), key
    assert saved.training is None and not {"optimizer", "rng", "loader", "schedule"} & set(saved.to_dict())
    assert torch.equal(saved.preprocessing["mean"], original.preprocessing["mean"])
    model = original.build_model()
    torch.testing.assert_close(outputs(saved.build_model(), 8, 1), outputs(model, 8, 1), rtol=0, atol=0)
    with pytest.raises(UserError, match="is a resnet8 checkpoint; drop --model resnet20"):
        load_any(tiny_run, model="resnet20")


def test_safetensors_round_trip_keeps_weights_and_metadata(tiny_run: Path, tmp_path: Path):
    original = load_checkpoint(tiny_run)
    convert_file(tiny_run, tmp_path / "w.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(original.state_dict)  # the weights alone: loadable anywhere
        meta = f.metadata()
    assert meta["format"] == "resnet-safetensors/1" and json.loads(meta["metadata"])["classes"] == original.classes
    back = read_weights(tmp_path / "w.safetensors")
    assert back["model_name"] == "resnet8" and back["model_kwargs"] == original.model_kwargs
    for key, value in original.preprocessing.items():
        assert value == back["preprocessing"][key] if key == "kind" else torch.equal(value, back["preprocessing"][key])
    assert all(torch.equal(back["model"][k], v) for k, v in original.state_dict.items())
    # And back to a .pt checkpoint, from which predictions are identical.
    ckpt, _, _ = convert_file(tmp_path / "w.safetensors", tmp_path / "again.pt")
    assert ckpt.config == original.config
    torch.testing.assert_close(
        outputs(load_checkpoint(tmp_path / "again.pt").build_model(), 8, 1),
        outputs(Checkpoint.from_dict(back).build_model(), 8, 1),
    )


def test_a_foreign_safetensors_file_is_a_bare_state_dict(tmp_path: Path):
    from safetensors.torch import save_file

    model = randomized(build_network("resnet18", num_classes=5))
    save_file(model.state_dict(), str(tmp_path / "foreign.safetensors"))
    ckpt = load_any(tmp_path / "foreign.safetensors").checkpoint
    assert ckpt.model_name == "resnet18" and ckpt.classes == ["0", "1", "2", "3", "4"]
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        read_weights(tmp_path / "junk.safetensors")


class MakesAFile:
    """Unpickling this calls Path.touch(marker): what a malicious checkpoint would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_runs_code_is_refused(writer: str, tmp_path: Path, capsys):
    marker, evil, out = tmp_path / "pwned", tmp_path / "evil.pth", tmp_path / "out.pt"
    payload = {"conv1.weight": MakesAFile(marker)}
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    assert main(["convert", str(evil), "--to", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused" in err and "could run code" in err
    assert not marker.exists() and not out.exists()
    assert main(["predict", str(evil), "--checkpoint", str(evil)]) == 2  # every reader goes the same way
    assert not marker.exists()


def test_files_that_are_not_weights_are_refused_in_one_line(tmp_path: Path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "notes.pt")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(UserError, match="expected a dict"):
        load_any(tmp_path / "list.pt")
    with pytest.raises(UserError, match="not a state_dict"):
        load_any(tmp_path / "notes.pt")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_any(tmp_path / "text.pth")
    with pytest.raises(UserError, match="no checkpoint at"):
        load_any(tmp_path / "missing.pth")


def test_real_torchvision_weights_convert_with_identical_outputs(tmp_path: Path):
    tv_models = pytest.importorskip("torchvision.models", reason="torchvision is not importable here")
    torch.manual_seed(0)
    ref = randomized(tv_models.resnet18(weights=None))
    torch.save(ref.state_dict(), tmp_path / "tv18.pth")
    ckpt = load_any(tmp_path / "tv18.pth").checkpoint
    torch.testing.assert_close(outputs(ckpt.build_model(), 64), outputs(ref, 64), rtol=0, atol=0)
