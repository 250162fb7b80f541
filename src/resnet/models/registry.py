"""A small model registry: ``register_model``, ``build_network``, ``list_models``, ``model_info``.

Every entry records the keyword arguments its builder accepts, so a misspelt keyword fails with the valid
choices instead of a ``TypeError`` deep in a constructor. A *family* (:func:`register_family`) owns a name
pattern and resolves the names it matches on demand: CIFAR nets of any depth 6n+2 are reachable by name
(``resnet38``, ``plain98``) without being listed, and a user's family adds its own names the same way.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resnet.models.catalog import (
    CIFAR_PATTERN,
    ModelInfo,
    builtin_models,
    cifar_layouts,
    imagenet_layouts,
    resolve_cifar,
)

if TYPE_CHECKING:  # the registry itself imports no torch: `resnet models` lists and counts without it
    from torch import nn

    from resnet.models.arch import Architecture

__all__ = [
    "Family",
    "ModelInfo",
    "build_network",
    "list_models",
    "model_architecture",
    "model_info",
    "models_with_layout",
    "register_family",
    "register_model",
]

#: What a family's ``layouts`` answers for a layout read from weights: candidate names and their keywords.
Layouts = Callable[["Architecture"], list[tuple[str, dict[str, object]]]]


@dataclass(frozen=True)
class Family:
    """A family of nets: its name, the names it resolves on demand, and how weights' layouts map to its names.

    ``pattern`` (a regular expression matching whole names) and ``resolve`` (the match -> an entry, or
    ``None`` when the name is not the family's after all) make unlisted names reachable; ``layouts`` lets
    ``resnet convert`` name bare weights of the family (see :func:`models_with_layout`).
    """

    name: str
    pattern: re.Pattern[str] | None = None
    resolve: Callable[[re.Match[str]], ModelInfo | None] | None = None
    layouts: Layouts | None = None


_REGISTRY: dict[str, ModelInfo] = {}
_FAMILIES: dict[str, Family] = {}


def register_model(info: ModelInfo) -> ModelInfo:
    """Add a model to the registry (names are unique, the paper's nets included)."""
    _register_builtin()
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def register_family(
    name: str,
    pattern: str | None = None,
    resolve: Callable[[re.Match[str]], ModelInfo | None] | None = None,
    *,
    layouts: Layouts | None = None,
) -> Family:
    """Add a family: names fully matching ``pattern`` resolve through ``resolve(match)`` when not registered.

    ``register_family("wide", r"wresnet(\\d+)", lambda m: wide_info(int(m.group(1))), layouts=wide_layouts)``.
    Families are tried in the order they were added, the paper's first; ``list_models`` orders by family too.
    """
    _register_builtin()
    if name in _FAMILIES:
        raise ValueError(f"model family {name!r} is already registered")
    if (pattern is None) != (resolve is None):
        raise ValueError("a family's pattern and resolve go together")
    family = Family(name, re.compile(pattern) if pattern else None, resolve, layouts)
    _FAMILIES[name] = family
    return family


def _family_rank(family: str) -> int:
    names = list(_FAMILIES)
    return names.index(family) if family in names else len(names)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally filtered by a shell-style pattern (``"resnet*"``, ``"plain?0"``).

    Order: by family (ImageNet nets, then CIFAR nets, then families added later), each by depth, residual
    before plain.
    """
    _register_builtin()
    infos = sorted(_REGISTRY.values(), key=lambda i: (_family_rank(i.family), not i.residual, i.depth))
    names = [i.name for i in infos]
    return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def model_info(name: str) -> ModelInfo:
    """Registry entry for ``name`` (also for names a family resolves, like the CIFAR depth ``resnet38``)."""
    _register_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for family in list(_FAMILIES.values()):
        match = family.pattern.fullmatch(name) if family.pattern else None
        if match and family.resolve is not None:
            info = family.resolve(match)
            if info is not None:
                return info
    raise ValueError(unknown_model_message(name))


def models_with_layout(arch: Architecture) -> list[tuple[str, dict[str, object]]]:
    """The model names (and their keywords) whose layers are ``arch``'s: block, blocks and widths per stage and
    stem; residual or not and the shortcut option are left to the caller (the weights' shapes cannot tell
    option A from a plain net). Each family proposes names; each proposal is checked against its own entry.
    """
    _register_builtin()
    found = []
    for family in list(_FAMILIES.values()):
        for name, kwargs in family.layouts(arch) if family.layouts else []:
            try:
                mine = model_architecture(name, **kwargs)
            except ValueError:
                continue
            same = mine is not None and (mine.block, tuple(mine.layers), tuple(mine.widths), mine.stem) == (
                arch.block,
                tuple(arch.layers),
                tuple(arch.widths),
                arch.stem,
            )
            if same:
                found.append((name, kwargs))
    return found


def model_architecture(name: str, **kwargs: object) -> Architecture | None:
    """The torch-free description of ``build_network(name, **kwargs)``, or ``None`` if its entry has none."""
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
            register_family("imagenet", layouts=imagenet_layouts)
            register_family("cifar", CIFAR_PATTERN, resolve_cifar, layouts=cifar_layouts)
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


def build_network(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model: ``build_network("resnet56")``, ``build_network("resnet50", bottleneck_stride="3x3")``.

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
