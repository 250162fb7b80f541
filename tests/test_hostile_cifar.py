"""CIFAR batches under hostile input (issue 12: items 5 and 16), on copies of the genuine subset.

Every test is named after the defect it guards against; each failed before the fix.
"""

from __future__ import annotations

import io
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnet.data.cifar import load_cifar
from resnet.data.cifar_pickle import read_pickle
from resnet.errors import UserError

from conftest import HANG

SRC = Path(__file__).resolve().parents[1] / "src"


def copy_subset(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "cifar-10-batches-py"
    shutil.copytree(src, dst)
    return dst


def rewrite(folder: Path, name: str, change) -> None:
    """Load a batch with plain pickle, let ``change`` edit its dict, write it back (Python-3 pickle)."""
    with (folder / name).open("rb") as f:
        data = pickle.load(f, encoding="latin1")
    change(data)
    (folder / name).write_bytes(pickle.dumps(data, protocol=4))


# --- item 5: values a CIFAR batch cannot hold ---------------------------------------------------------------


@pytest.mark.parametrize("label", [255, 10, -1])
def test_a_label_outside_0_to_9_is_refused_not_made_a_new_class(cifar_subset: Path, tmp_path: Path, label: int):
    folder = copy_subset(cifar_subset, tmp_path)
    rewrite(folder, "data_batch_3", lambda d: d["labels"].__setitem__(7, label))
    with pytest.raises(UserError, match=rf"data_batch_3: labels must be integers 0..9 .*found {label}"):
        load_cifar(folder)


def test_pixels_of_another_dtype_are_refused_not_wrapped_modulo_256(cifar_subset: Path, tmp_path: Path):
    folder = copy_subset(cifar_subset, tmp_path)
    reference = load_cifar(folder).test_x
    rewrite(folder, "test_batch", lambda d: d.__setitem__("data", d["data"].astype(np.int16)))
    np.testing.assert_array_equal(load_cifar(folder).test_x, reference)  # the same values: accepted
    rewrite(folder, "test_batch", lambda d: d["data"].__setitem__((0, 0), 256))
    with pytest.raises(UserError, match=r"test_batch: pixel array of int16 outside 0..255"):
        load_cifar(folder)
    rewrite(folder, "test_batch", lambda d: d.__setitem__("data", d["data"].astype(np.float32) / 255))
    with pytest.raises(UserError, match=r"test_batch: pixel array of float32"):
        load_cifar(folder)


def test_a_meta_file_with_an_extra_class_name_is_refused(cifar_subset: Path, tmp_path: Path):
    folder = copy_subset(cifar_subset, tmp_path)
    rewrite(folder, "batches.meta", lambda d: d["label_names"].append("unicorn"))
    with pytest.raises(UserError, match=r"batches.meta: 11 class names for the 10 classes"):
        load_cifar(folder)


def test_string_labels_are_refused_with_the_file_name(cifar_subset: Path, tmp_path: Path):
    folder = copy_subset(cifar_subset, tmp_path)
    rewrite(folder, "data_batch_1", lambda d: d["labels"].__setitem__(0, "cat"))
    with pytest.raises(UserError, match=r"data_batch_1: labels must be integers"):
        load_cifar(folder)


# --- item 16: a fuzzed pickle may not reserve gigabytes -------------------------------------------------------


def memo_bomb() -> bytes:
    """An empty dict stored at memo slot 2^31 - 16: the unpickler grows its memo table to twice that (32 GB)."""
    return b"\x80\x02}r" + struct.pack("<I", 0x7FFFFFF0) + b"."


def array_bomb() -> bytes:
    """numpy's own ``_reconstruct(ndarray, (10**10,), b'b')``: an empty 10^10-element array is allocated at once."""
    head = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    return head + b"\x8a\x05" + (10**10).to_bytes(5, "little") + b"\x85U\x01b\x87R."


def test_memo_and_array_bombs_are_refused_within_a_2gb_address_space():
    # In a child limited to 2 GB more address space than it has after start-up: before the fix both raised
    # MemoryError (or reserved 10-32 GB where overcommit allowed it).
    code = f"""
import io, resource, sys
sys.path.insert(0, {str(SRC)!r})
from resnet.data.cifar_pickle import read_pickle
from resnet.errors import UserError
used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + (2 << 30), resource.RLIM_INFINITY))
for blob in {memo_bomb()!r}, {array_bomb()!r}:
    try:
        read_pickle(io.BytesIO(blob), "bomb")
    except UserError as e:
        print("refused:", e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "memo index 2147483632" in out.stdout and "larger than the file holding it" in out.stdout


def test_an_object_array_is_refused():
    blob = pickle.dumps({"data": np.array([1, "x"], dtype=object), "labels": [0]}, protocol=4)
    with pytest.raises(UserError, match="objects are not allowed"):
        read_pickle(io.BytesIO(blob), "obj")


@pytest.fixture(scope="module")
def small_batch(cifar_subset: Path) -> bytes:
    """A 16-image batch in the official Python-2 layout (protocol 2 with bytes keys, as the release has)."""
    with (cifar_subset / "test_batch").open("rb") as f:
        data = pickle.load(f, encoding="bytes")
    return pickle.dumps({b"data": data[b"data"][:16], b"labels": data[b"labels"][:16]}, protocol=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(1, 255)), min_size=1, max_size=8), cut=st.booleans())
def test_byte_flips_in_a_batch_give_a_dict_or_one_user_error(small_batch: bytes, flips, cut: bool):
    blob = bytearray(small_batch)
    for pos, xor in flips:
        blob[pos % len(blob)] ^= xor
    if cut:
        blob = blob[: flips[0][0] % len(blob)]
    try:
        data = read_pickle(io.BytesIO(bytes(blob)), "fuzzed")
    except UserError as e:
        assert str(e).startswith("fuzzed:") and "\n" not in str(e)
    else:
        assert isinstance(data, dict)


def test_a_damaged_archive_is_one_line_whatever_breaks_inside(cifar_subset: Path, tmp_path: Path, monkeypatch):
    import tarfile
    import zlib

    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar_subset, arcname="cifar-10-batches-py")
    blob = bytearray(archive.read_bytes())
    blob[10 + len("cifar-10-python.tar") + 1] = 0x07  # the first deflate block gets the reserved type 11
    archive.write_bytes(bytes(blob))
    with pytest.raises(UserError) as e:
        load_cifar(archive)
    assert "not a readable CIFAR archive" in str(e.value) and "\n" not in str(e.value)
    # Deeper in the stream a damaged block surfaces as a bare zlib.error while the members are listed.
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar_subset, arcname="cifar-10-batches-py")

    def damaged(self):
        raise zlib.error("Error -3 while decompressing data: invalid literal/lengths set")

    monkeypatch.setattr(tarfile.TarFile, "getmembers", damaged)
    with pytest.raises(UserError, match="not a readable CIFAR archive .*invalid literal"):
        load_cifar(archive)
