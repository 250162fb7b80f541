"""The inference fast path: BN folded into the convolutions, channels_last, an optional dtype and ``torch.compile``.

At test time a BN layer is a fixed per-channel affine map, y = (x - mean) / sqrt(var + eps) * gamma + beta.
Every BN of the paper's nets comes right after a convolution (section 3.4: "We adopt batch normalization
right after each convolution and before activation"), so the affine map can be folded into that conv's
weights and a bias: W' = W * s, b' = beta - mean * s with s = gamma / sqrt(var + eps). That removes one
full pass over every feature map. channels_last (NHWC) is the layout oneDNN's CPU kernels and the GPU's
tensor cores prefer. Together they are the published 1.65x CPU recipe (PyTorch PR #53805, FX
``prepare_for_inference``); figures for this project are in docs/benchmarks.md.

:func:`optimize_for_inference` returns a new eval-only :class:`InferenceModel`; the original model is not
modified. Its outputs equal the eval-mode outputs of the original to float tolerance (tests/test_inference.py,
for option A, B, C and plain nets).
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn

# Our modules name a conv and the BN that consumes its output conv1/bn1, conv2/bn2, conv3/bn3 (stem and
# blocks, models/network.py and models/blocks.py), and a projection shortcut Sequential(conv1x1, BN).
_CONV_BN_NAMES = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("0", "1"))


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias computing ``bn(conv(x))`` of the eval-mode BN (running statistics), in float64 math."""
    if conv.out_channels != bn.num_features:
        raise ValueError(f"cannot fold a BN of {bn.num_features} channels into a conv of {conv.out_channels}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BN that tracks no running statistics")
    # float64 so that folding itself adds no error beyond the final rounding to float32.
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]  # Conv2d keeps tuple[int, ...]; its constructor types pairs
        stride=conv.stride,  # type: ignore[arg-type]  # Conv2d keeps tuple[int, ...]; its constructor types pairs
        padding=conv.padding,  # type: ignore[arg-type]  # Conv2d keeps tuple[int, ...]; its constructor types pairs
        dilation=conv.dilation,  # type: ignore[arg-type]  # Conv2d keeps tuple[int, ...]; its constructor types pairs
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device)
    assert fused.bias is not None  # made with bias=True
    with torch.no_grad():
        fused.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
        fused.bias.copy_(((bias - mean) * scale + beta).to(conv.weight.dtype))
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BN folded into the conv before it (and replaced by ``nn.Identity``).

    Raises ``ValueError`` if a BN is left over that does not directly follow a conv of ours, rather than
    returning a model that silently computes something else.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        for conv_name, bn_name in _CONV_BN_NAMES:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fold_conv_bn(conv, bn))
                setattr(module, bn_name, nn.Identity())
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"cannot fold {len(left)} BN layer(s) that do not follow a conv: {', '.join(left[:3])}")
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


class InferenceModel(nn.Module):
    """An eval-only wrapper: converts the input to the net's layout and dtype, returns float32 logits.

    ``train(True)`` raises: the folded net has no BN left to train.
    """

    def __init__(self, net: nn.Module, *, channels_last: bool, dtype: torch.dtype, freeze: bool = False) -> None:
        super().__init__()
        self.net, self.channels_last, self.dtype, self.freeze = net, channels_last, dtype, freeze
        super().train(False)

    def train(self, mode: bool = True) -> InferenceModel:
        if mode:
            raise RuntimeError("an InferenceModel is eval-only (its BN layers are folded); train the original model")
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.freeze:
            return self.net(x).float()
        import torch._inductor.config as inductor_config

        # Inductor compiles on the first call; "freezing" lets it treat the weights as constants: it prepacks
        # them for oneDNN once and fuses conv + bias + ReLU / + add (ONEDNN_VERBOSE on resnet50, batch 1, 2 CPU
        # threads: the eager path spends 14 of 66 ms re-laying out weights on every call).
        with inductor_config.patch(freezing=True):
            return self.net(x).float()


def optimize_for_inference(
    model: nn.Module,
    *,
    channels_last: bool = True,
    dtype: torch.dtype = torch.float32,
    compile: bool | str = False,
    device: torch.device | str | None = None,
) -> InferenceModel:
    """The fast path for ``model``: BN folded, weights in ``dtype`` (bf16 on GPUs) and NHWC, optionally compiled.

    Args:
        model: a network of this project (any shortcut option, plain or residual); it is not modified.
        channels_last: store weights and run activations in NHWC.
        dtype: ``torch.float32``, or ``torch.bfloat16`` / ``torch.float16`` for GPUs (weights are cast after
            folding in float64, so folding adds no rounding of its own).
        compile: ``True`` for ``torch.compile`` default mode, or a mode name (``"max-autotune"``,
            ``"reduce-overhead"``: CUDA graphs, the low-latency batch-1 path on GPUs). On the CPU the weights are
            frozen into the compiled graph (inductor's ``freezing``), so they are laid out for oneDNN once.
        device: where to put the weights (default: where they are).
    """
    net = fold_batchnorm(model)
    if device is not None:
        net = net.to(device)
    net = net.to(dtype=dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub omits it
    if compile:  # torch.compile of a Module is a Module (OptimizedModule); its stub says a callable
        mode = None if compile is True or compile == "default" else compile
        net = cast(nn.Module, torch.compile(net, mode=mode, dynamic=False))
    freeze = bool(compile) and next(net.parameters()).device.type == "cpu"
    return InferenceModel(net, channels_last=channels_last, dtype=dtype, freeze=freeze)
