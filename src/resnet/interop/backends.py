"""Inference engines for ``predict`` and ``eval``: PyTorch or onnxruntime, fp32, bf16 or int8.

An :class:`Engine` maps a normalised float32 ``N x C x H x W`` batch to float32 logits, whatever runs it:

- ``torch``: the BN-folded channels_last network (:func:`optimize_for_inference`); ``bf16`` casts weights
  and activations to bfloat16, which oneDNN runs on CPUs with AVX512_BF16 or AMX (refused elsewhere: it
  would be emulated and slower than fp32). ``compile`` adds ``torch.compile`` with the weights frozen
  (inductor): at bf16 the fastest engine for batches on this project's AVX512_BF16 CPU
  (docs/benchmarks.md), after a compilation of seconds to a minute, so it is opt-in (``--compile``).
- ``onnxruntime``: the graph ``resnet export`` writes (exported on the fly from a checkpoint, or an ``.onnx``
  file given directly), CPU provider, all graph optimisations. ``int8`` is onnxruntime's static post-training
  quantisation (QDQ, per-channel int8 weights, uint8 activations calibrated on real images by percentiles):
  VNNI instructions run it where the CPU has them.
- ``auto``: the fastest measured on the device: on a CPU onnxruntime for fp32 when it is installed (it ran
  ResNet-50 at 1.7x our eager fast path in docs/benchmarks.md), torch for bf16, onnxruntime for int8; on a
  GPU, torch.

Reduced precision is opt-in, and every caller reports its top-1 agreement with fp32 on the same inputs.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet.errors import UserError
from resnet.train.runtime import cpu_has_bf16

BACKENDS = ("auto", "torch", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "int8")


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class Engine(nn.Module):
    """An eval-only callable: normalised float32 batch in, float32 logits out (parameter-free wrapper)."""

    def __init__(
        self, run: Callable[[torch.Tensor], torch.Tensor], backend: str, precision: str, compiled: bool = False
    ) -> None:
        super().__init__()
        self._run, self.backend, self.precision, self.compiled = run, backend, precision, compiled
        super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)

    def describe(self) -> str:
        return f"{self.backend} {self.precision}{' (compiled)' if self.compiled else ''}"


def resolve(
    backend: str, precision: str, device: torch.device, *, have_model: bool = True, compile: bool = False
) -> str:
    """The concrete backend for ``backend`` (maybe ``auto``) and ``precision``; a UserError when impossible.

    ``compile`` (torch.compile) belongs to the torch backend: ``auto`` then means torch.
    """
    if compile and (backend == "onnxruntime" or not have_model or precision == "int8"):
        raise UserError("--compile applies to the torch backend (fp32 or bf16 of a checkpoint); drop it here")
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    cpu = device.type == "cpu"
    if backend == "auto":
        if compile:
            backend = "torch"
        elif not have_model or precision == "int8" or (precision == "fp32" and cpu and onnxruntime_available()):
            backend = "onnxruntime"
        else:
            backend = "torch"
    if backend == "torch" and not have_model:
        raise UserError("an .onnx file runs on onnxruntime: use --backend onnxruntime (or auto)")
    if backend == "torch" and precision == "int8":
        raise UserError("int8 runs on onnxruntime (static quantisation): use --backend onnxruntime (or auto)")
    if backend == "onnxruntime":
        if not cpu:
            raise UserError("the onnxruntime backend runs on the CPU here: use --device cpu or --backend torch")
        if precision == "bf16":
            raise UserError("bf16 runs on the torch backend: use --backend torch (or auto)")
        if not onnxruntime_available():
            raise UserError("the onnxruntime backend needs onnxruntime; pip install 'resnet-paper[export]'")
    if backend == "torch" and precision == "bf16" and cpu and not cpu_has_bf16():
        raise UserError("this CPU has no bf16 instructions (AVX512_BF16 or AMX): bf16 would be slower; use fp32")
    return backend


def torch_engine(model: nn.Module, precision: str, device: torch.device, *, compile: bool = False) -> Engine:
    """The torch fast path at ``precision``; ``compile``: through torch.compile, weights frozen."""
    from resnet.interop.inference import optimize_for_inference

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    fast = optimize_for_inference(model, dtype=dtype, device=device, compile=compile)
    run = BatchSizes(fast) if compile else fast

    @torch.inference_mode()
    def forward(x: torch.Tensor) -> torch.Tensor:
        return run(x.to(device)).cpu()  # logits where the callers keep labels and scores, whatever ran them

    return Engine(forward, "torch", precision, compiled=compile)


class BatchSizes:
    """Calls a compiled net, which is specialised to each batch size, so that odd sizes rarely recompile.

    A batch that fits a graph already compiled is padded to it (the last, smaller batch of an evaluation;
    a predict batch that lost a few unreadable files): one padded batch costs far less than a compilation
    (seconds to a minute). Only a size met again that would waste more than a fifth of its padded batch gets
    its own graph, and at most ``MAX_GRAPHS`` graphs are made (dynamo's own limit is 8, after which it falls
    back to eager). Rows are independent in eval mode, so padding never changes the rows returned.
    """

    MAX_GRAPHS = 4

    def __init__(self, net: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.net, self.compiled, self.seen = net, set(), set()

    def target(self, n: int) -> int:
        """The batch size ``n`` rows run at."""
        fits = [size for size in self.compiled if size >= n]
        if n in self.compiled or not fits:
            return n
        padded = min(fits)
        worth_a_graph = n in self.seen and padded > 1.25 * n and len(self.compiled) < self.MAX_GRAPHS
        return n if worth_a_graph else padded

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        target = self.target(n)
        self.seen.add(n)
        self.compiled.add(target)
        # Always a tensor made here, under inference mode: the graph's guards tell inference tensors from
        # others, and an input of the other kind would compile again.
        batch = torch.cat([x, x.new_zeros((target - n, *x.shape[1:]))])
        try:
            return self.net(batch)[:n]
        except torch._dynamo.exc.TorchDynamoException as e:  # no C++ compiler, an inductor bug, ...
            first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
            raise UserError(f"torch.compile failed ({first.strip()[:200]}); run without --compile") from None


def _session(model_bytes_or_path: bytes | str, threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads or torch.get_num_threads(), 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes_or_path, opts, providers=["CPUExecutionProvider"])


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calibration: torch.Tensor) -> None:
    """onnxruntime static quantisation of ``fp32_path``: QDQ, per-channel int8 weights, uint8 activations
    with ranges from ``calibration`` (a normalised float batch of real images).

    Activation ranges are the 0.001-99.999 percentiles rather than min/max: on two weakly trained CIFAR
    ResNet-20s (docs/benchmarks.md) min/max agreed with fp32 on 98.7% and 97.1% of the test images,
    entropy on 98.8% and 97.6%, percentiles on 99.1% and 97.8%.
    """
    from onnxruntime.quantization import CalibrationDataReader

    if len(calibration) == 0:
        raise UserError("int8 needs calibration images; none could be read")
    name = _session(str(fp32_path), 1).get_inputs()[0].name
    batches = [{name: b.numpy()} for b in calibration.float().split(1 if _fixed_batch(fp32_path) else 16)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self) -> dict | None:
            return next(self.it, None)

    prepared = str(out_path) + ".pre.onnx"
    try:
        # The calibrators print their progress to stdout, which would corrupt `resnet predict --json`.
        with contextlib.redirect_stdout(io.StringIO()):
            _quantize(fp32_path, prepared, out_path, Reader())
    finally:
        if os.path.exists(prepared):
            os.remove(prepared)


def _quantize(fp32_path: str | Path, prepared: str, out_path: str | Path, reader: Any) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), prepared, skip_symbolic_shape=True)
    quantize_static(
        prepared,
        str(out_path),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
    )


def _fixed_batch(path: str | Path) -> bool:
    dim = _session(str(path), 1).get_inputs()[0].shape[0]
    return isinstance(dim, int)


def onnx_engine(
    precision: str,
    *,
    onnx_path: str | Path | None = None,
    model: nn.Module | None = None,
    input_size: tuple[int, int, int] | None = None,
    calibration: torch.Tensor | None = None,
    threads: int | None = None,
) -> Engine:
    """onnxruntime on ``onnx_path``, or on ``model`` exported now (BN folded, dynamic batch, opset 18)."""
    from resnet.interop.onnx_files import checked_onnx_bytes, ort_failure

    where = str(onnx_path) if onnx_path is not None else "the exported graph"
    with tempfile.TemporaryDirectory(prefix="resnet-ort-") as tmp:
        path = Path(tmp) / "fp32.onnx"
        if onnx_path is not None:  # checked, external data inlined: nothing outside its folder is ever read
            data = checked_onnx_bytes(onnx_path)
            path.write_bytes(data)
        else:
            from resnet.interop.export import export_onnx
            from resnet.interop.inference import fold_batchnorm

            assert model is not None and input_size is not None
            example = torch.zeros(1, *input_size)
            export_onnx(fold_batchnorm(model.cpu().eval()), path, example, dynamic_batch=True, meta={})
        if precision == "int8":
            if calibration is None:
                raise UserError("int8 needs calibration images")
            try:
                quantize_int8(path, Path(tmp) / "int8.onnx", calibration)
            except (UserError, ImportError):
                raise
            except Exception as e:  # noqa: BLE001 - the quantiser raises whatever its graph walk meets
                raise ort_failure(where, e) from None
            path = Path(tmp) / "int8.onnx"
        try:
            session = _session(path.read_bytes(), threads)  # our own file in our temporary folder, not an input
        except Exception as e:  # noqa: BLE001 - onnxruntime's Fail, InvalidGraph, NotImplemented, ...
            raise ort_failure(where, e) from None
    inp = session.get_inputs()[0]
    fixed = isinstance(inp.shape[0], int)

    def run_batch(arr: np.ndarray) -> torch.Tensor:
        try:
            return torch.from_numpy(session.run(None, {inp.name: arr})[0])
        except Exception as e:  # noqa: BLE001 - a wrong input size, an op failing at run time
            raise ort_failure(where, e) from None

    def run(x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        if fixed and len(arr) != inp.shape[0]:  # a graph exported for batch 1: one image at a time
            return torch.cat([run_batch(a[None]) for a in arr])
        return run_batch(arr)

    return Engine(run, "onnxruntime", precision)


def checkpoint_from_onnx(path: str | Path) -> Any:
    """The description an ``.onnx`` file written by ``resnet export`` carries (model, input size,
    preprocessing, classes, dataset and recipe) as a weightless :class:`~resnet.checkpoint.Checkpoint`."""
    from resnet.interop.onnx_files import read_onnx

    proto = read_onnx(path)
    props = {p.key: p.value for p in proto.metadata_props}
    ckpt = checkpoint_from_metadata(props, path)
    outputs = proto.graph.output[0].type.tensor_type.shape.dim if proto.graph.output else []
    if outputs and outputs[-1].HasField("dim_value"):  # one class name per output of the graph
        ckpt.metadata(str(path)).check_outputs(outputs[-1].dim_value, str(path))
    return ckpt


def checkpoint_from_metadata(props: dict[str, str], path: str | Path) -> Any:
    """The weightless :class:`~resnet.checkpoint.Checkpoint` that ``resnet export``'s metadata describes (the
    ``.onnx`` file's ``metadata_props``, the ``.pt2`` and TorchScript files' ``resnet.json``)."""
    from resnet.checkpoint import Checkpoint
    from resnet.checkpoint.typed import resize_for
    from resnet.metadata import ModelMetadata

    meta = ModelMetadata.from_onnx_props(props, str(path), resize_for)
    return Checkpoint.from_metadata(meta, {}, config=meta.extra.get("recipe"))


def make_default_engine(model: nn.Module, input_size: tuple[int, int, int], threads: int | None = None) -> Engine:
    """What ``--backend auto`` runs at fp32 on this CPU (onnxruntime when installed, else the torch fast path)."""
    if resolve("auto", "fp32", torch.device("cpu")) == "onnxruntime":
        return onnx_engine("fp32", model=model, input_size=input_size, threads=threads)
    return torch_engine(model, "fp32", torch.device("cpu"))


def top1_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of rows whose argmax agrees (scores or logits, any scale)."""
    return float((a.argmax(1) == b.argmax(1)).float().mean()) if len(a) else 1.0
