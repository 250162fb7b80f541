"""``resnet data download``: fetch an official archive, check its md5, extract it atomically.

Nothing is left half-written: the archive is written under the output rule (:func:`resnet.io.write_output`:
streamed into a temporary file of its own, so two downloads into one folder never share one, and renamed
over the archive's name only once its md5 matches; never through a link, never over a file resnet did not
write there unless ``--force``); extraction happens in a temporary folder inside ``DEST`` that is renamed
into place in one step. What a killed download leaves behind (its ``.tmp`` file, ``.extract-*`` folders,
the ``.part`` files of earlier versions) is removed on the next start, once its process is gone.

- The official archive is always md5-checked, also from a mirror (``--url``) without ``--md5``: a file
  named like the official archive must be the official archive. A differently named file without
  ``--md5`` is checked only by extracting it (a warning says so).
- A cached archive that fails its md5 or cannot be extracted is deleted and fetched again, never reused,
  when resnet wrote it (or with ``--force``); a file of that name resnet did not write is named and left alone.
- Every read waits at most ``timeout`` seconds, and the whole download at most ``deadline`` seconds, so a
  server that trickles bytes cannot hold the command forever.

Without a network the command fails with one line saying so.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from resnet.data.datasets import DATASETS
from resnet.errors import UserError
from resnet.io import check_output, open_input, write_output

logger = logging.getLogger(__name__)

#: Longest a whole download may take (seconds): CIFAR-100 (161 MB) at 100 kB/s takes 27 minutes.
DEADLINE_S = 3600.0
#: Leftovers whose owner cannot be checked (another host, an older version) are removed after this long idle.
STALE_AFTER_S = 3600.0


class CorruptArchive(UserError):
    """The archive itself is damaged (not a full disk or a permission problem): it is deleted, not reused."""


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open_input(path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _owner_tag() -> str:
    """``@host@pid@`` in a temporary name says whose it is (host names hold no ``@``)."""
    return f"@{socket.gethostname()}@{os.getpid()}@"


def _is_stale(path: Path) -> bool:
    """A leftover of a process that is gone (this host), or idle for an hour (another host, an old version)."""
    owner = re.search(r"@([^@]+)@(\d+)@", path.name)
    if owner and owner.group(1) == socket.gethostname():
        try:
            os.kill(int(owner.group(2)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError):
            return False
        return False
    try:
        return time.time() - path.stat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def _is_leftover(name: str, archives: tuple[str, ...]) -> bool:
    """A temporary name of a download: an archive's unfinished write (``.NAME.<random>.tmp``, see
    :func:`resnet.io.atomic_write`), an ``.extract-*`` folder, an earlier version's ``.part`` file."""
    unfinished = name.endswith(".tmp") and any(name.startswith(f".{a}.") for a in archives)
    return unfinished or name.endswith(".part") or name.startswith(".extract-")


def clean_leftovers(dest: Path, archives: tuple[str, ...] = ()) -> list[Path]:
    """Remove what downloads of ``archives`` (names) that were killed left in ``dest``; returns it. An
    unfinished write carries no owner: it is removed once idle for ``STALE_AFTER_S`` (a live download writes
    every few seconds or fails its read timeout)."""
    removed = []
    for path in dest.glob(".*"):
        if _is_leftover(path.name, archives) and _is_stale(path):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _stream(url: str, out: object, name: str, progress: bool, timeout: float, deadline: float) -> str:
    """Copy ``url`` into ``out``; returns the md5 of what was copied."""
    end, h = time.monotonic() + deadline, hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        bar_on = progress and sys.stderr.isatty()  # in a log file a bar's redraws are \r-joined text
        with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not bar_on) as bar:
            while block := resp.read1(1 << 16):  # whatever has arrived: a trickle cannot stall the deadline
                out.write(block)  # type: ignore[attr-defined]
                h.update(block)
                bar.update(len(block))
                if time.monotonic() > end:
                    raise TimeoutError(f"not complete after the {deadline:g} s deadline")
    return h.hexdigest()


