"""timm's model interface on our ResNet, checked against timm's documented conventions (timm is not installed).

timm's documentation (Feature Extraction; the model API): ``forward_features`` + ``forward_head`` compose to
``forward``; ``forward_head(x, pre_logits=True)`` gives the pooled ``num_features`` vector;
``reset_classifier(0)`` removes the classifier so ``forward`` returns pooled features; ``forward_intermediates``
takes ``indices`` (None: all, an int n: the last n, a sequence: those), ``stop_early``, ``norm``,
``output_fmt`` and ``intermediates_only``, and numbers a ResNet's feature points as its ``feature_info`` does
(0 the stem's activation, then the stages).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import resnet
from resnet.errors import UserError
from resnet.interop.hub import PretrainedResNet
from resnet.models import ResNet


def _x(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(n))


@pytest.fixture(scope="module")
def r20() -> PretrainedResNet:
    return resnet.create_model("resnet20").eval()


def test_create_model_returns_the_typed_class_with_timm_attributes(r20):
    assert isinstance(r20, PretrainedResNet) and isinstance(r20, ResNet)
    assert (r20.num_classes, r20.num_features, r20.drop_rate, r20.global_pool) == (10, 64, 0.0, "avg")
    assert r20.get_classifier() is r20.fc and r20.fc.out_features == 10
    assert resnet.create_model("resnet50", num_classes=7).num_features == 2048  # a bottleneck's 4c


def test_forward_head_composes_with_the_last_map_to_forward(r20):
    x = _x()
    with torch.no_grad():
        last, maps = r20.forward_intermediates(x)
        assert torch.equal(last, maps[-1]) and torch.equal(last, r20.forward_features(x)[-1])
        torch.testing.assert_close(r20.forward_head(last), r20(x), rtol=0, atol=0)
        pooled = r20.forward_head(last, pre_logits=True)
    assert pooled.shape == (2, r20.num_features)
    torch.testing.assert_close(pooled, last.mean((2, 3)))


def test_reset_classifier_follows_timm():
    model = resnet.create_model("resnet20").eval()
    model.reset_classifier(5)
    assert model.num_classes == 5 and model(_x()).shape == (2, 5) and model.get_classifier().out_features == 5
    model.reset_classifier(0)  # no classifier: forward gives the pooled features
    with torch.no_grad():
        assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
        torch.testing.assert_close(model(_x()), model.forward_head(model.forward_intermediates(_x())[0], True))
    model.reset_classifier(3, global_pool="avg")
    assert model(_x()).shape == (2, 3)
    with pytest.raises(ValueError, match="global_pool 'max' is not supported.*'avg'"):
        model.reset_classifier(3, global_pool="max")
    with pytest.raises(ValueError, match="num_classes must be 0"):
        model.reset_classifier(-1)


def test_forward_intermediates_indices_as_timm_numbers_them():
    model = resnet.create_model("resnet18").eval()
    x = _x(1, 64)
    with torch.no_grad():
        last, maps = model.forward_intermediates(x)
        # 0: the stem's activation (stride 2), then C2..C5 (strides 4, 8, 16, 32), as timm's feature_info
        assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 2]
        assert [m.shape[1] for m in maps] == [64, 64, 128, 256, 512]
        backbone = resnet.create_model("resnet18", features_only=True).eval()
        backbone.load_state_dict(model.state_dict(), strict=False)
        for a, b in zip(backbone(x), maps, strict=True):
            assert torch.equal(a, b)  # the same maps the backbone wrapper returns
        assert [m.shape[-1] for m in model.forward_intermediates(x, indices=2, intermediates_only=True)] == [4, 2]
        assert [m.shape[-1] for m in model.forward_intermediates(x, [0, -1], intermediates_only=True)] == [32, 2]
        early, taken = model.forward_intermediates(x, indices=[1, 2], stop_early=True)
        assert early.shape[-1] == 8 and [m.shape[-1] for m in taken] == [16, 8]  # stopped after the deepest
        late, _ = model.forward_intermediates(x, indices=[1, 2])
        assert torch.equal(late, last)  # without stop_early the final map is the last stage's
        normed, _ = model.forward_intermediates(x, norm=True)
        assert torch.equal(normed, last)  # a ResNet has no final norm: norm changes nothing
    for bad in (6, [5], [-6]):
        with pytest.raises(ValueError, match="indices"):
            model.forward_intermediates(x, indices=bad)
    with pytest.raises(ValueError, match="output_fmt 'NHWC' is not supported"):
        model.forward_intermediates(x, output_fmt="NHWC")


def test_drop_rate_is_off_by_default_and_drops_before_fc_in_training():
    torch.manual_seed(0)
    plain = resnet.create_model("resnet20")
    dropped = resnet.create_model("resnet20", drop_rate=0.5)
    dropped.load_state_dict(plain.state_dict())
    assert plain.drop_rate == 0.0 and dropped.drop_rate == 0.5
    x = _x(4)
    plain.eval(), dropped.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped(x), plain(x), rtol=0, atol=0)  # eval: dropout is the identity
        dropped.train()
        last = dropped.forward_intermediates(x)[0]
        pooled = dropped.forward_head(last, pre_logits=True)
    assert (pooled == 0).float().mean() > 0.3  # about half the pooled features dropped in training
    assert set(dropped.state_dict()) == set(plain.state_dict())  # the same weights: nothing added


def test_bad_timm_keywords_fail_in_one_line():
    with pytest.raises(UserError, match="global_pool 'catavgmax' is not supported"):
        resnet.create_model("resnet20", global_pool="catavgmax")
    with pytest.raises(UserError, match=r"drop_rate must be in \[0, 1\)"):
        resnet.create_model("resnet20", drop_rate=1.5)
    with pytest.raises(UserError, match="source='akamaster' names the origin of checkpoint_path"):
        resnet.create_model("resnet20", source="akamaster")


def test_an_int_out_indices_takes_the_last_maps_as_in_timm():
    backbone = resnet.create_model("resnet18", features_only=True, out_indices=2)
    assert backbone.out_indices == (3, 4) and backbone.feature_info.reduction() == [16, 32]
    with pytest.raises(ValueError, match="asks for the last 6 of 5 feature maps"):
        resnet.create_model("resnet18", features_only=True, out_indices=6)
