"""The package as a library: resnet.load, timm-style create_model (checkpoint_path, new heads, features_only),
torch.hub from a checkout, save_pretrained/from_pretrained, and fine-tuning runs (model.init_from)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import resnet
from resnet.config import load_config
from resnet.errors import UserError
from resnet.interop.convert import convert_file
from resnet.models.features import FeatureExtractor
from resnet.train.loop import fit
from test_akamaster import images, save_their_file, their_logits, their_net

from conftest import ROOT, tiny_overrides


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """akamaster's ResNet-20 layout converted to our checkpoint, and their reference net."""
    root = tmp_path_factory.mktemp("conv")
    net = their_net(20)
    convert_file(save_their_file(net, root / "r20.th"), root / "r20.pt", source="akamaster")
    return root / "r20.pt", net


def test_load_gives_the_eval_model_with_its_description(converted):
    path, net = converted
    model = resnet.load(path)
    assert not model.training and model.pretrained_cfg["model_name"] == "resnet20"
    cfg = model.pretrained_cfg
    assert cfg["classes"][0] == "airplane" and cfg["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    x = images()
    norm = resnet.load_checkpoint(path).normalizer()
    assert (logits(model, norm(x)) - their_logits(net, x)).abs().max() < 1e-5
    direct = resnet.load(path.with_name("r20.th"), source="akamaster")  # their file, no convert step
    torch.testing.assert_close(logits(direct, norm(x)), logits(model, norm(x)))


def test_checkpoint_path_keeps_or_replaces_the_classifier(converted):
    path, _ = converted
    ref = resnet.load(path)
    same = resnet.create_model("resnet20", checkpoint_path=path)
    assert same.training  # a new model, ready to train
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), ref.state_dict().values(), strict=True))
    tuned = resnet.create_model("resnet20", checkpoint_path=path, num_classes=5)
    assert tuned.fc.weight.shape == (5, 64) and tuned.pretrained_cfg["classes"] == ["0", "1", "2", "3", "4"]
    body = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(tuned.state_dict()[k], v) for k, v in body.items())
    with pytest.raises(UserError, match="holds resnet20 weights; call create_model\\('resnet20'"):
        resnet.create_model("resnet32", checkpoint_path=path)
    with pytest.raises(UserError, match="built with shortcut='A'; drop shortcut='B'"):
        resnet.create_model("resnet20", checkpoint_path=path, shortcut="B")
    with pytest.raises(UserError, match=r"conv1.weight: file \[16, 3, 3, 3\], model \[16, 1, 3, 3\]"):
        resnet.create_model("resnet20", checkpoint_path=path, in_chans=1)


def test_timm_keywords_pretrained_and_in_chans():
    with pytest.raises(UserError, match="downloads no weights.*resnet convert"):
        resnet.create_model("resnet50", pretrained=True)
    assert resnet.create_model("resnet20", in_chans=1).conv1.in_channels == 1
    with pytest.raises(UserError, match="disagree"):
        resnet.create_model("resnet20", in_chans=1, in_channels=3)
    with pytest.raises(UserError, match="features_only=True"):
        resnet.create_model("resnet20", out_indices=(1,))
    with pytest.raises(ValueError, match="valid keywords"):
        resnet.create_model("plain20", shortcut="B")


def test_features_only_returns_the_requested_maps(converted):
    backbone = resnet.create_model("resnet50", features_only=True, out_indices=(0, 2, -1))
    assert isinstance(backbone, FeatureExtractor) and not hasattr(backbone, "fc")
    maps = backbone(torch.zeros(1, 3, 224, 224))
    assert [tuple(m.shape[1:]) for m in maps] == [(64, 112, 112), (512, 28, 28), (2048, 7, 7)]
    assert backbone.feature_info.channels() == [64, 512, 2048] and backbone.feature_info.reduction() == [2, 8, 32]
    path, _ = converted
    cifar = resnet.create_model("resnet20", checkpoint_path=path, features_only=True, out_indices=(1, 2))
    assert not hasattr(cifar, "layer3") and cifar.feature_info.reduction() == [1, 2]
    full = resnet.load(path)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(cifar.eval()(x)[1], full.forward_features(x)[1])
    for bad in [(4,), (1, 1), (-5,), ()]:
        with pytest.raises(ValueError, match="out_indices"):
            resnet.create_model("resnet20", features_only=True, out_indices=bad)


def test_torch_hub_loads_from_this_checkout(converted):
    path, _ = converted
    model = torch.hub.load(str(ROOT), "resnet20", source="local", checkpoint_path=str(path))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(logits(model, x), logits(resnet.load(path), x))
    assert torch.hub.load(str(ROOT), "resnet50", source="local", num_classes=7).fc.out_features == 7
    with pytest.raises(UserError, match="downloads no weights"):
        torch.hub.load(str(ROOT), "resnet18", source="local", pretrained=True)


