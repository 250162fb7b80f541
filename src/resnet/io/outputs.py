"""The output rule: :func:`write_output` (see :mod:`resnet.io` for the rule itself)."""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from resnet.errors import UserError
from resnet.io.files import _kind, atomic_write, open_input, out_of_space, shown

#: The record of the files written into a folder that is not a run directory (see the module docstring).
MANIFEST = ".resnet-outputs.json"
MANIFEST_FORMAT = "resnet-outputs/1"
#: A manifest larger than this is not ours (a folder would need ~10,000 outputs): it is then ignored.
MAX_MANIFEST_BYTES = 1 << 20

_FORCE: contextvars.ContextVar[bool] = contextvars.ContextVar("resnet_force", default=False)


@contextlib.contextmanager
def replacing(force: bool = True) -> Iterator[None]:
    """Within this block :func:`write_output` replaces existing files it did not write (``--force``)."""
    token = _FORCE.set(bool(force))
    try:
        yield
    finally:
        _FORCE.reset(token)


_OWNED: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("resnet_owned", default=())


@contextlib.contextmanager
def owning(folder: str | Path) -> Iterator[None]:
    """Within this block the files written directly in ``folder`` are ``owned`` (a run directory, claimed
    by ``resnet train`` under its lock, or named by ``eval``/``plot`` as the run whose views they write)."""
    token = _OWNED.set((*_OWNED.get(), os.path.abspath(folder)))
    try:
        yield
    finally:
        _OWNED.reset(token)


def _is_owned(path: Path) -> bool:
    return os.path.abspath(path.parent) in _OWNED.get()


def check_output(path: str | Path, *, owned: bool = False, force: bool | None = None) -> None:
    """Refuse (one line) what :func:`write_output` would refuse, before any work is done for it.

    ``owned``: the path is one of a run directory's own names (see the module docstring); an existing
    regular file there is replaced, anything else there is refused even with ``--force``.
    """
    path = Path(path)
    owned = owned or _is_owned(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise UserError(f"{shown(path)}: a folder in that path is a file; choose another path") from None
    force = _FORCE.get() if force is None else force
    if stat.S_ISLNK(st.st_mode):
        if force and not owned:
            return  # the link itself is replaced; its target is never opened
        how = "remove the link" if owned else "remove the link, or pass --force to replace the link itself"
        raise UserError(f"{shown(path)} is a symbolic link; resnet never writes through one: {how}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(
            f"{shown(path)} is {_kind(st.st_mode)}, not a file resnet wrote: remove it or choose another path"
        )
    if owned or force or _recorded(path, st):
        return
    raise UserError(
        f"{shown(path)} exists and resnet did not write it (or it changed since): "
        "pass --force to replace it, or choose another path"
    )


def write_output(
    path: str | Path,
    content: bytes | str | Callable[[IO[bytes]], object],
    *,
    owned: bool = False,
    append: bool = False,
    force: bool | None = None,
) -> Path:
    """Write a file a command produces, under the output rule (module docstring); returns the path.

    ``content`` is the bytes, a text (UTF-8) or ``write(file_object)``. ``append`` adds to the end of a
    line log (``train.log``, ``metrics.jsonl``): opened without following a link, and a torn last line left
    by a killed process is closed first so the new line is not glued onto it. ``force`` defaults to the
    surrounding :func:`replacing`.
    """
    path = Path(path)
    owned = owned or _is_owned(path)
    check_output(path, owned=owned, force=force)
    if isinstance(content, str):
        data = content.encode("utf-8", "surrogateescape")  # a non-UTF-8 file name is written back as its bytes
        write: Callable[[IO[bytes]], object] = lambda f: f.write(data)  # noqa: E731
    elif isinstance(content, bytes | bytearray):
        raw = bytes(content)
        write = lambda f: f.write(raw)  # noqa: E731
    else:
        write = content
    if append:
        _append(path, write)
        return path
    atomic_write(path, write)
    if not owned:
        _record(path)
    return path


def discard_output(path: str | Path) -> bool:
    """Remove an output just written that failed its own check (an export onnxruntime disagrees with), so that
    nobody deploys it; True when a file was removed. Only a regular file resnet wrote there (owned, or recorded
    in the folder's manifest) is removed: never a link, nor a file someone put there since."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or not (_is_owned(path) or _recorded(path, st)):
        return False
    path.unlink(missing_ok=True)
    return True


def write_cache(path: str | Path, content: bytes | str | Callable[[IO[bytes]], object]) -> bool:
    """Write an optional cache file (the project's own cache folder); False instead of any error: a full or
    read-only cache disk, a link or FIFO planted there, only costs the next start the work it saves."""
    try:
        write_output(path, content, owned=True)
        return True
    except (OSError, UserError):
        return False


def _append(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(
                f"{shown(path)} is a symbolic link; resnet never writes through one: remove the link"
            ) from None
        if e.errno in (errno.ENXIO, errno.EISDIR):
            raise UserError(f"{shown(path)} is not a regular file: remove it and run again") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # checked on the descriptor: a swap after lstat cannot slip through
            raise UserError(f"{shown(path)} is {_kind(st.st_mode)}, not a file resnet wrote: remove it and run again")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "r+b", closefd=False) as f:
            if st.st_size > 0 and os.pread(fd, 1, st.st_size - 1) != b"\n":
                f.write(b"\n")
            write(f)
            f.flush()
            os.fsync(fd)
    except OSError as e:
        if out_of_space(e):
            raise UserError(
                f"no space left on {shown(path.parent)} (adding to {shown(path.name)}): free some space and run "
                "again; the lines written before are kept"
            ) from None
        raise
    finally:
        os.close(fd)


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _read_manifest(folder: Path) -> dict[str, list[int]]:
    """The folder's record of what resnet wrote there; empty when missing, damaged, a link or not a file."""
    try:
        with open_input(folder / MANIFEST, max_bytes=MAX_MANIFEST_BYTES, follow=False) as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError, UserError, RecursionError):
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(v, list) and all(type(x) is int for x in v)}


