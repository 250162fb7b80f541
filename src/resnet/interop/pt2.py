"""``.pt2`` files read back: ``torch.export``'s program of the inference network, written by ``resnet export
--format pt2`` (:func:`resnet.interop.export.export_pt2`) and run by ``resnet eval`` / ``resnet predict`` like an
``.onnx`` file.

The program is the BN-folded fp32 network (:mod:`resnet.interop.inference`) with a symbolic batch; the same
metadata as the ONNX export (model, input size, resize and crop, preprocessing, classes, dataset, recipe)
travels inside as the extra file ``resnet.json``. Anyone can load it without this package:
``torch.export.load(path).module()(x)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from resnet.checkpoint import Checkpoint
from resnet.errors import UserError
from resnet.interop.backends import Engine, checkpoint_from_metadata
from resnet.interop.export import META_FILE

SUFFIX = ".pt2"


def is_pt2(path: str | Path) -> bool:
    return str(path).lower().endswith(SUFFIX)


def read_pt2(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A ``.pt2`` written by ``resnet export``: its ``ExportedProgram`` and its metadata; one line otherwise."""
    extra = {META_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - zip, pickle and schema errors alike
        raise UserError(f"{path}: not a readable torch.export (.pt2) file ({type(e).__name__})") from None
    try:
        meta = json.loads(extra[META_FILE])
        if not isinstance(meta, dict) or "resnet.model_name" not in meta:
            raise ValueError("no resnet.model_name")
    except ValueError:
        raise UserError(f"{path}: not written by `resnet export` (no resnet metadata); re-export it") from None
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
