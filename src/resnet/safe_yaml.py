"""YAML as recipes need it: plain mappings, lists and scalars, read with bounded time and memory.

``yaml.safe_load`` constructs no objects, but it does expand aliases: nine nested lists of nine aliases each
(the "billion laughs", ~800 bytes) expand to 9^9 strings and take minutes and >10 GB before anything can
look at the result. No recipe needs aliases (``--set`` and the recipe files cover every reuse), so every
YAML file the project reads (recipes, a run's ``config.yaml``, ``--set`` values) goes through
:func:`load_yaml`, which refuses an alias when the parser meets it, before anything is expanded; files
larger than any recipe and nesting deeper than Python's recursion limit are refused too.
"""

from __future__ import annotations

from typing import Any

import yaml

from resnet.errors import UserError

#: Largest YAML text read (characters): recipes and resolved configs are under 2 KiB. The parser is pure Python:
#: a list of 64 KiB took 0.7 s to parse here, one of 1 MiB 11 s (2 shared cores, load 7-15).
MAX_YAML_CHARS = 64 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    """``SafeLoader`` that stops at the first alias (``*name``) instead of expanding it."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} found; aliases are not allowed here", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # A key given twice silently means its last value in PyYAML; in a recipe that hides a mistake.
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML refuses it itself
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice; keep one", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """The data of ``text``; ``yaml.YAMLError`` for invalid YAML, an alias, too much text or nesting."""
    if len(text) > MAX_YAML_CHARS:
        raise yaml.YAMLError(f"{len(text)} characters, more than the {MAX_YAML_CHARS} a recipe may have")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506  (a SafeLoader subclass)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def load_yaml(text: str, where: str) -> Any:
    """:func:`parse_yaml`, with any problem as one :class:`UserError` line starting with ``where``."""
    try:
        return parse_yaml(text)
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{where}: not valid YAML ({first}); recipes are plain mappings without aliases") from None
