"""The ``resnet`` command line: one subcommand per job, each a thin wrapper over the library.

The subcommands live in ``zoo`` (models, summary), ``training`` (train, eval, data), ``experiments``
(demo, reproduce) and ``interop`` (convert, predict, export); this module builds the parser and runs one.

Bad input raises :class:`~resnet.errors.UserError` (or ``ValueError``/``OSError`` from the library); this
module turns those into one ``error: ...`` line and exit status 2, never a traceback. Set
``RESNET_DEBUG=1`` to see the traceback anyway.

The library logs rather than prints; for the length of a command its log lines are shown the way the
command always printed them (:func:`resnet.logs.console_logging`: information on stdout, ``warning: ...``
on stderr; ``--quiet``, where a command has it, keeps the warnings only).
"""

from __future__ import annotations

import argparse
import difflib
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence


def registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Subcommand registrars, in the order ``resnet --help`` lists them.

    Imported here rather than at the top so that importing this module runs next to nothing: a Ctrl-C that
    lands while Python starts the command then meets :func:`main`'s handler, not a traceback.
    """
    from resnet.cli.experiments import _add_demo, _add_reproduce
    from resnet.cli.interop import _add_interop
    from resnet.cli.recipes import _add_recipes
    from resnet.cli.training import _add_train
    from resnet.cli.views import _add_plot
    from resnet.cli.zoo import _add_models

    return [_add_demo, _add_models, _add_recipes, _add_train, _add_plot, _add_reproduce, _add_interop]


def build_parser() -> argparse.ArgumentParser:
    from resnet.version import __version__

    parser = argparse.ArgumentParser(
        prog="resnet",
        description="Deep Residual Learning for Image Recognition (He et al., 2016): models, training, "
        "reproduction of the paper's experiments.",
    )
    parser.add_argument("--version", action="version", version=f"resnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in registrars():
        register(sub)
    _show_defaults(parser)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's ``--help`` shows its flags' defaults (set here once, for all registrars)."""
    from resnet.cli.recipes import HelpFormatter

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.formatter_class = HelpFormatter
                _show_defaults(child)


def _suggest_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """If the first word is a misspelt subcommand, a one-line hint naming the close matches."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv and not argv[0].startswith("-") and argv[0] not in sub.choices:
        close = difflib.get_close_matches(argv[0], list(sub.choices), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(sub.choices)}"
        return f"unknown command {argv[0]!r}; {hint}"
    return None


def _subparser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)subcommand parser that ``args`` came through (``resnet data download`` -> its own parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return _subparser(action.choices[chosen], args)
    return parser


def _suggest_option(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """A mistyped option of a subcommand (``--iteration``): a one-line hint naming that subcommand's close
    matches, instead of argparse's bare "unrecognized arguments"."""
    try:
        args, extras = parser.parse_known_args(argv)
    except SystemExit:  # argparse reported another error (or --help): leave it to the real parse
        return None
    unknown = [e.split("=", 1)[0] for e in extras if e.startswith("--")]
    if not unknown:
        return None
    child = _subparser(parser, args)
    options = [o for a in child._actions for o in a.option_strings if o.startswith("--")]
    close = difflib.get_close_matches(unknown[0], options, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"`{child.prog} --help` lists its options"
    return f"{child.prog}: unknown option {unknown[0]}; {hint}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``resnet`` console script; returns the exit status.

    Ctrl-C at any moment ends with "interrupted" and status 130, never a traceback (training itself stops
    gracefully, see :mod:`resnet.train.signals`); a closed pipe (``resnet summary resnet152 | head``) ends
    quietly with status 0.
    """
    _usable_std_streams()
    try:
        status = _run(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a reader that went away shows up here, not in Python's shutdown
        return status
    except KeyboardInterrupt:
        print("resnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 0


def _usable_std_streams() -> None:
    """Streams every command can write to: a closed stdout or stderr (``resnet models >&-``) becomes
    /dev/null (else the next file opened would take descriptor 1 and receive the output), and a non-UTF-8
    file name or title is printed as its own bytes instead of failing the print."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                if devnull != fd:
                    os.dup2(devnull, fd)
                    os.close(devnull)
                setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115  (lives as long as the process)
            except OSError:
                pass
        stream = getattr(sys, name, None)
        if stream is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115
        elif hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="surrogateescape" if name == "stdout" else "backslashreplace")
            except (ValueError, OSError):
                pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's final flush does not report the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


#: Subcommands that never need torch (they start in a fraction of a second): the recipe browser, the zoo
#: (counted from architectures) and Table 1 (the same arithmetic).
TORCH_FREE_COMMANDS = frozenset({"recipes", "models"})


def needs_torch(args: argparse.Namespace) -> bool:
    """Whether the parsed command will import torch (it is then imported up front, Ctrl-C held back)."""
    if args.command == "reproduce":
        from resnet.experiments.registry import find_experiment

        # An unknown name is refused (one line) without torch too.
        exp = find_experiment(args.experiment)
        return exp is not None and not exp.torch_free
    return args.command not in TORCH_FREE_COMMANDS


def _import_torch_holding_ctrl_c() -> None:
    """Import torch with Ctrl-C held back until the import is done.

    A KeyboardInterrupt raised while torch's C++ extension runs its start-up (it calls back into Python)
    cannot unwind through pybind11: the process aborts with a C++ trace (exit 134, measured with SIGINT
    0.3 s into ``resnet train``). Held back, the Ctrl-C becomes the usual "interrupted" right after.
    """
    pending: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, _frame: pending.append(signum))
    except ValueError:  # not the main thread: signals go elsewhere anyway
        previous = None
    try:
        import torch  # noqa: F401
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def _run(argv: list[str]) -> int:
    from resnet.errors import UserError
    from resnet.io import replacing
    from resnet.logs import console_logging
    from resnet.plugins import load_plugins
    from resnet.train import signals as stop_signals

    try:
        load_plugins()  # a user's families, datasets and experiments (resnet.plugins), before any registry is read
    except UserError as e:
        print(f"resnet: error: {e}", file=sys.stderr)
        return 2
    parser = build_parser()
    hint = _suggest_command(parser, argv) or _suggest_option(parser, argv)
    if hint:
        print(f"resnet: error: {hint}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    args.argv = ["resnet", *argv]  # recorded in run directories and used in resume hints
    if needs_torch(args):
        _import_torch_holding_ctrl_c()
    previous = stop_signals.install_startup_handler()
    level = logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    try:
        # --force: the output rule's one exception
        with replacing(bool(getattr(args, "force", False))), console_logging(level):
            return args.handler(args)
    except BrokenPipeError:
        raise
    except (UserError, ValueError, OSError, KeyboardInterrupt, RecursionError, ImportError) as e:
        # A Ctrl-C during start-up can surface as another error from a half-imported library: it is still a Ctrl-C.
        if isinstance(e, KeyboardInterrupt) or stop_signals.interrupted_at_startup():
            print("resnet: interrupted", file=sys.stderr)
            return 130
        if os.environ.get("RESNET_DEBUG") or isinstance(e, ImportError):
            raise
        if isinstance(e, RecursionError):  # the readers bound nesting; this is the last line of defence
            e = UserError("an input is nested too deeply to be read (a damaged or hostile file); check the files named")
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):  # an append, not an atomic write
            where = f" ({e.filename})" if e.filename else ""
            e = UserError(f"no space left on the device{where}: free some space and run again")
        print(f"resnet: error: {e}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
