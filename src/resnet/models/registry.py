"""A small model registry: ``register_model``, ``create_model``, ``list_models``, ``model_info``.

Every entry records the keyword arguments its builder accepts, so a misspelt keyword fails with the valid
choices instead of a ``TypeError`` deep in a constructor. CIFAR nets of any depth 6n+2 are reachable by
name (``resnet38``, ``plain98``) without being listed.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from resnet.models.catalog import ModelInfo, builtin_models, resolve_cifar

if TYPE_CHECKING:  # the registry itself imports no torch: `resnet models` lists and counts without it
    from torch import nn

    from resnet.models.arch import Architecture

__all__ = ["ModelInfo", "create_model", "list_models", "model_architecture", "model_info", "register_model"]


_REGISTRY: dict[str, ModelInfo] = {}
_FAMILY_BUILDERS: dict[str, Callable[[str, int, bool], ModelInfo | None]] = {}


def register_model(info: ModelInfo) -> ModelInfo:
    """Add a model to the registry (names are unique, the paper's nets included)."""
    _register_builtin()
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def register_family(prefix: str, resolver: Callable[[str, int, bool], ModelInfo | None]) -> None:
    """Let names like ``resnet38`` resolve through ``resolver(name, depth, residual)`` when not registered.

    Families are tried in the order they were added, the paper's CIFAR family first.
    """
    _register_builtin()
    _FAMILY_BUILDERS[prefix] = resolver


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally filtered by a shell-style pattern (``"resnet*"``, ``"plain?0"``).

    Order: ImageNet nets, then CIFAR nets, each by depth, residual before plain.
    """
    _register_builtin()
    infos = sorted(_REGISTRY.values(), key=lambda i: (i.family != "imagenet", not i.residual, i.depth))
    names = [i.name for i in infos]
    return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]


_NAME_RE = re.compile(r"^(resnet|plain)(\d+)$")


def model_info(name: str) -> ModelInfo:
    """Registry entry for ``name`` (also for unlisted CIFAR depths like ``resnet38``)."""
    _register_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name]
    m = _NAME_RE.match(name)
    if m and _FAMILY_BUILDERS:
        for resolver in _FAMILY_BUILDERS.values():
            info = resolver(name, int(m.group(2)), m.group(1) == "resnet")
            if info is not None:
                return info
    raise ValueError(unknown_model_message(name))


def model_architecture(name: str, **kwargs: object) -> Architecture | None:
    """The torch-free description of ``create_model(name, **kwargs)``, or ``None`` if its entry has none."""
    info = model_info(name)
    _check_kwargs(info, kwargs)
    if info.architecture is None:
        return None
    kwargs.pop("zero_init_residual", None)  # an initialisation, not a layer
    return info.architecture(**kwargs)


_builtin_lock = threading.RLock()  # re-entrant: registering calls back into register_model
_builtin = {"done": False, "running": False}


def _register_builtin() -> None:
    """Register the paper's nets (:mod:`resnet.models.catalog`) once, before the registry's first answer.

    Under a lock, and marked done only once every name is in, so that threads asking at the same moment all
    see the whole registry (the registering thread's own calls back in return at once).
    """
    if _builtin["done"]:
        return
    with _builtin_lock:
        if _builtin["done"] or _builtin["running"]:
            return
        _builtin["running"] = True
        try:
            for info in builtin_models():
                register_model(info)
            register_family("cifar", resolve_cifar)
        finally:
            _builtin["running"] = False
        _builtin["done"] = True


def _check_kwargs(info: ModelInfo, kwargs: dict) -> None:
    unknown = sorted(set(kwargs) - set(info.kwargs))
    if unknown:
        raise ValueError(
            f"{info.name} does not take {', '.join(map(repr, unknown))}; valid keywords: {', '.join(info.kwargs)}"
        )


def unknown_model_message(name: str) -> str:
    """One line naming the close matches, or pointing at the full list."""
    close = difflib.get_close_matches(name, list_models(), n=4, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "run `resnet models` for the list"
    return f"unknown model {name!r}; {hint}"


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model: ``create_model("resnet56")``, ``create_model("resnet50", bottleneck_stride="3x3")``.

    Raises:
        ValueError: unknown name or keyword, a CIFAR depth that is not 6n+2, an invalid option value, or a net
            larger than the budget (``resnet.models.cost.MAX_PARAMS``; a ``UserError`` naming its size).
    """
    info = model_info(name)
    _check_kwargs(info, kwargs)
    check_model_budget(name, info, kwargs, info.input_size)
    return info.builder(**kwargs)


def check_model_budget(
    name: str, info: ModelInfo, kwargs: dict, input_size: tuple[int, ...] | list[int] | None = None
) -> None:
    """Refuse a net too large to build (a depth or class count from a flag or a file) before anything is
    allocated: its size is counted from its description alone (:func:`resnet.models.cost.check_budget`)."""
    from resnet.models.cost import check_budget

    if info.architecture is None:
        return
    arch_kwargs = {k: v for k, v in kwargs.items() if k != "zero_init_residual"}
    try:
        arch = info.architecture(**arch_kwargs)
    except TypeError:  # a keyword the builder itself reports better
        return
    size = input_size if input_size is not None else info.input_size
    check_budget(arch, tuple(size)[-2:], what=name)
