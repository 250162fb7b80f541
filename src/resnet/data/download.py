"""``resnet data download``: fetch an official archive, check its md5, extract it atomically.

Nothing is left half-written: the archive streams into ``DEST/.NAME.part`` and is renamed only once its
md5 matches; extraction happens in a temporary folder inside ``DEST`` that is renamed into place in one
step. Without a network the command fails with one line saying so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from resnet.data.cifar import LAYOUTS
from resnet.errors import UserError


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: Path, md5: str | None, progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (atomically) and verify its md5; reuse ``dest`` if it already matches."""
    if dest.is_file() and (md5 is None or md5sum(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, part.open("wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", e)
        raise UserError(
            f"could not download {url} ({reason}); check the network, or fetch the file elsewhere and pass "
            "its path with --data-dir"
        ) from None
    if md5 is not None:
        got = md5sum(part)
        if got != md5:
            part.unlink(missing_ok=True)
            raise UserError(f"{url}: md5 {got} does not match the expected {md5}; the download is corrupt")
    os.replace(part, dest)
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
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        with tarfile.open(archive, "r:*") as tar:
            _safe_extractall(tar, tmp)
        if not (tmp / folder).is_dir():
            raise UserError(f"{archive}: has no {folder}/ folder; is it the right archive?")
        os.replace(tmp / folder, final)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise UserError(f"{archive}: cannot be extracted ({e}); delete it and download again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def download_dataset(
    name: str, to: str | Path, url: str | None = None, md5: str | None = None, progress: bool = True
) -> Path:
    """Fetch and extract ``cifar10`` or ``cifar100`` into ``to``; returns the extracted folder.

    ``url``/``md5`` override the official location (a mirror, or a local server in tests).
    """
    if name not in LAYOUTS:
        raise UserError(f"unknown dataset {name!r}; downloadable: {', '.join(LAYOUTS)}")
    layout = LAYOUTS[name]
    dest = Path(to).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    archive = fetch(url or layout.url, dest / layout.archive, md5 if url else (md5 or layout.md5), progress)
    return extract(archive, dest, layout.folder)
