"""``.pt2`` files read back: ``torch.export``'s program of the inference network, written by ``resnet export
--format pt2`` (:func:`resnet.interop.export.export_pt2`) and run by ``resnet eval`` / ``resnet predict`` like an
``.onnx`` file.

The program is the BN-folded fp32 network (:mod:`resnet.interop.inference`) with a symbolic batch; the same
metadata as the ONNX export (model, input size, resize and crop, preprocessing, classes, dataset, recipe)
travels inside as the extra file ``resnet.json``. Anyone can load it without this package:
``torch.export.load(path).module()(x)``.

``torch.export.load`` unpickles whatever an archive marks as pickled (weights, constants, custom objects),
with ``weights_only=False``: a crafted ``.pt2`` could run code. So an archive is opened here first and refused
unless it holds only what ``resnet export`` writes: raw weight bytes described by JSON, no pickled payload,
and sample inputs that ``torch.load(weights_only=True)`` reads.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any

import torch

from resnet.checkpoint import Checkpoint
from resnet.checkpoint.storage import check_archive as check_unpacked_size
from resnet.errors import UserError
from resnet.interop.backends import Engine, checkpoint_from_metadata
from resnet.interop.export import META_FILE
from resnet.io import open_input
from resnet.safe_json import load_json

SUFFIX = ".pt2"
#: The metadata of a .pt2 file: a description and a recipe, a few KB; larger is not ours.
MAX_META_BYTES = 16 << 20
#: Members of the archives ``torch.export.save`` writes for our programs (below the archive's own folder).
_PLAIN_MEMBERS = re.compile(
    r"(data/weights/weight_\d+|data/constants/tensor_\d+|data/(weights|constants)/model_\w*config\.json|"
    r"models/model\.json|extra/[\w.]+|archive_format|archive_version|\.data/version|byteorder|"
    r"\.data/serialization_id|data/sample_inputs/model\.pt)"
)
_MAX_MEMBERS = 10_000


def is_pt2(path: str | Path) -> bool:
    return str(path).lower().endswith(SUFFIX)


def read_pt2(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A ``.pt2`` written by ``resnet export``: its ``ExportedProgram`` and its metadata; one line otherwise.

    Read as every outside file is: a regular file (:func:`resnet.io.open_input`), its archive checked for its
    unpacked size and for pickled payloads before torch reads it (:func:`check_pt2_archive`), the metadata
    through the bounded JSON reader and validated by :class:`resnet.metadata.ModelMetadata`."""
    extra = {META_FILE: ""}
    try:
        with open_input(path) as f:
            check_unpacked_size(Path(path), f)  # a zip bomb is refused before any member is read
            check_pt2_archive(path, f)
            f.seek(0)
            program = torch.export.load(f, extra_files=extra)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - zip, pickle and schema errors alike
        raise UserError(f"{path}: not a readable torch.export (.pt2) file ({type(e).__name__})") from None
    meta = load_json(extra[META_FILE] or "null", f"{path}: {META_FILE}", max_bytes=MAX_META_BYTES)
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise UserError(f"{path}: not written by `resnet export` (no resnet metadata); re-export it")
    return program, meta


def checkpoint_from_pt2(path: str | Path) -> Checkpoint:
    """The description a ``.pt2`` file written by ``resnet export`` carries, as a weightless checkpoint."""
    return checkpoint_from_metadata(read_pt2(path)[1], path)


def pt2_engine(path: str | Path, precision: str = "fp32") -> Engine:
    """The saved program as an engine (fp32, on the CPU, as it was exported)."""
    if precision != "fp32":
        raise UserError(f"{path}: a .pt2 program runs as exported (fp32); drop --precision {precision}")
    program, _ = read_pt2(path)
    net = program.module()

    @torch.inference_mode()
    def run(x: torch.Tensor) -> torch.Tensor:
        return net(x.float().cpu())

    return Engine(run, "torch.export", "fp32")


def check_pt2_flags(path: str | Path, backend: str | None, compile: bool) -> None:
    """A ``.pt2`` program runs as exported: no other backend, no torch.compile."""
    if backend not in (None, "auto", "torch") or compile:
        flag = "--compile" if compile else f"--backend {backend}"
        raise UserError(f"{path}: a .pt2 program runs as exported (torch, fp32); drop {flag}")


def check_pt2_archive(path: str | Path, f: IO[bytes] | None = None) -> None:
    """Refuse a ``.pt2`` whose loading could unpickle code (see the module's docstring); one line. ``f``: ``path``
    already open (read instead of opening ``path`` again)."""
    try:
        with zipfile.ZipFile(path if f is None else f) as z:
            infos = z.infolist()
            if len(infos) > _MAX_MEMBERS:
                raise UserError(f"{path}: {len(infos)} archive members; not a .pt2 file of `resnet export`")
            for info in infos:
                _check_member(z, info, path)
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable torch.export (.pt2) file ({type(e).__name__})") from None


def _check_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: str | Path) -> None:
    name = info.filename.split("/", 1)[-1]  # below the archive's top folder
    if not _PLAIN_MEMBERS.fullmatch(name):
        raise UserError(f"{path}: the archive holds {info.filename!r}, which `resnet export` never writes; refused")
    if name.endswith("config.json"):
        if re.search(rb'"use_pickle"\s*:\s*true', z.read(info)):
            raise UserError(f"{path}: {info.filename} marks pickled payloads, which could run code; refused")
    elif name.endswith("sample_inputs/model.pt"):
        try:  # tensors only (torch would otherwise retry it with weights_only=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's remarks on a foreign pickle protocol
                torch.load(io.BytesIO(z.read(info)), weights_only=True)
        except Exception:  # noqa: BLE001 - UnpicklingError and friends
            raise UserError(f"{path}: {info.filename} holds more than tensors, which could run code; refused") from None
