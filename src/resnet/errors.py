"""The one exception type for bad input from a person (a file, a flag, a config key).

The CLI prints ``error: <message>`` for it, without a traceback, and exits with status 2. Its message is
one line that says what is wrong and what to do. ``UserError`` subclasses ``ValueError`` so library callers
can catch either.
"""

from __future__ import annotations

from pathlib import Path


class UserError(ValueError):
    """Bad input: unknown name, missing or corrupt file, invalid config value, incompatible checkpoint."""


class TrainingInterrupted(Exception):
    """A signal stopped the run after a checkpoint was written."""

    def __init__(self, iteration: int, run_dir: Path, signal_name: str, exit_code: int) -> None:
        super().__init__(f"{signal_name} at iteration {iteration}")
        self.iteration, self.run_dir, self.signal_name, self.exit_code = iteration, run_dir, signal_name, exit_code

    def __reduce__(self) -> tuple:  # so that it travels back from a worker process intact
        return (type(self), (self.iteration, self.run_dir, self.signal_name, self.exit_code))


class NonFiniteLoss(UserError):
    """The loss became NaN or Inf; nothing was written after the last good checkpoint."""
