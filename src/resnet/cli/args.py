"""Argument types for the command line's numeric flags: out-of-range values fail at parse time, in one line."""

from __future__ import annotations

import argparse


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """A whole number of at least 1 (``--limit``, ``--topk``, ``--batch-size``, ``--input-size``)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number of at least 0 (``--workers``: 0 decodes in the main process)."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value
