"""Low-level file helpers of the output and input rules: atomic replacement, the one input opener, printable names."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from resnet.errors import UserError


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` would briefly set it for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS): the only portable way; restored at once
    os.umask(mask)
    return mask


def out_of_space(error: BaseException) -> bool:
    """Whether ``error`` is, or was caused by, a full disk or quota (torch reports one as "unexpected pos")."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e = e.__cause__ or e.__context__
    return False


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(file_object)`` on a temporary file and move it over ``path`` only if it all succeeded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file as 0600; give it the permissions a plain open() would (0666 minus umask).
        os.chmod(tmp, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if out_of_space(e):
            kept = f"; the previous {path.name} is kept" if path.exists() else ""
            raise UserError(
                f"no space left on {path.parent} (writing {path.name}): free some space and run again{kept}"
            ) from None
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some filesystems refuse fsync on folders; the data itself is already safe
        pass


def refuse_overwriting(out: str | Path, *inputs: str | Path, flag: str = "--out") -> None:
    """Refuse an output that is one of the inputs (also through a link): writing it would destroy the input."""
    for source in inputs:
        try:
            same = os.path.samefile(out, source)
        except OSError:  # either does not exist (yet)
            same = Path(out).resolve() == Path(source).resolve()
        if same:
            raise UserError(f"{flag} {out} is the input {source}; writing it would destroy the input: choose another")


def shown(path: str | Path) -> str:
    """A path as it can be printed and logged: bytes that are not UTF-8 (a file name from another system,
    kept by Python as lone surrogates) are shown as ``\\xNN`` escapes instead of failing the write."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def printable(text: str) -> str:
    """A text as it can be drawn or encoded strictly: bytes that are not UTF-8 (a file name or title from
    the command line, kept by Python as lone surrogates) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a device or socket"


@contextlib.contextmanager
def open_input(path: str | Path, *, max_bytes: int | None = None, follow: bool = True) -> Iterator[IO[bytes]]:
    """``path`` opened for reading if it is a regular file (checked on the open descriptor, so a file swapped
    for a FIFO in between cannot slip through; opened non-blocking, so a FIFO does not wait for a writer),
    and no larger than ``max_bytes``. ``follow=False`` refuses a symbolic link too. One ``UserError`` line
    otherwise; a missing file is ``FileNotFoundError`` (callers say what they were looking for)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:
            raise UserError(f"{shown(path)} is a symbolic link, which is not read here") from None
        if e.errno in (errno.ENXIO, errno.ENODEV):
            raise UserError(f"{shown(path)}: not a regular file (a device or socket); name a file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{shown(path)}: not a regular file ({_kind(st.st_mode)}); name a file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UserError(
                f"{shown(path)}: {st.st_size:,} bytes, more than the {max_bytes:,} this reader accepts; "
                "is it the right file?"
            )
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_input_text(path: str | Path, *, max_bytes: int, errors: str = "strict") -> str:
    """The text (UTF-8) of a regular file of at most ``max_bytes``; one ``UserError`` line otherwise."""
    with open_input(path, max_bytes=max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while we read
        raise UserError(f"{shown(path)}: more than the {max_bytes:,} bytes this reader accepts; is it the right file?")
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError:
        raise UserError(f"{shown(path)}: not UTF-8 text; is it the right file?") from None
