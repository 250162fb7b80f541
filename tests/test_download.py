"""``resnet data download`` against a local HTTP server on loopback (never the network)."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from resnet.cli import main
from resnet.data import download
from resnet.data.cifar import load_cifar
from resnet.data.download import download_dataset, fetch, md5sum
from resnet.errors import UserError
from resnet.logs import console_level

from conftest import HANG


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
    # the archive is recorded as resnet's own output (resnet.io's output rule)
    assert sorted(p.name for p in dest.iterdir()) == [
        ".resnet-outputs.json",
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
    ]
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


# --- issue 12, item 18: downloads under faults ---------------------------------------------------------------


@pytest.fixture()
def slow_server(archive: tuple[Path, str]):
    """Serves the archive after a 0.3 s pause (so two clients overlap); ``/drip`` sends one byte per 0.1 s."""
    blob = archive[0].read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            drip = self.path.startswith("/drip")
            self.send_response(200)
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            try:
                if drip:
                    for k in range(len(blob)):
                        self.wfile.write(blob[k : k + 1])
                        self.wfile.flush()
                        time.sleep(0.1)
                else:
                    time.sleep(0.3)
                    self.wfile.write(blob)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_mirror_url_without_md5_still_checks_the_official_md5(server: str, tmp_path: Path):
    # The served file is named like the official archive but is not it (it is built from the subset).
    with pytest.raises(UserError, match="does not match the expected c58f30108f718f92721af3b95e74349a"):
        download_dataset("cifar10", tmp_path / "d", url=f"{server}/cifar-10-python.tar.gz", progress=False)
    assert list((tmp_path / "d").iterdir()) == []


def test_a_trickling_server_hits_the_overall_deadline(slow_server: str, tmp_path: Path):
    start = time.monotonic()
    with pytest.raises(UserError, match="deadline"):
        download_dataset("cifar10", tmp_path / "d", url=f"{slow_server}/drip/x.tar.gz", progress=False, deadline=1.0)
    assert time.monotonic() - start < 20  # each byte arrives well within the 30 s read timeout
    assert list((tmp_path / "d").iterdir()) == []


def test_a_corrupt_cached_archive_is_fetched_again_not_reused(server: str, archive: tuple[Path, str], tmp_path: Path):
    dest = tmp_path / "d"
    (archive[0].parent / "cut.tar.gz").write_bytes(archive[0].read_bytes()[:5000])
    fetch(f"{server}/cut.tar.gz", dest / "cifar-10-python.tar.gz", None, False)  # a cut download resnet wrote
    (archive[0].parent / "mirror.tar.gz").write_bytes(archive[0].read_bytes())
    folder = download_dataset("cifar10", dest, url=f"{server}/mirror.tar.gz", progress=False)  # no md5 known
    assert (folder / "data_batch_5").is_file()
    assert md5sum(dest / "cifar-10-python.tar.gz") == archive[1]


def test_an_archive_resnet_did_not_write_is_never_replaced_without_force(
    server: str, archive: tuple[Path, str], tmp_path: Path, capsys
):
    dest, url = tmp_path / "d", f"{server}/cifar-10-python.tar.gz"
    dest.mkdir()
    theirs = dest / "cifar-10-python.tar.gz"
    theirs.write_bytes(b"the user's own file of that name")
    with pytest.raises(UserError, match="resnet did not write it .*--force"):
        download_dataset("cifar10", dest, url=url, md5=archive[1], progress=False)
    (archive[0].parent / "mirror.tar.gz").write_bytes(archive[0].read_bytes())
    with pytest.raises(
        UserError, match=r"cannot be extracted \(.*\); resnet did not write it .*--force"
    ):  # no md5: reused
        download_dataset("cifar10", dest, url=f"{server}/mirror.tar.gz", progress=False)
    assert theirs.read_bytes() == b"the user's own file of that name"  # neither replaced nor deleted
    # A link there is never written through (its target stays as it is), --force or not.
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"keep me")
    theirs.unlink()
    theirs.symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        download_dataset("cifar10", dest, url=url, md5=archive[1], progress=False)
    assert target.read_bytes() == b"keep me"
    # --force replaces the entry itself (the link, not its target) with the checked archive.
    assert main(["data", "download", "cifar10", "--to", str(dest), "--url", url, "--md5", archive[1], "--force"]) == 0
    assert not theirs.is_symlink() and md5sum(theirs) == archive[1] and target.read_bytes() == b"keep me"
    assert "ready in" in capsys.readouterr().out


def test_the_library_logs_quietly_and_the_command_shows_the_line(
    server: str, archive: tuple[Path, str], tmp_path: Path, capfd, caplog
):
    (archive[0].parent / "mirror.tar.gz").write_bytes(archive[0].read_bytes())
    url = f"{server}/mirror.tar.gz"  # a mirror's own name, no --md5: a warning
    assert console_level() is None  # nothing configured logging, as in a program that imports the library
    download_dataset("cifar10", tmp_path / "lib", url=url, progress=False)
    assert capfd.readouterr() == ("", "")  # neither stream: the library logs, it does not print
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "no --md5 for" in caplog.messages[0]
    # The command shows the same line as before (on stderr, --quiet or not: it only hides the progress bar).
    assert main(["data", "download", "cifar10", "--to", str(tmp_path / "cli"), "--url", url, "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert err == f"warning: no --md5 for {url}; the archive is checked only by extracting it\n"
    assert out.startswith("cifar10 is ready in ")
    assert console_level() is None  # and leaves the library quiet again after it


def test_concurrent_downloads_do_not_share_a_part_file(
    slow_server: str, archive: tuple[Path, str], tmp_path: Path, monkeypatch
):
    moved, real_replace = [], os.replace
    monkeypatch.setattr(download.os, "replace", lambda a, b: moved.append(str(a)) or real_replace(a, b))
    dest, url, results = tmp_path / "d", f"{slow_server}/cifar-10-python.tar.gz", []
    threads = [
        threading.Thread(target=lambda: results.append(fetch(url, dest / "cifar-10-python.tar.gz", archive[1], False)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=HANG)
    parts = [m for m in moved if m.endswith(".tmp") and "cifar-10-python.tar.gz" in m]
    assert len(results) == 2 and len(parts) == 2 and parts[0] != parts[1]
    assert md5sum(dest / "cifar-10-python.tar.gz") == archive[1]
    assert sorted(p.name for p in dest.iterdir()) == [".resnet-outputs.json", "cifar-10-python.tar.gz"]


def test_leftovers_of_a_killed_download_are_cleaned_on_the_next_start(server: str, archive, tmp_path: Path):
    dest = tmp_path / "d"
    dest.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, host = int(gone.stdout), socket.gethostname()
    (dest / f".extract-@{host}@{dead}@k3j2").mkdir()
    (dest / f".extract-@{host}@{dead}@k3j2" / "half").write_text("x")
    (dest / f".cifar-10-python.tar.gz.@{host}@{dead}@a8b1.part").write_bytes(b"half")
    (dest / ".cifar-10-python.tar.gz.part").write_bytes(b"from an older version")
    killed = dest / ".cifar-10-python.tar.gz.k1ll3d.tmp"  # an unfinished write, idle for two hours
    killed.write_bytes(b"half")
    for old in (dest / ".cifar-10-python.tar.gz.part", killed):
        os.utime(old, (time.time() - 7200, time.time() - 7200))
    live = dest / f".extract-@{host}@{os.getpid()}@live"  # a download running now: left alone
    live.mkdir()
    writing = dest / ".cifar-10-python.tar.gz.l1v3.tmp"  # and its write, just touched
    writing.write_bytes(b"")
    mine = dest / ".notes.tmp"  # not a download's name at all
    mine.write_text("x")
    os.utime(mine, (time.time() - 7200, time.time() - 7200))
    download_dataset("cifar10", dest, url=f"{server}/cifar-10-python.tar.gz", md5=archive[1], progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [".resnet-outputs.json", "cifar-10-batches-py", "cifar-10-python.tar.gz", live.name, writing.name, mine.name]
    )
