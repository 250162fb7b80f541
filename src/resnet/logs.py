"""How the package's log lines reach a person.

Library code logs through ``logging.getLogger(__name__)`` (loggers under ``resnet``) and prints nothing
itself: the ``resnet`` logger carries a ``NullHandler`` (see ``resnet/__init__.py``), so a program that
imports the package and configures no logging sees nothing, and one that does configure logging gets the
records like any library's. The ``resnet`` command installs :class:`ConsoleHandler` for the length of a
command (:func:`console_logging`): informational lines on stdout and warnings on stderr, written exactly as
the command printed them before (``warning: ...``). Worker processes of ``demo``/``reproduce`` (spawned,
so they start without it) install it again with the level their parent had (:func:`console_level`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

#: The package's top logger: every module's ``logging.getLogger(__name__)`` is below it.
ROOT = "resnet"


class ConsoleFormatter(logging.Formatter):
    """The message as the command always printed it: plain for information, ``warning: ``/``error: `` before
    a warning or an error (the traceback of an exception logged with one follows it)."""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelno
        prefix = "error: " if level >= logging.ERROR else "warning: " if level >= logging.WARNING else ""
        text = prefix + record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class ConsoleHandler(logging.Handler):
    """Information to stdout, warnings and errors to stderr, flushed line by line.

    The streams are looked up at every record, not kept: the command may replace a closed one, and a test
    capturing output swaps them, after the handler was installed.
    """

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(ConsoleFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def console_level() -> int | None:
    """The level of this process's console logging, or None when it has none (a library user's program)."""
    logger = logging.getLogger(ROOT)
    return logger.level if any(isinstance(h, ConsoleHandler) for h in logger.handlers) else None


def log_to_console(level: int = logging.INFO) -> ConsoleHandler:
    """Show the package's records of ``level`` and above on the console (once: a second call sets the level)."""
    logger = logging.getLogger(ROOT)
    handler = next((h for h in logger.handlers if isinstance(h, ConsoleHandler)), None)
    if handler is None:
        handler = ConsoleHandler()
        logger.addHandler(handler)
    logger.setLevel(level)
    return handler


@contextlib.contextmanager
def console_logging(level: int = logging.INFO) -> Iterator[ConsoleHandler]:
    """:func:`log_to_console` for the length of the block, then the logger as it was (a command run in-process,
    as the tests run it, leaves the library quiet again)."""
    logger = logging.getLogger(ROOT)
    had = console_level()
    previous = logger.level
    handler = log_to_console(level)
    try:
        yield handler
    finally:
        if had is None:
            logger.removeHandler(handler)
        logger.setLevel(previous)
