"""One process at a time in a directory: :class:`DirLock`."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from resnet.errors import UserError
from resnet.io.files import _kind, shown


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
