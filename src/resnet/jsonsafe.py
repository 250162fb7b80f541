"""JSON read with bounded size and nesting, before the parser sees it.

``json.loads`` recurses once per nesting level: 100,000 ``[`` in a metadata field raise ``RecursionError``,
which is no ``ValueError`` and escaped every handler as a traceback. The depth is counted here in one linear
pass over the text (brackets outside strings), so a deep document is refused in one line without recursing.
``NaN`` and ``Infinity``, which Python's parser accepts although JSON has no such values, are refused too:
a stored number is either a real number or the file is damaged.
"""

from __future__ import annotations

import json
from typing import Any

from resnet.errors import UserError

#: Deepest nesting any file of this project needs (a recipe inside ONNX metadata is 4 levels).
DEFAULT_MAX_DEPTH = 64


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` in ``text``, brackets inside strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(
    text_or_bytes: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, max_bytes: int, where: str = "JSON"
) -> Any:
    """The value of a JSON document, or a one-line ``UserError`` (too large, too deep, not JSON, NaN/Infinity)."""
    size = len(text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else text_or_bytes)
    if size > max_bytes:
        raise UserError(f"{where}: {size:,} bytes of JSON, more than the {max_bytes:,} this field may hold")
    if isinstance(text_or_bytes, bytes):
        try:
            text = text_or_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{where}: not UTF-8 text") from None
    else:
        text = text_or_bytes
    # Counting brackets is C-speed; the character walk is only needed when there are enough of them to matter.
    depth = json_depth(text) if text.count("[") + text.count("{") > max_depth else 0
    if depth > max_depth:
        raise UserError(f"{where}: JSON nested {depth:,} levels deep (at most {max_depth} are read)")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; so is a 5,000-digit integer
        raise UserError(f"{where}: not readable JSON ({str(e).splitlines()[0][:160]})") from None
