"""Deployment formats: ONNX (verified with onnxruntime) and TorchScript, from any checkpoint ``convert`` accepts.

The exported graph is the inference fast path's network (:mod:`resnet.interop.inference`: BN folded into the
convolutions), fp32, taking the *normalised* ``N x C x H x W`` input at the model's native size and
returning logits. The preprocessing constants and class names travel inside the file (ONNX
``metadata_props``, TorchScript extra files ``resnet.json``), and so does the resize and crop ``predict``
applies (``resnet.resize``: shorter side, filter, crop), so a deployment needs nothing else to reproduce
``predict``'s probabilities: resize and crop as recorded, ``x = (pixels / 255 - mean) / std``, then
``softmax(logits)``.

ONNX goes through ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript; the default exporter
since torch 2.9), opset 18. ``dynamic_batch`` makes the batch dimension symbolic; otherwise it is fixed to
the example batch of 1. TorchScript is traced; a traced ResNet accepts any batch size. (TorchScript is
deprecated upstream in favour of torch.export; it is kept for runtimes that still load it, e.g. LibTorch.)
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
from resnet.io import atomic_write
from resnet.models import model_info

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
ONNX_OPSET = 18


def deployment_metadata(ckpt: Checkpoint) -> dict[str, str]:
    """What a runtime needs besides the graph: model name, input size, the resize and crop ``predict`` uses
    (``resnet.resize``), preprocessing and class names (JSON)."""
    pre = ckpt.preprocessing
    size = (int(ckpt.input_size[1]), int(ckpt.input_size[2]))
    return {
        "resnet.resize": json.dumps(view_geometry(model_info(ckpt.model_name).test_views == "crops", size)),
        "resnet.model_name": ckpt.model_name,
        "resnet.input_size": json.dumps(list(ckpt.input_size)),
        "resnet.preprocessing": json.dumps(
            {"kind": pre["kind"], "scale": 1 / 255, "mean": pre["mean"].tolist(), "std": pre["std"].tolist()}
        ),
        "resnet.classes": json.dumps(list(ckpt.classes)),
        "resnet.dataset": ckpt.dataset,
        # The recipe lets `resnet eval model.onnx` rebuild the test data exactly as for the checkpoint.
        **({"resnet.recipe": json.dumps(ckpt.config)} if ckpt.config else {}),
    }


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
    proto = program.model_proto
    for key, value in meta.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))


def export_torchscript(net: nn.Module, path: str | Path, example: torch.Tensor, *, meta: dict) -> None:
    """Trace ``net`` and save it atomically, with ``meta`` as the extra file ``resnet.json``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream, still works
        traced = torch.jit.freeze(torch.jit.trace(net, example))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"resnet.json": json.dumps(meta)})
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


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
    dynamic_batch: bool = False,
    model: nn.Module | None = None,
    where: str = "checkpoint",
) -> dict[str, Any]:
    """``resnet export``: write ``out`` in ``fmt``; returns what was done (and, for ONNX, the verification).

    ``model`` is the checkpoint's eval-mode model when the caller already built it.
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
        batches = [example, torch.randn(3, c, h, w, generator=torch.Generator().manual_seed(1))]
        try:
            result["max_rel_error"] = onnxruntime_max_relative_error(
                out, model, batches if dynamic_batch else batches[:1]
            )
        except UserError:
            Path(out).unlink(missing_ok=True)  # nobody should deploy a file that failed its check
            raise
    else:
        export_torchscript(net, out, example, meta=meta)
    result["bytes"] = os.path.getsize(out)
    return result
