"""``.onnx`` files from outside, read and checked before onnxruntime sees them.

- **External data** (tensors stored beside the graph, ``location`` / ``offset`` / ``length``) is resolved
  against the model's own folder, whatever the current directory, and read here: a location that is absolute,
  climbs out with ``..``, is a link, is no regular file (``/dev/zero``, a FIFO) or is shorter than it claims
  is refused in one line. onnxruntime then gets the graph with every tensor inside it, so it never opens a
  file itself (given a bare graph it would resolve locations against the current directory: an arbitrary
  file read as weights).
- **Memory**: the graph's tensor shapes are inferred for one image before it runs; a graph whose
  intermediate tensors are not all known, or exceed the activation budget
  (:data:`resnet.models.cost.MAX_ACTIVATIONS`, which every paper net fits), is refused. A few hundred
  bytes of graph can otherwise ask for tens of GiB (``ConstantOfShape``, a chain of ``Concat``).
- Every refusal of onnx or onnxruntime becomes one line.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

from resnet.errors import UserError
from resnet.io import open_input
from resnet.models.cost import MAX_ACTIVATIONS

#: A protobuf message is limited to 2 GiB; ResNet-152's graph is 0.24 GB.
MAX_ONNX_BYTES = 2**31 - 1


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def read_onnx(path: str | Path) -> Any:
    """The ``ModelProto`` of ``path`` without its external data; one line when it is not a readable graph."""
    try:
        import onnx
    except ImportError:
        raise UserError(f"{path}: reading an .onnx file needs onnx; pip install 'resnet-paper[export]'") from None
    try:
        with open_input(path, max_bytes=MAX_ONNX_BYTES) as f:  # a FIFO or device: one line, never waited on
            data = f.read(MAX_ONNX_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder; pass an .onnx file") from None
    try:
        return onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError and others
        raise UserError(f"{path}: not a readable ONNX file ({type(e).__name__}: {_first_line(e)})") from None


def _all_tensors(proto: Any) -> list[Any]:
    from onnx.external_data_helper import _get_all_tensors

    return list(_get_all_tensors(proto))


def _external_file(folder: Path, location: str, where: str) -> Path:
    """``location`` inside ``folder``, a regular file and no link; a one-line refusal otherwise."""
    rel = Path(location)
    if not location or rel.is_absolute() or ".." in rel.parts or location.startswith(("/", "\\")):
        raise UserError(f"{where}: external data {location!r} is outside the model's folder; refused")
    target = folder / rel
    try:
        info = target.lstat()
    except OSError:
        raise UserError(f"{where}: external data {location!r} is missing next to the model") from None
    if stat.S_ISLNK(info.st_mode):
        raise UserError(f"{where}: external data {location!r} is a link; refused (copy the file beside the model)")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{where}: external data {location!r} is not a regular file; refused")
    real, root = os.path.realpath(target), os.path.realpath(folder)
    if os.path.commonpath([real, root]) != root:  # a linked folder on the way out
        raise UserError(f"{where}: external data {location!r} is outside the model's folder; refused")
    return target


def inline_external_data(proto: Any, folder: str | Path, where: str) -> None:
    """Read every external tensor of ``proto`` from ``folder`` (checked) into the graph itself."""
    import onnx

    folder = Path(folder)
    total = 0
    for tensor in _all_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        target = _external_file(folder, entries.get("location", ""), where)
        try:
            offset, length = int(entries.get("offset", 0)), int(entries.get("length", -1))
        except ValueError:
            raise UserError(f"{where}: external data of {tensor.name!r} has a damaged offset or length") from None
        size = target.stat().st_size
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        need = math.prod(tensor.dims) * itemsize
        length = need if length < 0 else length
        if offset < 0 or length != need or offset + length > size:
            raise UserError(
                f"{where}: external data of {tensor.name!r} ({entries.get('location')!r}, offset {offset:,}, length "
                f"{length:,}) does not hold its {need:,} bytes in a file of {size:,}; refused"
            )
        total += length
        if total > MAX_ONNX_BYTES:
            raise UserError(f"{where}: external data larger than 2 GiB in all; refused")
        with open_input(target, follow=False) as f:  # checked above by name; again on the descriptor itself
            f.seek(offset)
            tensor.raw_data = f.read(length)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def check_graph_memory(proto: Any, where: str, budget: int = MAX_ACTIVATIONS) -> int:
    """Elements of every tensor the graph computes for one input image; refused when unknown or over budget."""
    import onnx
    from onnx import shape_inference

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    for tensor in probe.graph.initializer:  # shapes need the dims, not the values; keep only small ones
        if math.prod(tensor.dims) > 4096:
            tensor.ClearField("raw_data")
            tensor.ClearField("float_data")
    for inp in probe.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):  # a symbolic batch: check one image
            dims[0].Clear()
            dims[0].dim_value = 1
    try:
        inferred = shape_inference.infer_shapes(probe, strict_mode=True, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises InferenceError, ValidationError and others
        raise UserError(f"{where}: the graph's shapes cannot be checked ({_first_line(e)}); refused") from None
    total = 0
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        shape = value.type.tensor_type.shape
        if not value.type.tensor_type.HasField("shape") or not all(d.HasField("dim_value") for d in shape.dim):
            raise UserError(f"{where}: the size of {value.name!r} is not known before running; refused")
        total += math.prod(d.dim_value for d in shape.dim)
        if total > budget:
            raise UserError(
                f"{where}: the graph computes more than {budget:,} values per image ({value.name!r} alone "
                f"{math.prod(d.dim_value for d in shape.dim):,}); refused before running it"
            )
    return total


def checked_onnx_bytes(path: str | Path) -> bytes:
    """The graph at ``path`` with its external data inside, checked for memory: what onnxruntime may load."""
    proto = read_onnx(path)
    inline_external_data(proto, Path(path).parent, str(path))
    check_graph_memory(proto, str(path))
    return proto.SerializeToString()


def ort_failure(where: str, e: BaseException) -> UserError:
    """onnxruntime's refusal as one line."""
    return UserError(f"{where}: onnxruntime refused the graph ({type(e).__name__}: {_first_line(e)})")
