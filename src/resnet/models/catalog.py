"""The registered nets: Table 1's ImageNet nets and section 4.2's CIFAR nets, with their plain twins.

Registered: resnet18/34/50/101/152 and plain18/34/50/101/152 (ImageNet), resnet20/32/44/56/110/1202 and
plain20/32/44/56/110 (CIFAR); any other CIFAR depth 6n+2 resolves by name (``resnet38``, ``plain98``).
Each entry carries its torch-free :class:`~resnet.models.arch.Architecture`, the inputs its weights expect
(size, preprocessing, dataset, test views) and the paper's figure for it where the paper gives one; every
layer reads these fields instead of branching on a family's name. The builder imports torch only when a
net is actually built.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from resnet.models.arch import (
    IMAGENET_DEPTHS,
    Architecture,
    check_cifar_depth,
    cifar_architecture,
    imagenet_architecture,
)
from resnet.paper import CIFAR_PARAMS, TABLE1_GMACS, TABLE1_LAYERS, TABLE6

if TYPE_CHECKING:
    from torch import nn

CIFAR_KWARGS_RESIDUAL = ("num_classes", "in_channels", "shortcut", "zero_init_residual")
CIFAR_KWARGS_PLAIN = ("num_classes", "in_channels")
IMAGENET_KWARGS_RESIDUAL = ("num_classes", "in_channels", "shortcut", "bottleneck_stride", "zero_init_residual")
IMAGENET_KWARGS_PLAIN = ("num_classes", "in_channels", "bottleneck_stride")
REGISTERED_RESIDUAL = (20, 32, 44, 56, 110, 1202)
REGISTERED_PLAIN = (20, 32, 44, 56, 110)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model (:mod:`resnet.models.registry`)."""

    name: str
    family: str  # the family's name, shown by `resnet models` ("imagenet", "cifar", or a user's)
    builder: Callable[..., nn.Module]
    kwargs: tuple[str, ...]  # keyword arguments create_model accepts for it
    input_size: tuple[int, int, int]  # native (C, H, W)
    depth: int
    residual: bool
    doc: str = ""
    #: The torch-free description of the net for the same keywords (``zero_init_residual`` aside), from
    #: which ``resnet models`` counts parameters and MACs; ``None`` for models registered without one.
    architecture: Callable[..., Architecture] | None = None
    #: What weights of this net expect when they say nothing else (a bare state_dict, ``create_model``):
    #: a ``--preprocessing`` preset name or the per-channel ``(mean, std)`` of [0, 1] pixels itself (None: the
    #: preset its dataset's description names, else CIFAR-10's), and the dataset whose class names a
    #: ``num_classes``-way head gets ("unknown" for any other head).
    preprocessing: str | tuple[tuple[float, ...], tuple[float, ...]] | None = None
    dataset: str = "cifar10"
    num_classes: int = 10
    #: How its test images are viewed: "single" = the native view only (the CIFAR protocol, section 4.2);
    #: "crops" = shorter side resized to 256/224 of the input, then crops, 10-crop allowed (section 3.4).
    test_views: str = "single"
    #: The paper's figure for this very net (``resnet models`` prints it); empty where the paper has none,
    #: so a new family is never labelled with the paper's numbers.
    paper: str = ""


def _build_cifar(depth: int, residual: bool, **kwargs: Any):  # noqa: ANN202  (an nn.Module; torch is lazy)
    from resnet.models.cifar import cifar_plain, cifar_resnet

    return (cifar_resnet if residual else cifar_plain)(depth, **kwargs)


def _build_imagenet(depth: int, residual: bool, **kwargs: Any):  # noqa: ANN202
    from resnet.models.imagenet import imagenet_resnet

    return imagenet_resnet(depth, residual=residual, **kwargs)


#: Each family's (label in docs, builder, architecture, keywords of its residual nets, of its plain nets).
_FAMILY_PARTS: dict[
    str, tuple[str, Callable[..., Any], Callable[..., Architecture], tuple[str, ...], tuple[str, ...]]
] = {
    "cifar": ("CIFAR", _build_cifar, cifar_architecture, CIFAR_KWARGS_RESIDUAL, CIFAR_KWARGS_PLAIN),
    "imagenet": ("ImageNet", _build_imagenet, imagenet_architecture, IMAGENET_KWARGS_RESIDUAL, IMAGENET_KWARGS_PLAIN),
}


