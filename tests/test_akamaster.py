"""akamaster/pytorch_resnet_cifar10 weights convert exactly; layouts shapes cannot show are never guessed silently.

The reference network below is a faithful copy of their ``resnet.py`` (option A: zeros padded on BOTH sides of
the channels; ``linear`` head), saved the way their ``trainer.py`` saves it (DataParallel, best_prec1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import resnet
from resnet.checkpoint import load_checkpoint
from resnet.cli import main
from resnet.data.classes import IMAGENET_MEAN, IMAGENET_STD
from resnet.errors import UserError
from resnet.interop.convert import convert_file, load_any
from resnet.interop.stats import CIFAR10_MEAN, preprocessing_stats
from resnet.models import build_network


class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class TheirBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, option: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.shortcut = LambdaLayer(
                    lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
                )
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class TheirResNet(nn.Module):
    def __init__(self, n: int, num_classes: int = 10, option: str = "A"):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, n, 1, option)
        self.layer2 = self._make_layer(32, n, 2, option)
        self.layer3 = self._make_layer(64, n, 2, option)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes: int, n: int, stride: int, option: str) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(TheirBlock(self.in_planes, planes, s, option))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


def their_net(depth: int, option: str = "A", seed: int = 0) -> TheirResNet:
    """Their net with random weights and random BN statistics (so that every misplaced channel shows)."""
    torch.manual_seed(seed)
    net = TheirResNet((depth - 2) // 6, option=option)
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return net.eval()


def save_their_file(net: TheirResNet, path: Path) -> Path:
    """Their trainer.py: ``save_checkpoint({'epoch', 'state_dict': model.state_dict(), 'best_prec1'})`` of a
    DataParallel model, so every key starts with ``module.``."""
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"epoch": 200, "state_dict": state, "best_prec1": 91.73}, path)
    return path


def images(n: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)


def their_logits(net: TheirResNet, x: torch.Tensor) -> torch.Tensor:
    """Their test transform: ToTensor (pixels / 255) then Normalize with ImageNet's mean/std."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return net((x.float() / 255 - mean) / std)


@pytest.mark.parametrize("depth", [20, 56])
def test_akamaster_weights_convert_to_identical_logits(depth: int, tmp_path: Path):
    net = their_net(depth)
    src = save_their_file(net, tmp_path / f"resnet{depth}-12fca82f.th")
    ckpt, notes, _ = convert_file(src, tmp_path / "ours.pt", source="akamaster")
    assert ckpt.model_name == f"resnet{depth}" and ckpt.model_kwargs == {"num_classes": 10, "shortcut": "A"}
    assert ckpt.dataset == "cifar10" and ckpt.classes[:2] == ["airplane", "automobile"]
    assert any("best_prec1 = 91.73" in n for n in notes) and any("ImageNet mean/std" in n for n in notes)
    back = load_checkpoint(tmp_path / "ours.pt")
    torch.testing.assert_close(back.normalizer().mean.flatten(), torch.tensor(IMAGENET_MEAN))
    x = images()
    with torch.no_grad():
        ours = back.build_model()(back.normalizer()(x))
    theirs = their_logits(net, x)
    assert (ours - theirs).abs().max().item() < 1e-5
    assert theirs.std() > 0.1  # the logits carry signal: equality is not trivial


