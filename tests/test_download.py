"""``resnet data download`` against a local HTTP server on loopback (never the network)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from resnet.cli import main
from resnet.data.cifar import load_cifar
from resnet.data.download import download_dataset
from resnet.errors import UserError


@pytest.fixture()
def archive(cifar_subset: Path, tmp_path: Path) -> tuple[Path, str]:
    """A cifar-10-python.tar.gz built from the genuine subset, and its md5."""
    served = tmp_path / "served"
    served.mkdir()
    path = served / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(cifar_subset, arcname="cifar-10-batches-py")
    return path, hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture()
def server(archive: tuple[Path, str]):
    folder = archive[0].parent

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(folder), **kw)

        def log_message(self, *a):  # keep test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_md5_and_extracts(server: str, archive: tuple[Path, str], tmp_path: Path, cifar_subset: Path):
    dest = tmp_path / "data"
    folder = download_dataset("cifar10", dest, url=f"{server}/cifar-10-python.tar.gz", md5=archive[1], progress=False)
    assert folder == dest / "cifar-10-batches-py"
    np.testing.assert_array_equal(load_cifar(folder).test_x, load_cifar(cifar_subset).test_x)
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    # A second call reuses what is there (the server is not needed any more).
    assert download_dataset("cifar10", dest, url="http://127.0.0.1:9/none", md5=archive[1], progress=False) == folder


def test_md5_mismatch_leaves_nothing_behind(server: str, tmp_path: Path):
    dest = tmp_path / "data"
    with pytest.raises(UserError, match="md5"):
        download_dataset("cifar10", dest, url=f"{server}/cifar-10-python.tar.gz", md5="0" * 32, progress=False)
    assert list(dest.iterdir()) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_gives_one_clear_line(tmp_path: Path, capsys):
    url = f"http://127.0.0.1:{free_port()}/cifar-10-python.tar.gz"  # nothing listens there
    code = main(["data", "download", "cifar10", "--to", str(tmp_path / "d"), "--url", url, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "could not download" in err and len(err.strip().splitlines()) == 1
    assert not any((tmp_path / "d").iterdir())


def test_cli_download(server: str, archive: tuple[Path, str], tmp_path: Path, capsys):
    url = f"{server}/cifar-10-python.tar.gz"
    code = main(["data", "download", "cifar10", "--to", str(tmp_path / "d"), "--url", url, "--md5", archive[1]])
    assert code == 0
    assert "ready in" in capsys.readouterr().out
    assert (tmp_path / "d" / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_archive_with_an_escaping_member_is_refused(tmp_path: Path):
    from resnet.data.download import extract

    bad = tmp_path / "bad.tar.gz"
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(evil, arcname="../escaped.txt")
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError):
        extract(bad, tmp_path / "out", "cifar-10-batches-py")
    assert not (tmp_path / "escaped.txt").exists()
    assert list((tmp_path / "out").iterdir()) == []  # the temporary extraction folder is gone too
