"""Outside code the ``resnet`` command loads: a user's model families, datasets and experiments.

A plugin is a Python module that registers what it adds when it is imported (``register_family`` /
``register_model``, ``register_dataset``, ``register_experiment``). The command line loads, once per
process and before it reads any registry:

- every entry point of the group ``resnet.plugins`` of the installed packages (a package declares one in
  its ``pyproject.toml``: ``[project.entry-points."resnet.plugins"]`` ``mine = "mypkg.resnet_plugin"``);
- every item of the environment variable ``RESNET_PLUGINS``, comma-separated: an importable module name
  (``mypkg.resnet_plugin``) or the path of a ``.py`` file (``RESNET_PLUGINS=./wide.py``).

Library users simply import their module. A plugin that fails to load stops the command with one line
naming it (set ``RESNET_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

from resnet.errors import UserError

ENV = "RESNET_PLUGINS"
ENTRY_POINT_GROUP = "resnet.plugins"

_loaded: dict[str, ModuleType] = {}
_lock = threading.RLock()


def _import(item: str) -> ModuleType:
    """A module by name, or a ``.py`` file by path (imported under its file name, once)."""
    if not item.endswith(".py"):
        return importlib.import_module(item)
    path = Path(item).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    name = f"resnet_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling (spawned workers) look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_plugin(item: str) -> ModuleType:
    """Import one plugin (module name or ``.py`` path) once; ``UserError`` naming it if it fails."""
    with _lock:
        if item in _loaded:
            return _loaded[item]
        try:
            module = _import(item)
        except Exception as e:
            if os.environ.get("RESNET_DEBUG"):
                raise
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise UserError(f"plugin {item!r} failed to load ({type(e).__name__}: {first}); check {ENV}") from None
        _loaded[item] = module
        return module


@functools.cache
def _entry_points() -> tuple[str, ...]:
    from importlib.metadata import entry_points

    return tuple(ep.module for ep in entry_points(group=ENTRY_POINT_GROUP))  # installed once per process


def plugin_names() -> list[str]:
    """What :func:`load_plugins` loads: the entry points of ``resnet.plugins``, then ``RESNET_PLUGINS``."""
    return [*_entry_points(), *(item.strip() for item in os.environ.get(ENV, "").split(",") if item.strip())]


def load_plugins() -> list[ModuleType]:
    """Import every plugin (see the module docstring); cheap after the first call."""
    return [load_plugin(name) for name in plugin_names()]