def _recorded(path: Path, st: os.stat_result) -> bool:
    return _read_manifest(path.parent).get(path.name) == _identity(st)


def _record(path: Path) -> None:
    """Note ``path`` as written by resnet in its folder's manifest (best effort: without it, replacing the
    file later needs ``--force``, which is the safe side)."""
    try:
        files = _read_manifest(path.parent)
        files = {name: v for name, v in files.items() if (path.parent / name).exists() or name == path.name}
        files[path.name] = _identity(os.lstat(path))
        text = json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1) + "\n"
        atomic_write(path.parent / MANIFEST, lambda f: f.write(text.encode()))
    except (OSError, UserError):
        pass


def check_folder_is_ours(
    folder: str | Path, names: tuple[str, ...], force: bool | None = None, *, keep: tuple[str, ...] = ()
) -> None:
    """Refuse writing ``names`` into ``folder`` when it holds files resnet did not write there (a folder
    that is another tool's: its own ``config.json``, a README) unless ``--force``. ``keep``: files of the
    user's that belong in such a folder and are left as they are (a model card the user wrote)."""
    folder = Path(folder)
    if not folder.is_dir() or (_FORCE.get() if force is None else force):
        for name in names:
            check_output(folder / name, force=force)
        return
    recorded = _read_manifest(folder)
    for entry in sorted(folder.iterdir()):
        if entry.name == MANIFEST or (entry.name in keep and entry.name not in names):
            continue
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            continue
        try:
            st = os.lstat(entry)
        except OSError:
            continue
        if recorded.get(entry.name) != _identity(st):
            raise UserError(
                f"{shown(folder)} holds {shown(entry.name)}, which resnet did not write there: "
                "choose a new or empty folder, or pass --force to write into it anyway"
            )
    for name in names:
        check_output(folder / name, force=force)


def atomic_write_text(path: str | Path, text: str) -> None:
    """``write_output(path, text)``: kept for callers written before the output rule."""
    write_output(path, text)
