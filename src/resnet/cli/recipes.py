"""``resnet recipes`` (and ``resnet train --list``): every recipe with the paper's table or figure it reproduces.

Also the help formatter every subcommand uses: it shows each flag's default (unless the default is "none",
which the flag's help then explains).
"""

from __future__ import annotations

import argparse
import fnmatch

from resnet.errors import UserError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` to a flag's help when it has a real default (not None, False or a suppressed one)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in help_text:
            return help_text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else "%(default)s"
            return f"{help_text} (default: {shown})"
        return help_text


def add_force(p: argparse.ArgumentParser) -> None:
    """``--force``: the one flag that lets a command replace an existing file resnet did not write."""
    p.add_argument(
        "--force",
        action="store_true",
        help="replace existing output files resnet did not write (a link is replaced, never written through)",
    )


def list_recipes() -> list[tuple[str, str]]:
    """(name, description) of every recipe, in name order; a recipe found in two roots is listed once."""
    from resnet.config import config_roots, read_yaml

    found: dict[str, str] = {}
    for root in config_roots():
        for path in sorted(root.rglob("*.yaml")):
            name = path.relative_to(root).with_suffix("").as_posix()
            if name in found:
                continue
            try:
                data = read_yaml(path) or {}
                text = str(data.get("description") or "") if isinstance(data, dict) else ""
            except (OSError, UserError):
                text = "(unreadable YAML)"
            found[name] = text or "(no description)"
    return sorted(found.items())


def format_recipes(pattern: str | None = None) -> str:
    """One line per recipe matching the shell-style ``pattern``: its name, then what it reproduces."""
    rows = [(n, d) for n, d in list_recipes() if pattern is None or fnmatch.fnmatch(n, pattern)]
    if not rows:
        raise UserError(f"no recipe matches {pattern!r}; run `resnet recipes` for the list")
    width = max(len(n) for n, _ in rows)
    lines = [f"{n:<{width}}  {d}" for n, d in rows]
    lines.append("")
    lines.append("train one: resnet train NAME --data-dir D   (--print-config shows it resolved, --dry-run its plan)")
    return "\n".join(lines)


def cmd_recipes(args: argparse.Namespace) -> int:
    print(format_recipes(getattr(args, "pattern", None)))
    return 0


def _add_recipes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipes",
        help="list the training recipes and the paper's table or figure each reproduces",
        description="Every recipe under configs/ (cifar10/, imagenet/, demo/), one line each.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'cifar10/*' or '*plain*'")
    p.set_defaults(handler=cmd_recipes)
