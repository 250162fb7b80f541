"""Files that are never torn: atomic writes (temporary file, fsync, rename), and directory locks.

Writes go to a temporary file in the same folder, are fsync'ed, then renamed over the old file (and the
folder is fsync'ed), so a crash, a full disk or a signal at any moment leaves either the old file or the
new one, never a torn one. Every file the project writes (checkpoints, metrics rewrites, configs,
reports, caches) goes through :func:`atomic_write`.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from collections.abc import Callable
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
    atomic_write(path, lambda f: f.write(text.encode()))


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
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
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

    def _try_take(self, fd: int) -> str:
        """ "take" (the lock is ours now, under flock), "retry", or a ``UserError`` naming the holder."""
        flocked = _flock(fd)
        if flocked is False:
            raise self._busy(self._owner(fd), alive=True)
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
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