def test_save_pretrained_and_from_pretrained_round_trip(converted, tmp_path: Path):
    path, _ = converted
    tuned = resnet.create_model("resnet20", checkpoint_path=path, num_classes=5)
    resnet.save_pretrained(tuned, tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf/config.json").read_text())
    assert cfg["model_name"] == "resnet20" and cfg["model_kwargs"]["num_classes"] == 5
    back = resnet.from_pretrained(tmp_path / "hf")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(logits(back, x), logits(tuned, x))
    assert back.pretrained_cfg == tuned.pretrained_cfg and not back.training
    torch.testing.assert_close(logits(resnet.load(tmp_path / "hf"), x), logits(tuned, x))  # load() knows folders
    resnet.save_pretrained(resnet.load_checkpoint(path), tmp_path / "ck")  # a Checkpoint saves too
    assert resnet.from_pretrained(tmp_path / "ck").pretrained_cfg["classes"][0] == "airplane"


def test_damaged_pretrained_folders_fail_in_one_line(converted, tmp_path: Path):
    with pytest.raises(UserError, match="expected config.json and model.safetensors"):
        resnet.from_pretrained(tmp_path)
    resnet.save_pretrained(resnet.load(converted[0]), tmp_path / "hf")
    cfg_file = tmp_path / "hf/config.json"
    cfg = json.loads(cfg_file.read_text())
    for damage, msg in [
        ("{not json", "not valid JSON"),
        (json.dumps({**cfg, "format": "other"}), "not a resnet-paper model folder"),
        (json.dumps({**cfg, "preprocessing": {"kind": "x"}}), "damaged model description"),
        (json.dumps({**cfg, "model_name": "resnet32"}), "weights do not fit resnet32"),
    ]:
        cfg_file.write_text(damage)
        with pytest.raises(UserError, match=msg):
            resnet.from_pretrained(tmp_path / "hf")
    with pytest.raises(UserError, match="needs a classifier"):
        resnet.save_pretrained(nn.Linear(2, 2), tmp_path / "x")


def test_count_macs_takes_a_shape_with_or_without_batch():
    model = resnet.create_model("resnet20")
    one = resnet.count_macs(model, (3, 32, 32))
    assert resnet.count_macs(model, (1, 3, 32, 32)) == one and resnet.count_macs(model, (4, 3, 32, 32)) == 4 * one
    with pytest.raises(ValueError, match="input_shape"):
        resnet.count_macs(model, (32, 32))


def test_public_api_is_listed_and_typed():
    assert set(resnet.__all__) <= set(dir(resnet))
    assert (Path(resnet.__file__).parent / "py.typed").is_file()
    for key in ("checkpoint_path", "num_classes", "in_chans", "features_only", "out_indices", "shortcut"):
        assert key in resnet.create_model.__doc__


def _foreign_resnet8(path: Path, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = resnet.models.build_network("resnet8", in_channels=1, num_classes=7).state_dict()
    torch.save(state, path)
    return state


def test_a_training_run_starts_from_converted_weights_with_a_new_head(tmp_path: Path):
    """Digits (10 classes) from 7-class weights; a tiny lr keeps the weights where they started."""
    src = _foreign_resnet8(tmp_path / "src.pth", seed=1)
    convert_file(tmp_path / "src.pth", tmp_path / "src.pt", model="resnet8", preprocessing=((0.3,), (0.2,)))
    extra = {"model.init_from": str(tmp_path / "src.pt"), "optim.lr": 1e-7, "schedule.iterations": 4}
    fit(load_config(None, tiny_overrides(**extra)), tmp_path / "run", echo=False)
    run = resnet.load_checkpoint(tmp_path / "run")
    assert run.state_dict["fc.weight"].shape == (10, 64)
    assert (run.state_dict["layer2.0.conv1.weight"] - src["layer2.0.conv1.weight"]).abs().max() < 1e-5
    assert run.normalizer().mean.flatten().tolist() == pytest.approx([0.3])  # the weights' own preprocessing
    scratch = resnet.models.build_network("resnet8", in_channels=1).state_dict()["layer2.0.conv1.weight"]
    assert (scratch - src["layer2.0.conv1.weight"]).abs().max() > 0.1  # so the check above can fail
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"weights of {tmp_path / 'src.pt'} (resnet8); new classifier: 7 -> 10 classes" in log

    # Resume restores the run's own checkpoint, whatever init_from now holds.
    _foreign_resnet8(tmp_path / "src.pth", seed=2)
    convert_file(tmp_path / "src.pth", tmp_path / "src.pt", model="resnet8")
    fit(load_config(None, tiny_overrides(**{**extra, "schedule.iterations": 6})), tmp_path / "run", echo=False)
    resumed = resnet.load_checkpoint(tmp_path / "run")
    assert resumed.iteration == 6
    assert (tmp_path / "run" / "train.log").read_text().count("new classifier") == 1  # not on resume
    assert (resumed.state_dict["layer2.0.conv1.weight"] - src["layer2.0.conv1.weight"]).abs().max() < 1e-5


def test_init_from_that_does_not_fit_is_refused(tmp_path: Path):
    _foreign_resnet8(tmp_path / "src.pth", seed=1)
    convert_file(tmp_path / "src.pth", tmp_path / "src.pt", model="resnet8")
    with pytest.raises(UserError, match="holds resnet8 weights but the recipe trains resnet14"):
        fit(
            load_config(
                None, tiny_overrides(**{"model.name": "resnet14", "model.init_from": str(tmp_path / "src.pt")})
            ),
            tmp_path / "bad",
            echo=False,
        )
    with pytest.raises(UserError, match="model.init_from: no checkpoint at .*nope.pt"):
        fit(
            load_config(None, tiny_overrides(**{"model.init_from": str(tmp_path / "nope.pt")})),
            tmp_path / "b2",
            echo=False,
        )


def test_commands_take_a_pretrained_folder(converted, cifar_subset: Path, tmp_path: Path, capsys):
    from resnet.cli import main

    resnet.save_pretrained(resnet.load(converted[0]), tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), "--to", str(tmp_path / "back.pt")]) == 0
    assert resnet.load_checkpoint(tmp_path / "back.pt").preprocessing["mean"].flatten()[0].item() == pytest.approx(
        0.485
    )
    assert main(["eval", str(tmp_path / "hf"), "--data-dir", str(cifar_subset), "--limit", "50"]) == 0
    assert "test split (50 images)" in capsys.readouterr().out
