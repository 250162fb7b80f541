"""Equivalence with torchvision's ResNets (runs where torchvision imports: the GPU machine, or a side venv).

torchvision is never a dependency of the project; it is only the side-by-side reference here. Without it,
``test_state_dict_layout_matches_torchvision_naming`` still checks the key layout against torchvision's
documented naming scheme.
"""

from __future__ import annotations

import pytest
import torch

from resnet.models import build_network
from resnet.paper import TABLE1_LAYERS

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_keys(depth: int) -> list[str]:
    """torchvision ResNet state_dict keys, written from its naming scheme (conv1/bn1/layerN.i.*/downsample/fc)."""
    bottleneck = depth >= 50
    keys = ["conv1.weight", *(f"bn1.{b}" for b in BN)]
    in_planes = 64
    for s, (n, width) in enumerate(zip(TABLE1_LAYERS[depth], (64, 128, 256, 512), strict=True)):
        out = width * (4 if bottleneck else 1)
        for i in range(n):
            p = f"layer{s + 1}.{i}"
            for c in range(1, 4 if bottleneck else 3):
                keys += [f"{p}.conv{c}.weight", *(f"{p}.bn{c}.{b}" for b in BN)]
            if i == 0 and (s > 0 or in_planes != out):
                keys += [f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{b}" for b in BN)]
            in_planes = out
    return [*keys, "fc.weight", "fc.bias"]


@pytest.mark.parametrize("depth", sorted(TABLE1_LAYERS))
def test_state_dict_layout_matches_torchvision_naming(depth: int):
    assert list(build_network(f"resnet{depth}").state_dict()) == torchvision_keys(depth)


@pytest.mark.parametrize("depth", sorted(TABLE1_LAYERS))
def test_torchvision_state_dict_loads_strictly_and_gives_the_same_outputs(depth: int):
    tv_models = pytest.importorskip("torchvision.models", reason="torchvision is not importable here")
    torch.manual_seed(depth)
    ref = getattr(tv_models, f"resnet{depth}")(weights=None).eval()
    # Random BN statistics so that the comparison exercises every tensor, not just the init values.
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    ours = build_network(f"resnet{depth}", bottleneck_stride="3x3").eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)