def cifar_paper_figure(depth: int, residual: bool) -> str:
    """Section 4.2's parameters (Table 6) of the paper's residual CIFAR nets; empty for the others."""
    if depth not in TABLE6 or not residual:
        return ""
    exact = f" ({CIFAR_PARAMS[depth]:,})" if depth in CIFAR_PARAMS else ""
    return f"Table 6: {TABLE6[depth][0]}M params{exact}"


def imagenet_paper_figure(depth: int, residual: bool) -> str:
    """Table 1's multiply-adds; it describes the residual nets, and plain-18/34 cost the same (section 3.3)."""
    return f"Table 1: {TABLE1_GMACS[depth]} GMACs" if residual or depth in (18, 34) else ""


def _paper_net(family: str, depth: int, residual: bool, where: str, **fields: Any) -> ModelInfo:
    """The entry of one of the paper's nets of ``family`` (its label, builder, architecture and keywords from
    :data:`_FAMILY_PARTS`); ``where``: the part of the paper that describes it, for its doc line."""
    label, build, architecture, kwargs_residual, kwargs_plain = _FAMILY_PARTS[family]
    return ModelInfo(
        name=f"{'resnet' if residual else 'plain'}{depth}",
        family=family,
        builder=functools.partial(build, depth, residual),
        kwargs=kwargs_residual if residual else kwargs_plain,
        depth=depth,
        residual=residual,
        doc=f"{label} {'ResNet' if residual else 'plain net'}-{depth} {where}",
        architecture=functools.partial(architecture, depth, residual),
        **fields,
    )


def cifar_info(depth: int, residual: bool) -> ModelInfo:
    """The registry entry of a CIFAR net of depth 6n+2."""
    n = check_cifar_depth(depth)
    return _paper_net("cifar", depth, residual, f"(section 4.2, n={n})", input_size=(3, 32, 32),
                      paper=cifar_paper_figure(depth, residual))  # fmt: skip


def imagenet_info(depth: int, residual: bool) -> ModelInfo:
    """The registry entry of a Table 1 net: torchvision's ImageNet mean/std, 224x224 crops, 1000 classes."""
    return _paper_net("imagenet", depth, residual, "(Table 1)", input_size=(3, 224, 224),
                      preprocessing="imagenet", dataset="imagenet", num_classes=1000, test_views="crops",
                      paper=imagenet_paper_figure(depth, residual))  # fmt: skip


#: The names the CIFAR family resolves on demand (``resnet38``, ``plain98``).
CIFAR_PATTERN = r"(resnet|plain)(\d+)"


def resolve_cifar(match: re.Match[str]) -> ModelInfo | None:
    """The entry for an unlisted CIFAR name like ``resnet38``; ``None`` for ImageNet depths."""
    depth = int(match.group(2))
    if depth in IMAGENET_DEPTHS:
        return None
    return cifar_info(depth, match.group(1) == "resnet")  # raises the 6n+2 message for e.g. resnet40


def cifar_layouts(arch: Architecture) -> list[tuple[str, dict[str, object]]]:
    """The CIFAR names whose layout ``arch`` (read from weights) may be: three equal stages of basic blocks."""
    if arch.stem != "cifar" or arch.block != "basic" or len(arch.layers) != 3 or len(set(arch.layers)) != 1:
        return []
    depth = 6 * arch.layers[0] + 2
    return [(f"resnet{depth}", {}), (f"plain{depth}", {})]


def imagenet_layouts(arch: Architecture) -> list[tuple[str, dict[str, object]]]:
    """The Table 1 names whose layout ``arch`` (read from weights) may be."""
    depths = [
        d
        for d, layout in TABLE1_LAYERS.items()
        if layout == tuple(arch.layers) and (d >= 50) == (arch.block == "bottleneck")
    ]
    return [(f"{kind}{d}", {}) for d in depths for kind in ("resnet", "plain")] if arch.stem == "imagenet" else []


def builtin_models() -> list[ModelInfo]:
    """The registered nets, ImageNet first."""
    infos = [imagenet_info(depth, residual) for depth in IMAGENET_DEPTHS for residual in (True, False)]
    infos += [cifar_info(depth, True) for depth in REGISTERED_RESIDUAL]
    return infos + [cifar_info(depth, False) for depth in REGISTERED_PLAIN]
