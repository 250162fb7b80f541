"""The registered nets: Table 1's ImageNet nets and section 4.2's CIFAR nets, with their plain twins.

Registered: resnet18/34/50/101/152 and plain18/34/50/101/152 (ImageNet), resnet20/32/44/56/110/1202 and
plain20/32/44/56/110 (CIFAR); any other CIFAR depth 6n+2 resolves by name (``resnet38``, ``plain98``).
Each entry carries its torch-free :class:`~resnet.models.arch.Architecture`; the builder imports torch only
when a net is actually built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resnet.models.arch import (
    IMAGENET_DEPTHS,
    Architecture,
    check_cifar_depth,
    cifar_architecture,
    imagenet_architecture,
)

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
    family: str  # "imagenet" or "cifar"
    builder: Callable[..., nn.Module]
    kwargs: tuple[str, ...]  # keyword arguments create_model accepts for it
    input_size: tuple[int, int, int]  # native (C, H, W)
    depth: int
    residual: bool
    doc: str = ""
    #: The torch-free description of the net for the same keywords (``zero_init_residual`` aside), from
    #: which ``resnet models`` counts parameters and MACs; ``None`` for models registered without one.
    architecture: Callable[..., Architecture] | None = None


def _build_cifar(depth: int, residual: bool, **kwargs: object):  # noqa: ANN202  (an nn.Module; torch is lazy)
    from resnet.models.cifar import cifar_plain, cifar_resnet

    return (cifar_resnet if residual else cifar_plain)(depth, **kwargs)  # type: ignore[arg-type]


def _build_imagenet(depth: int, residual: bool, **kwargs: object):  # noqa: ANN202
    from resnet.models.imagenet import imagenet_resnet

    return imagenet_resnet(depth, residual=residual, **kwargs)  # type: ignore[arg-type]


def _entry(family: str, depth: int, residual: bool, build: Callable, describe: Callable, note: str) -> ModelInfo:
    """One registry entry; ``build`` and ``describe`` take (depth, residual) and then the user's keywords."""
    name = f"{'resnet' if residual else 'plain'}{depth}"
    cifar = family == "cifar"
    if cifar:
        kwargs = CIFAR_KWARGS_RESIDUAL if residual else CIFAR_KWARGS_PLAIN
    else:
        kwargs = IMAGENET_KWARGS_RESIDUAL if residual else IMAGENET_KWARGS_PLAIN
    return ModelInfo(
        name=name,
        family=family,
        builder=functools.partial(build, depth, residual),
        kwargs=kwargs,
        input_size=(3, 32, 32) if cifar else (3, 224, 224),
        depth=depth,
        residual=residual,
        doc=f"{'CIFAR' if cifar else 'ImageNet'} {'ResNet' if residual else 'plain net'}-{depth} ({note})",
        architecture=functools.partial(describe, depth, residual),
    )


def cifar_info(depth: int, residual: bool) -> ModelInfo:
    """The registry entry of a CIFAR net of depth 6n+2."""
    n = check_cifar_depth(depth)
    return _entry("cifar", depth, residual, _build_cifar, cifar_architecture, f"section 4.2, n={n}")


def imagenet_info(depth: int, residual: bool) -> ModelInfo:
    """The registry entry of a Table 1 net."""
    return _entry("imagenet", depth, residual, _build_imagenet, imagenet_architecture, "Table 1")


def resolve_cifar(name: str, depth: int, residual: bool) -> ModelInfo | None:
    """The entry for an unlisted CIFAR name like ``resnet38``; ``None`` for ImageNet depths."""
    if depth in IMAGENET_DEPTHS:
        return None
    return cifar_info(depth, residual)  # raises the 6n+2 message for e.g. resnet40


def builtin_models() -> list[ModelInfo]:
    """The registered nets, ImageNet first."""
    infos = [imagenet_info(depth, residual) for depth in IMAGENET_DEPTHS for residual in (True, False)]
    infos += [cifar_info(depth, True) for depth in REGISTERED_RESIDUAL]
    return infos + [cifar_info(depth, False) for depth in REGISTERED_PLAIN]