def test_the_naive_load_would_compute_another_function(tmp_path: Path):
    """Renamed by hand and converted without --from: same shapes, strict loading passes, other outputs."""
    net = their_net(20)
    src = save_their_file(net, tmp_path / "r20.th")
    with pytest.raises(UserError, match="resnet convert .*r20.th --to r20.pt --from akamaster") as hint:
        load_any(src)
    assert "source='akamaster'" in str(hint.value)  # ... and the Python call, which create_model accepts:
    model = resnet.create_model("resnet20", checkpoint_path=src, source="akamaster").eval()
    norm = load_any(src, source="akamaster").checkpoint.normalizer()
    with torch.no_grad():
        assert (model(norm(images())) - their_logits(net, images())).abs().max().item() < 1e-5
    renamed = {k.removeprefix("module.").replace("linear.", "fc."): v for k, v in net.state_dict().items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    naive = load_any(tmp_path / "renamed.pth", model="resnet20", preprocessing=preprocessing_stats("imagenet"))
    assert any("--from akamaster" in n for n in naive.notes)  # the placement it assumed is said, not hidden
    x = images()
    with torch.no_grad():
        wrong = naive.model(naive.checkpoint.normalizer()(x))
    assert (wrong - their_logits(net, x)).abs().max().item() > 0.1


def test_option_b_akamaster_nets_map_their_projections(tmp_path: Path):
    net = their_net(20, option="B")
    ckpt, _, model = load_any(save_their_file(net, tmp_path / "b.th"), source="akamaster")
    assert ckpt.model_kwargs["shortcut"] == "B"
    x = images()
    with torch.no_grad():
        assert (model(ckpt.normalizer()(x)) - their_logits(net, x)).abs().max().item() < 1e-5


def test_cli_convert_from_akamaster_and_evaluate_on_real_cifar(cifar_subset: Path, tmp_path: Path, capsys):
    src = save_their_file(their_net(20), tmp_path / "r20.th")
    assert main(["convert", str(src), "--to", str(tmp_path / "r20.pt"), "--from", "akamaster"]) == 0
    out = capsys.readouterr().out
    assert "resnet20(num_classes=10, shortcut=A)" in out and "note: akamaster" in out
    assert main(["eval", str(tmp_path / "r20.pt"), "--data-dir", str(cifar_subset)]) == 0
    out = capsys.readouterr().out
    assert "test split (1017 images)" in out and "airplane" in out
    assert main(["convert", str(src), "--to", str(tmp_path / "r20.safetensors"), "--from", "akamaster"]) == 0
    assert main(["eval", str(tmp_path / "r20.safetensors"), "--data-dir", str(cifar_subset), "--limit", "100"]) == 0
    assert "test split (100 images)" in capsys.readouterr().out


def test_damaged_or_foreign_files_under_from_akamaster_fail_in_one_line(tmp_path: Path):
    state = {f"module.{k}": v for k, v in their_net(20).state_dict().items()}
    cases = {
        "nohead": ({k: v for k, v in state.items() if k != "module.linear.bias"}, "no linear.weight / linear.bias"),
        "noconv2": ({k: v for k, v in state.items() if "layer2.1.conv2" not in k}, "layer2.1 is not a basic block"),
        "imagenet": (
            {k.replace("fc.", "linear."): v for k, v in build_network("resnet18").state_dict().items()},
            "conv1 is 7x7; akamaster.s nets are CIFAR nets",
        ),
        "tv": (build_network("resnet18").state_dict(), "no linear.weight"),
    }
    for name, (bad, msg) in cases.items():
        torch.save({"state_dict": bad, "best_prec1": 90.0}, tmp_path / f"{name}.th")
        with pytest.raises(UserError, match=msg):
            convert_file(tmp_path / f"{name}.th", tmp_path / f"{name}.pt", source="akamaster")
        assert not (tmp_path / f"{name}.pt").exists()


def test_preprocessing_can_be_set_for_any_source(tmp_path: Path, capsys):
    src = save_their_file(their_net(20), tmp_path / "r20.th")
    ckpt = load_any(src, source="akamaster", preprocessing=preprocessing_stats("cifar10")).checkpoint
    torch.testing.assert_close(ckpt.preprocessing["mean"].flatten(), torch.tensor(CIFAR10_MEAN))
    args = ["convert", str(src), "--to", str(tmp_path / "o.pt"), "--from", "akamaster"]
    assert main([*args, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]) == 0
    assert load_checkpoint(tmp_path / "o.pt").preprocessing["std"].flatten().tolist() == [0.25] * 3
    for bad, msg in [
        (["--mean", "0.5,0.5,0.5"], "go together"),
        (["--mean", "0.5,x,0.5", "--std", "1,1,1"], "comma-separated numbers"),
        (["--mean", "0.5,0.5,0.5", "--std", "1,0,1"], "positive std"),
        (["--mean", "0.5,0.5", "--std", "1,1"], "3 channels but 2"),
        (["--preprocessing", "imagenet", "--mean", "0,0,0", "--std", "1,1,1"], "not both"),
    ]:
        assert main([*args, "--to", str(tmp_path / "bad.pt"), *bad]) == 2, bad
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "bad.pt").exists()


