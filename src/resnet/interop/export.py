"""Deployment formats: ONNX (verified with onnxruntime), torch.export (``.pt2``) and TorchScript, from any
checkpoint ``convert`` accepts.

The exported graph is the inference fast path's network (:mod:`resnet.interop.inference`: BN folded into the
convolutions), fp32, taking the *normalised* ``N x C x H x W`` input at the model's native size and
returning logits. The preprocessing constants and class names travel inside the file (ONNX
``metadata_props``; ``.pt2`` and TorchScript: the extra file ``resnet.json``) as the model's description
(:class:`resnet.metadata.ModelMetadata` under ``resnet.metadata``), with the resize and crop ``predict``
applies spelled out (``resnet.resize``: shorter side, filter, crop), so a deployment needs nothing else to
reproduce ``predict``'s probabilities: resize and crop as recorded, ``x = (pixels / 255 - mean) / std``,
then ``softmax(logits)``.

ONNX goes through ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript; the default exporter
since torch 2.9), opset 18. The batch dimension is symbolic (any batch) unless ``dynamic_batch=False``
(``--static-batch``) fixes it to 1. ``.pt2`` is ``torch.export``'s program (``torch.export.save``), batch
symbolic, loaded back with ``torch.export.load(path).module()``. TorchScript is traced; a traced ResNet accepts
any batch size. (TorchScript is deprecated upstream in favour of torch.export; it is kept for runtimes that
still load it, e.g. LibTorch, and its deprecation is said once, not as torch's repeated warnings.)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet.checkpoint import Checkpoint
from resnet.errors import UserError
from resnet.eval.views import view_geometry
from resnet.interop.inference import fold_batchnorm
from resnet.io import discard_output, write_output
from resnet.models import model_info

FORMATS = ("onnx", "pt2", "torchscript")
SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".torchscript.pt"}
ONNX_OPSET = 18
#: The extra file holding :func:`deployment_metadata` inside ``.pt2`` and TorchScript files.
META_FILE = "resnet.json"


#: Largest relative difference between onnxruntime and PyTorch outputs that counts as a faithful export (the
#: tests see 3e-7 to 1e-6 in fp32; beyond 1e-3 something in the graph is wrong, not just rounding).
ONNX_TOLERANCE = 1e-3


def deployment_metadata(ckpt: Checkpoint) -> dict[str, str]:
    """What a runtime needs besides the graph: the model's description (``resnet.metadata``: model name, input
    size, preprocessing, classes, resize and crop), how ``predict`` resizes in words and numbers
    (``resnet.resize``) and the recipe (``resnet.recipe``), all JSON."""
    meta = ckpt.metadata()
    if ckpt.config:  # lets `resnet eval model.onnx` rebuild the test data exactly as for the checkpoint
        meta.extra["recipe"] = ckpt.config
    size = (int(ckpt.input_size[1]), int(ckpt.input_size[2]))
    crops = model_info(ckpt.model_name).test_views == "crops"
    return meta.onnx_props(view_geometry(crops, size, meta.resize.shorter_side))


#: Suffixes of weights files that the default output name replaces (any other name keeps all of it).
WEIGHTS_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin", ".ckpt")


def default_output(checkpoint: str | Path, fmt: str) -> Path:
    """``runs/x/model.onnx`` for a run directory, ``weights.onnx`` next to a checkpoint file ``weights.pt``.

    Only the last suffix goes: ``a.seed0.pt`` and ``a.seed1.pt`` export to ``a.seed0.onnx`` and ``a.seed1.onnx``.
    """
    path = Path(checkpoint)
    if path.is_dir():
        return path / f"model{SUFFIXES[fmt]}"
    stem = path.stem if path.suffix in WEIGHTS_SUFFIXES else path.name
    return path.with_name(stem + SUFFIXES[fmt])


def _require_onnx() -> None:
    missing = []
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UserError(f"ONNX export needs {' and '.join(missing)}; pip install 'resnet-paper[export]'")


@contextlib.contextmanager
def _quiet_exporter() -> Any:
    """Silence the exporter's progress prints and its 'torchvision is not installed' log lines."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(net: nn.Module, path: str | Path, example: torch.Tensor, *, dynamic_batch: bool, meta: dict) -> None:
    """Export ``net`` (eval mode) to ONNX at ``path`` atomically, with ``meta`` in ``metadata_props``."""
    _require_onnx()
    import onnx

    shapes = {"x": {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
    with _quiet_exporter():
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=["input"],
            output_names=["logits"],
            opset_version=ONNX_OPSET,
            verbose=False,
        )
    assert program is not None  # torch.onnx.export returns None only without dynamo
    proto = program.model_proto
    for key, value in meta.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    write_output(path, data)


def export_torchscript(net: nn.Module, path: str | Path, example: torch.Tensor, *, meta: dict) -> str | None:
    """Trace ``net`` and save it atomically, with ``meta`` as the extra file ``resnet.json``.

    Returns one note when this torch calls TorchScript deprecated (its own warnings, several per export, are
    caught rather than printed), else ``None``.
    """
    if not all(hasattr(getattr(torch, "jit", None), f) for f in ("trace", "freeze", "save")):
        raise UserError(f"torch {torch.__version__} ships no TorchScript; export with --format pt2 (torch.export)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.freeze(torch.jit.trace(net, example))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={META_FILE: json.dumps(meta)})
    write_output(path, buffer.getvalue())
    if any("deprecat" in str(w.message).lower() for w in caught):
        return f"TorchScript is deprecated in torch {torch.__version__}; --format pt2 (torch.export) is its successor"
    return None


def export_pt2(net: nn.Module, path: str | Path, example: torch.Tensor, *, meta: dict) -> None:
    """``torch.export`` ``net`` with a symbolic batch and save the program under the output rule, ``meta`` as
    the extra file ``resnet.json`` (``torch.export.load(path, extra_files={"resnet.json": ""})`` reads it back)."""
    # An example batch of 2: torch.export specialises a dimension of size 1, which would pin the batch.
    batch = torch.cat([example, example.flip(0).neg()]) if len(example) == 1 else example
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(net, (batch,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        buffer = io.BytesIO()
        torch.export.save(program, buffer, extra_files={META_FILE: json.dumps(meta)})
    write_output(path, buffer.getvalue())


def pt2_max_relative_error(path: str | Path, model: nn.Module, x: torch.Tensor) -> float:
    """max |loaded - model| / max |model| on ``x``: the saved program read back by ``torch.export.load``
    against the original eval-mode model (so the check covers BN folding and the batch being symbolic)."""
    program = torch.export.load(str(path))
    with torch.inference_mode():
        ref, got = model(x), program.module()(x)
    if not torch.isfinite(got).all():
        discard_output(path)
        raise UserError(f"{path}: the exported program's outputs are NaN/Inf; nothing was exported")
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def onnxruntime_max_relative_error(path: str | Path, net: nn.Module, inputs: list[torch.Tensor]) -> float | None:
    """max |ort - torch| / max |torch| over ``inputs``, ``net`` being the original eval-mode model (so the check
    covers BN folding too); ``None`` when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.inference_mode():
        for x in inputs:
            ref = net(x).numpy()
            got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
            # max() would swallow a NaN (max(0.0, nan) is 0.0): a non-finite output is a failure of its own.
            if not np.isfinite(ref).all():
                raise UserError(f"{path}: PyTorch's outputs are NaN/Inf: the weights are damaged; nothing was exported")
            if not np.isfinite(got).all():
                raise UserError(
                    f"{path}: onnxruntime's outputs are NaN/Inf where PyTorch's are finite; the export is not "
                    "trustworthy, please report it with your torch/onnx versions"
                )
            worst = max(worst, float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)))
    return worst


def check_finite_outputs(model: nn.Module, example: torch.Tensor, where: str) -> None:
    """Refuse to export a model whose outputs are NaN/Inf (non-finite or overflowing weights)."""
    with torch.inference_mode():
        if not torch.isfinite(model(example)).all():
            raise UserError(
                f"{where}: the model's outputs are NaN/Inf on a test input: the weights are damaged (non-finite "
                "or huge values); nothing was exported"
            )


def export_checkpoint(
    ckpt: Checkpoint,
    fmt: str,
    out: str | Path,
    *,
    dynamic_batch: bool = True,
    model: nn.Module | None = None,
    where: str = "checkpoint",
    tolerance: float = ONNX_TOLERANCE,
) -> dict[str, Any]:
    """``resnet export``: write ``out`` in ``fmt``; returns what was done (and, for ONNX, the verification).

    ``model`` is the checkpoint's eval-mode model when the caller already built it. An ONNX (or ``.pt2``)
    file whose onnxruntime (``torch.export.load``) outputs differ from PyTorch's by more than ``tolerance``
    (relative), or are NaN/Inf, is removed again and a ``UserError`` raised: a library caller gets the same
    check as ``resnet export``.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    model = (model if model is not None else ckpt.build_model(where)).eval()
    net = fold_batchnorm(model)
    c, h, w = ckpt.input_size
    example = torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(0))
    meta = deployment_metadata(ckpt)
    check_finite_outputs(model, example, where)
    result: dict[str, Any] = {"path": str(out), "format": fmt, "input": [c, h, w], "dynamic_batch": dynamic_batch}
    if fmt == "onnx":
        export_onnx(net, out, example, dynamic_batch=dynamic_batch, meta=meta)
        batches = [example, torch.randn(4, c, h, w, generator=torch.Generator().manual_seed(1))]
        try:
            err = onnxruntime_max_relative_error(out, model, batches if dynamic_batch else batches[:1])
        except UserError:
            discard_output(out)  # nobody should deploy a file that failed its check
            raise
        if err is not None and not err <= tolerance:
            discard_output(out)
            raise UserError(
                f"{out}: onnxruntime disagrees with PyTorch (max relative error {err:.1e} > {tolerance:g}); "
                "the exported file is not trustworthy, please report it with your torch/onnx versions"
            )
        result["max_rel_error"] = err
    elif fmt == "pt2":
        export_pt2(net, out, example, meta=meta)
        result["dynamic_batch"] = True
        batch = torch.randn(4, c, h, w, generator=torch.Generator().manual_seed(1))
        err = pt2_max_relative_error(out, model, batch)
        if not err <= tolerance:  # the same bar as ONNX: beyond it the program is wrong, not just rounded
            discard_output(out)
            raise UserError(
                f"{out}: torch.export.load disagrees with PyTorch (max relative error {err:.1e} > {tolerance:g}); "
                "the exported file is not trustworthy, please report it with your torch version"
            )
        result["pt2_max_rel_error"] = err
    else:
        result["note"] = export_torchscript(net, out, example, meta=meta)
        result["dynamic_batch"] = True
    result["bytes"] = os.path.getsize(out)
    return result
