"""JSON as the project reads it from outside files: bounded in size and nesting, no duplicate keys.

``json.loads`` recurses once per nesting level: 100,000 opening brackets (200 KB) raise ``RecursionError``
deep inside it, which no caller expects. Every JSON the project reads (a run's ``metrics.jsonl``,
``summary.json`` and ``invocations.jsonl``, ``config.json`` of a pretrained folder, the metadata of ONNX
and safetensors files, caches) goes through :func:`parse_json` or :func:`read_json`: the nesting is
counted before anything is parsed (one pass over the brackets outside strings), and a key given twice
(which ``json`` silently resolves to the last) is refused, so a reader never sees an ambiguous document.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from resnet.errors import UserError
from resnet.io import read_input_text, shown

#: Deepest nesting accepted: everything the project writes is at most 4 levels deep.
MAX_JSON_DEPTH = 32
#: Default size bound of a JSON file read by :func:`read_json` (a metrics log of a 600k-iteration run is ~60 MB).
MAX_JSON_BYTES = 256 << 20

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


class JSONError(ValueError):
    """Invalid, too deep or ambiguous JSON (a ``ValueError``, as ``json``'s own errors are)."""


def json_depth(text: str) -> int:
    """The deepest nesting of brackets outside strings (0 for a scalar)."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub('""', text)):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JSONError(f"key {key!r} given twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise JSONError(f"{name} is not a number JSON allows")


def parse_json(
    text: str | bytes, max_depth: int = MAX_JSON_DEPTH, *, max_bytes: int | None = None, allow_nan: bool = True
) -> Any:
    """The data of ``text``; :class:`JSONError` (a ``ValueError``) for invalid JSON, more than ``max_bytes``,
    nesting deeper than ``max_depth``, a duplicate key, or (``allow_nan=False``) ``NaN``/``Infinity``, which
    Python's parser accepts although JSON has no such values (a stored description is then damaged)."""
    size = len(text) if isinstance(text, bytes | bytearray) else len(text.encode("utf-8", "surrogatepass"))
    if max_bytes is not None and size > max_bytes:
        raise JSONError(f"{size:,} bytes of JSON, more than the {max_bytes:,} accepted here")
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise JSONError("not UTF-8 text") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise JSONError(f"nested {depth:,} levels deep, more than the {max_depth:,} accepted")
    try:
        if allow_nan:
            return json.loads(text, object_pairs_hook=_no_duplicates)
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except JSONError:
        raise
    except (ValueError, RecursionError) as e:  # a 5,000-digit integer is a ValueError too
        raise JSONError(str(e).splitlines()[0][:160] if str(e) else type(e).__name__) from None


def load_json(
    text: str | bytes,
    where: str,
    max_depth: int = MAX_JSON_DEPTH,
    *,
    max_bytes: int | None = None,
    allow_nan: bool = True,
) -> Any:
    """:func:`parse_json`, any problem as one :class:`UserError` line starting with ``where``."""
    try:
        return parse_json(text, max_depth, max_bytes=max_bytes, allow_nan=allow_nan)
    except JSONError as e:
        raise UserError(f"{where}: not valid JSON here ({e}); is it the right file?") from None


def read_json(path: str | Path, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in ``path``: a regular file (:func:`resnet.io.open_input`) of at most ``max_bytes``,
    parsed by :func:`load_json`; one ``UserError`` line for anything wrong."""
    return load_json(read_input_text(path, max_bytes=max_bytes), shown(path), max_depth)