def test_from_flags_that_do_not_fit_are_refused(tmp_path: Path, capsys):
    src = save_their_file(their_net(20), tmp_path / "r20.th")
    with pytest.raises(UserError, match="their nets are residual"):
        load_any(src, source="akamaster", model="plain20")
    ours = tmp_path / "ours.pt"
    convert_file(src, ours, source="akamaster")
    with pytest.raises(UserError, match="drop --from akamaster"):
        load_any(ours, source="akamaster")


def test_bare_bottleneck_weights_say_which_stride_they_assumed(tmp_path: Path):
    torch.save(build_network("resnet50", bottleneck_stride="3x3").state_dict(), tmp_path / "r50.pth")
    notes = load_any(tmp_path / "r50.pth").notes
    assert any("--bottleneck-stride 1x1" in n for n in notes)
    assert not any("bottleneck" in n for n in load_any(tmp_path / "r50.pth", source="torchvision").notes)
    assert not any("bottleneck" in n for n in load_any(tmp_path / "r50.pth", bottleneck_stride="1x1").notes)


def _top1(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("top-1 error:"))


def test_every_engine_path_evaluates_converted_weights_alike(cifar_subset: Path, tmp_path: Path, capsys):
    """Converted weights record no recipe: every route of `eval` uses their dataset's test split all the same."""
    pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
    src = save_their_file(their_net(20), tmp_path / "r20.th")
    assert main(["eval", str(src), "--data-dir", str(cifar_subset)]) == 2  # not ours: the call that converts it
    err = capsys.readouterr().err
    assert f"convert it first (`resnet convert {src} --to r20.pt --from akamaster`)" in err
    ckpt = tmp_path / "r20.pt"
    assert main(["convert", str(src), "--to", str(ckpt), "--from", "akamaster"]) == 0
    capsys.readouterr()
    data = ["--data-dir", str(cifar_subset)]
    assert main(["eval", str(ckpt), *data]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resnet20 (converted weights), test split (1017 images)")
    reference = _top1(out)
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "r20.onnx")]) == 0
    assert main(["export", "--checkpoint", str(ckpt), "--format", "pt2"]) == 0
    capsys.readouterr()
    for args in (
        [str(ckpt), "--backend", "torch"],
        [str(ckpt), "--backend", "onnxruntime"],
        [str(tmp_path / "r20.onnx")],
        [str(tmp_path / "r20.pt2")],
    ):
        assert main(["eval", *args, *data]) == 0, args
        out = capsys.readouterr().out
        assert "test split (1017 images)" in out and _top1(out) == reference, args
    # predict: the same probabilities from the checkpoint, its ONNX export and its .pt2 program
    image = tmp_path / "img.png"
    Image.fromarray(images(1)[0].permute(1, 2, 0).numpy()).save(image)
    docs = []
    for weights in ("r20.pt", "r20.onnx", "r20.pt2"):
        assert main(["predict", str(image), "--checkpoint", str(tmp_path / weights), "--json"]) == 0
        docs.append(json.loads(capsys.readouterr().out)["predictions"][0]["top"])
    for doc in docs[1:]:
        assert [p["class"] for p in doc] == [p["class"] for p in docs[0]]
        assert [p["probability"] for p in doc] == pytest.approx([p["probability"] for p in docs[0]], abs=1e-5)
