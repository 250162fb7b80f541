"""Files that are never torn: atomic writes (temporary file, fsync, rename), and directory locks.

Writes go to a temporary file in the same folder, are fsync'ed, then renamed over the old file (and the
folder is fsync'ed), so a crash, a full disk or a signal at any moment leaves either the old file or the
new one, never a torn one. Every file the project writes (checkpoints, metrics rewrites, configs,
reports, caches) goes through :func:`atomic_write`.
"""

from __future__ import annotations

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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some filesystems refuse fsync on folders; the data itself is already safe
        pass


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


class DirLock:
    """One process at a time in a directory (a run directory: a stray worker, a repeated command is refused).

    The lock file ``DIR/.lock`` holds "host pid"; a lock whose process is gone (same host) is stale and taken
    over, so a crash never blocks the directory.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / ".lock"
        self.held = False

    def __enter__(self) -> DirLock:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale():
                    owner = self.path.read_text().strip() or "another process"
                    raise UserError(
                        f"{self.path.parent} is being trained by {owner}; wait for it or stop it "
                        f"(delete {self.path} only if that process is gone)"
                    ) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            self.held = True
            return self
        raise UserError(f"could not lock {self.path.parent}")

    def _stale(self) -> bool:
        try:
            host, pid = self.path.read_text().split()
        except (OSError, ValueError):
            return True  # unreadable or half-written: from a crash
        if host != socket.gethostname():
            return False  # cannot tell; be safe
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
