"""The one rule for every file a command writes, the one way every outside file is opened, and directory locks.

Outputs (:func:`write_output`, the only writer; :func:`atomic_write` is its replace step):

- **atomic**: a replacement goes to a temporary file in the same folder, is fsync'ed, then renamed over the
  old file (and the folder is fsync'ed), so a crash, a full disk or a signal at any moment leaves either the
  old file or the new one, never a torn one; a full disk keeps the previous file and says so in one line.
- **never through a link**: the rename replaces the folder entry itself, and appends open it with
  ``O_NOFOLLOW``; an existing symbolic link, FIFO, device or folder where a file is to be written is refused,
  so a link planted in a run directory or an output folder never gets its target written or truncated.
- **never over a file the project did not write**: an existing file is replaced only when it is the
  project's own, which is known in one of two ways. (1) In a run directory (claimed under its lock by
  ``resnet train``, or recognised by its records) the names ``resnet train``, ``eval`` and ``plot`` write
  there are the run's own (``owned=True``). (2) Anywhere else each write is recorded in the folder's
  ``.resnet-outputs.json`` (name, inode, size, modification time); a file whose entry still matches is
  the one written earlier and may be replaced; a file the entry does not describe (the user's own, or an
  earlier output the user has since edited or copied over) is refused with one line naming the file and
  ``--force``. Everything else needs ``--force`` (:func:`replacing`), which replaces the folder entry
  itself, never a link's target.

Inputs (:func:`open_input`): only regular files are read (checked on the open descriptor, opened
non-blocking so a FIFO cannot hang the reader), with a size bound given by the reader.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import socket
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


def atomic_write_text(path: str | Path, text: str) -> None:
    """``write_output(path, text)``: kept for callers written before the output rule."""
    write_output(path, text)


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


# --------------------------------------------------------------------------------------------------- outputs

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


def check_folder_is_ours(folder: str | Path, names: tuple[str, ...], force: bool | None = None) -> None:
    """Refuse writing ``names`` into ``folder`` when it holds files resnet did not write there (a folder
    that is another tool's: its own ``config.json``, a README) unless ``--force``."""
    folder = Path(folder)
    if not folder.is_dir() or (_FORCE.get() if force is None else force):
        for name in names:
            check_output(folder / name, force=force)
        return
    recorded = _read_manifest(folder)
    for entry in sorted(folder.iterdir()):
        if entry.name in (MANIFEST,) or (entry.name.startswith(".") and entry.name.endswith(".tmp")):
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


# ---------------------------------------------------------------------------------------------------- inputs


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


class DirLock:
    """One process at a time in a directory (a run directory: a stray worker, a repeated command is refused).

    The lock file ``DIR/.lock`` holds "host pid" and its holder keeps an ``flock`` on it for as long as it
    runs; the kernel drops that when the process dies, however it dies. A lock left by a dead process on
    this host is taken over in place (under the flock, so two starters never both take it). A lock written
    on another host is never taken over: whether that process lives cannot be told from here, so the
    message names it and says how to clear it. A lock whose flock someone holds is never touched.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / ".lock"
        self.held = False
        self._fd: int | None = None

    def __enter__(self) -> DirLock:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(20):  # retried only when the holder released it between our open and our flock
            fd = self._open()
            try:
                verdict = self._try_take(fd)
            except BaseException:
                os.close(fd)
                raise
            if verdict == "retry":
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (me + "\n").encode())
            os.fsync(fd)
            self._fd, self.held = fd, True
            return self
        raise UserError(f"could not lock {self.path.parent}: its lock file keeps changing; try again")

    def _open(self) -> int:
        """The lock file, never through a link and never anything but a regular file (a link planted as
        ``.lock`` would otherwise have its target truncated; a FIFO would block the open)."""
        flags = os.O_CREAT | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENODEV):
                raise UserError(
                    f"{shown(self.path)} is not a lock file resnet wrote (a link, pipe or folder): "
                    "remove it and run again"
                ) from None
            raise
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise UserError(
                f"{shown(self.path)} is {_kind(mode)}, not a lock file resnet wrote: remove it and run again"
            )
        os.set_blocking(fd, True)
        return fd

    def _try_take(self, fd: int) -> str:
        """ "take" (the lock is ours now, under flock), "retry", or a ``UserError`` naming the holder."""
        flocked = _flock(fd)
        if flocked is False:
            raise self._busy(self._owner(fd), alive=True)
        try:
            same = os.fstat(fd).st_ino == os.lstat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder unlinked the file we opened: try again on the current one
            return "retry"
        owner = self._owner(fd)
        if owner is None:
            return "take"  # empty (we created it) or half-written by a process that died before writing it
        host, pid = owner
        if host != socket.gethostname():
            raise self._busy(owner, alive=None)
        if pid == os.getpid() or _alive(pid):
            # flock unsupported here, or a holder that predates the flock: trust the pid.
            if flocked is None or pid == os.getpid():
                raise self._busy(owner, alive=True)
        return "take"

    @staticmethod
    def _owner(fd: int) -> tuple[str, int] | None:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            host, pid = os.read(fd, 4096).decode().split()
            return host, int(pid)
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def _busy(self, owner: tuple[str, int] | None, alive: bool | None) -> UserError:
        who = f"process {owner[1]} on host {owner[0]}" if owner else "another process"
        if alive:
            return UserError(f"{self.path.parent} is being trained by {who}; wait for it or stop it")
        return UserError(
            f"{self.path.parent} is locked by {who}, another machine, so whether it still runs cannot be told "
            f"from here; if it is gone, delete {self.path} and run again"
        )

    def __exit__(self, *exc: object) -> None:
        if self.held and self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still holding the flock: nobody takes the old inode
            os.close(self._fd)
            self._fd, self.held = None, False


def _flock(fd: int) -> bool | None:
    """Take an exclusive non-blocking flock: True, False if another process holds it, None if unsupported."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK / EOPNOTSUPP: a filesystem without locks
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True