def fetch(
    url: str,
    dest: Path,
    md5: str | None,
    progress: bool = True,
    timeout: float = 30.0,
    deadline: float = DEADLINE_S,
) -> Path:
    """Download ``url`` to ``dest`` and verify its md5; reuse ``dest`` if it already matches.

    Written through :func:`resnet.io.write_output`: the md5 is checked before the file takes ``dest``'s
    place, and an existing ``dest`` resnet did not write (another file of that name, a link) is refused
    unless ``--force`` (:func:`resnet.io.replacing`).
    """
    if dest.is_file() and (md5 is None or md5sum(dest) == md5):  # read only: through a link is fine
        return dest

    def download(out: object) -> None:
        got = _stream(url, out, dest.name, progress, timeout, deadline)
        if md5 is not None and got != md5:
            raise UserError(f"{url}: md5 {got} does not match the expected {md5}; the download is corrupt")

    try:
        write_output(dest, download)
    except UserError:  # a refused destination, a wrong md5, a full disk: already one line
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"could not download {url} ({reason}); check the network, or fetch the file elsewhere and pass "
            "its path with --data-dir"
        ) from None
    return dest


def _safe_extractall(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract refusing absolute paths, ``..`` and links out of the tree (the "data" filter where it exists)."""
    if hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+, 3.12
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if not target.is_relative_to(root) or member.issym() or member.islnk() or member.isdev():
            raise UserError(f"refusing unsafe archive member {member.name!r}")
    tar.extractall(dest)  # noqa: S202  (every member checked above)


def extract(archive: Path, dest: Path, folder: str) -> Path:
    """Extract ``archive`` so that ``dest/folder`` appears in one rename, or not at all."""
    final = dest / folder
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".extract-{_owner_tag()}", dir=dest))
    try:
        with tarfile.open(archive, "r:*") as tar:
            _safe_extractall(tar, tmp)
        if not (tmp / folder).is_dir():
            raise CorruptArchive(f"{archive}: has no {folder}/ folder; is it the right archive?")
        try:
            os.replace(tmp / folder, final)
        except OSError:
            if not final.is_dir():  # else a concurrent download got there first: the same files
                raise
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise CorruptArchive(f"{archive}: cannot be extracted ({' '.join(str(e).split())[:300]})") from None
    except OSError as e:
        raise UserError(f"{archive}: cannot be extracted into {dest} ({e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def download_dataset(
    name: str,
    to: str | Path,
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    deadline: float = DEADLINE_S,
) -> Path:
    """Fetch and extract a registered dataset's archive (``cifar10``, ``cifar100``) into ``to``; returns the
    extracted folder.

    ``url``/``md5`` override the official location (a mirror, or a local server in tests).
    """
    archives = {n: d.download for n, d in DATASETS.items() if d.download is not None}
    if name not in archives:
        raise UserError(f"unknown dataset {name!r}; downloadable: {', '.join(archives)}")
    if not deadline > 0:
        raise UserError(f"--deadline must be a positive number of seconds, got {deadline}")
    layout = archives[name]
    dest = Path(to).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    clean_leftovers(dest, (layout.archive,))
    if md5 is None and (url is None or Path(urllib.parse.urlparse(url).path).name == layout.archive):
        md5 = layout.md5  # the official archive's name: it must be the official archive
    elif md5 is None:
        logger.warning("no --md5 for %s; the archive is checked only by extracting it", url)
    archive = dest / layout.archive
    for attempt in (1, 2):
        cached = archive.is_file()
        fetch(url or layout.url, archive, md5, progress, deadline=deadline)
        try:
            return extract(archive, dest, layout.folder)
        except CorruptArchive as e:
            _check_ours(archive, e)
            archive.unlink(missing_ok=True)  # never reused: the next attempt fetches it again
            if not cached or attempt == 2:
                raise UserError(f"{e}; it was deleted: run the command again to fetch it anew") from None
    raise AssertionError("unreachable")


def _check_ours(archive: Path, problem: UserError) -> None:
    """A damaged archive is deleted only when resnet wrote it (or under ``--force``): another file of that name
    is the user's, named and left alone (the output rule)."""
    try:
        check_output(archive)
    except UserError:
        raise UserError(
            f"{problem}; resnet did not write it (or it changed since), so it is left as it is: remove it, or "
            "pass --force to have it replaced"
        ) from None
