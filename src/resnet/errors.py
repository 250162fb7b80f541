"""The one exception type for bad input from a person (a file, a flag, a config key).

The CLI prints ``error: <message>`` for it, without a traceback, and exits with status 2. Its message is
one line that says what is wrong and what to do. ``UserError`` subclasses ``ValueError`` so library callers
can catch either.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: unknown name, missing or corrupt file, invalid config value, incompatible checkpoint."""
