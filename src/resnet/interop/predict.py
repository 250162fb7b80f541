"""Classify image files with a checkpoint: the paper's test views, class names and probabilities.

Protocols (``--protocol``):

- ImageNet-style nets (224x224 input): ``center`` resizes the shorter side to 256 and takes the centre
  224x224 crop; ``10crop`` takes the paper's 10 views of that resized image (4 corners and the centre, and
  their horizontal flips, section 3.4) and **averages their softmax scores**, as the paper does for its
  10-crop and multi-scale results ("averaging softmax scores", section 3.4). Averaging probabilities rather
  than logits keeps one overconfident view from dominating, and the result is again a distribution.
- CIFAR-style nets (32x32, or the digits' 8x8): ``center`` resizes the shorter side to the native size and
  takes the centre crop. The paper tests these nets on the single original view only (section 4.2), so
  ``10crop`` is refused for them.

Those shorter sides are the family's defaults: weights whose description records a resize (a converted,
exported or ``save_pretrained`` model: :class:`resnet.metadata.Resize`) are fed as it says, e.g. shorter
side 40, then the centre 32x32, and an image-folder run's checkpoint as its ``data.eval_resize`` says
(:meth:`resnet.checkpoint.Checkpoint.eval_resize`, the rule ``resnet eval`` follows too).

A folder is searched recursively for image files and processed in batches, with a progress bar on a
terminal. Files that cannot be read are reported and skipped; the rest are still classified.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from resnet.checkpoint import Checkpoint
from resnet.data.transforms import is_image_file, load_view
from resnet.errors import UserError
from resnet.eval.metrics import check_finite_logits
from resnet.eval.views import views as test_views
from resnet.interop.convert import load_any
from resnet.interop.inference import optimize_for_inference
from resnet.interop.pt2 import check_pt2_flags, checkpoint_from_pt2, is_pt2, pt2_engine
from resnet.models import model_info

PROTOCOLS = ("center", "10crop")
#: ``--backend auto`` on a checkpoint exports it for onnxruntime only for at least this many images: the
#: export takes seconds (torch.export + onnxscript), onnxruntime saves ~40% per image on a CPU
#: (docs/benchmarks.md), so small jobs are faster on the torch fast path.
AUTO_EXPORT_MIN_IMAGES = 256


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named directly (whatever their extension) and image files found recursively in folders, in order."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if is_image_file(p) and p.is_file()))
        else:
            found.append(path)  # a missing file is reported when it is read, like any unreadable one
    return found


@dataclass
class Prediction:
    path: str
    top: list[tuple[int, str, float]]  # (class index, class name, probability), best first

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "top": [{"index": i, "class": c, "probability": p} for i, c, p in self.top]}


@dataclass
class Report:
    predictions: list[Prediction] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    agree: int = 0  # reduced precision only: images whose top-1 equals the fp32 top-1
    compared: int = 0


class Predictor:
    """A checkpoint ready to classify images: the fast-path model, its preprocessing and class names."""

    def __init__(
        self,
        ckpt: Checkpoint,
        *,
        model: nn.Module | None = None,
        where: str = "checkpoint",
        fast: bool = True,
        engine: nn.Module | None = None,
        reference: nn.Module | None = None,
    ) -> None:
        """``engine`` (a :mod:`resnet.interop.backends` engine) replaces the torch model; ``reference`` is
        the fp32 engine a reduced-precision one is compared with, image by image."""
        if engine is not None:
            self.model = engine
        else:
            model = model if model is not None else ckpt.build_model(where)
            self.model = optimize_for_inference(model) if fast else model
        self.reference = reference
        self.model_name = ckpt.model_name
        self.normalizer = ckpt.normalizer()
        self.classes = list(ckpt.classes)
        channels, height, width = ckpt.input_size
        self.channels, self.size = channels, (height, width)
        # The entry's own test views: crops of a resized image (ImageNet, section 3.4) or the native view only.
        self.imagenet_style = model_info(self.model_name).test_views == "crops"
        # The shorter side the weights record, else their run's or family's (the rule ``resnet eval`` uses too).
        self.resize = ckpt.eval_resize(where).shorter_side

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        backend: str | None = None,
        precision: str = "fp32",
        calibration: Sequence[Path] = (),
        compile: bool = False,
        **kwargs: Any,
    ) -> Predictor:
        """A checkpoint, run directory, foreign weights or ``.onnx`` file; ``backend`` None = the plain torch
        fast path, else ``torch``, ``onnxruntime`` or ``auto`` at ``precision`` (int8 calibrates on up to 32
        of the ``calibration`` images); ``compile``: the torch engine through torch.compile."""
        if is_pt2(path):  # torch.export's program: it runs as exported
            check_pt2_flags(path, backend, compile)
            return cls(checkpoint_from_pt2(path), engine=pt2_engine(path, precision), **kwargs)
        if backend is None and (str(path).lower().endswith(".onnx") or precision != "fp32" or compile):
            backend = "auto"
        if backend is None:
            loaded = load_any(path)
            return cls(loaded.checkpoint, model=loaded.model, where=str(path), **kwargs)
        return build_predictor(cls, path, backend, precision, calibration, compile)

    def check_protocol(self, protocol: str) -> None:
        if protocol not in PROTOCOLS:
            raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if protocol == "10crop" and not self.imagenet_style:
            raise UserError(
                f"{self.model_name} is a CIFAR-style net, tested on the single native view (section 4.2); "
                "10crop is the ImageNet protocol: use --protocol center"
            )

    def views(self, image: torch.Tensor, protocol: str) -> torch.Tensor:
        """The test views of one uint8 image: ``V x C x H x W`` at the model's native size (V = 1 or 10)."""
        if not self.imagenet_style:
            protocol = "center"
        return torch.stack(test_views(image, protocol, self.resize, self.size))

    @torch.inference_mode()
    def probabilities(self, views: torch.Tensor, per_image: int, report: Report | None = None) -> torch.Tensor:
        """Softmax scores of uint8 views, averaged over each image's ``per_image`` consecutive views (and,
        with a ``reference`` engine, its top-1 agreement counted in ``report``)."""
        x = self.normalizer(views)
        probs = torch.softmax(check_finite_logits(self.model(x).float()), dim=1)
        probs = probs.view(-1, per_image, probs.shape[1]).mean(dim=1)
        if self.reference is not None and report is not None:
            ref = torch.softmax(check_finite_logits(self.reference(x).float()), dim=1)
            ref = ref.view(-1, per_image, probs.shape[1]).mean(dim=1)
            report.agree += int((ref.argmax(1) == probs.argmax(1)).sum())
            report.compared += len(probs)
        return probs

    def predict(
        self,
        paths: Sequence[Path],
        *,
        topk: int = 5,
        protocol: str = "center",
        batch_size: int = 32,
        progress: bool | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> Report:
        """Classify ``paths`` in batches; unreadable files go to ``Report.skipped`` (and ``warn``, at once)."""
        self.check_protocol(protocol)
        if topk < 1:
            raise UserError(f"--topk must be at least 1, got {topk}")
        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {batch_size}")
        k = min(topk, len(self.classes))
        report = Report()
        bar = tqdm(total=len(paths), unit="img", file=sys.stderr, disable=(None if progress is None else not progress))
        try:
            for start in range(0, len(paths), batch_size):
                names, views = [], []
                for path in paths[start : start + batch_size]:
                    try:
                        views.append(load_view(path, self.channels, lambda im: self.views(im, protocol)))
                        names.append(str(path))
                    except UserError as e:
                        report.skipped.append((str(path), str(e)))
                        if warn:
                            bar.clear()
                            warn(f"skipped {e}")
                if views:
                    probs = self.probabilities(torch.cat(views), len(views[0]), report)
                    values, indices = probs.topk(k, dim=1)
                    for name, p, i in zip(names, values.tolist(), indices.tolist(), strict=True):
                        top = [(idx, self.classes[idx], prob) for idx, prob in zip(i, p, strict=True)]
                        report.predictions.append(Prediction(name, top))
                bar.update(len(paths[start : start + batch_size]))
        finally:
            bar.close()
        return report


def build_predictor(
    cls: type, path: str | Path, backend: str, precision: str, calibration: Sequence[Path], compile: bool = False
) -> Any:
    """:meth:`Predictor.from_file` with an explicit backend: the engine, and its fp32 reference when reduced."""
    from resnet.interop import backends

    onnx_file = str(path).lower().endswith(".onnx")
    device = torch.device("cpu")
    if backend == "auto" and not onnx_file and precision == "fp32" and len(calibration) < AUTO_EXPORT_MIN_IMAGES:
        backend = "torch"  # exporting the graph for onnxruntime would take longer than it saves
    concrete = backends.resolve(backend, precision, device, have_model=not onnx_file, compile=compile)
    if onnx_file:
        ckpt, model = backends.checkpoint_from_onnx(path), None
    else:
        loaded = load_any(path)
        ckpt, model = loaded.checkpoint, loaded.model

    def make(prec: str, calib: torch.Tensor | None = None, compiled: bool = False) -> nn.Module:
        if concrete == "torch":
            return backends.torch_engine(model, prec, device, compile=compiled)
        c, h, w = ckpt.input_size
        return backends.onnx_engine(
            prec, onnx_path=path if onnx_file else None, model=model, input_size=(c, h, w), calibration=calib
        )

    if precision == "fp32":
        return cls(ckpt, engine=make("fp32", compiled=compile))
    reference = make("fp32")
    probe = cls(ckpt, engine=reference)  # its geometry and normaliser make the calibration views
    calib = None
    if precision == "int8":
        views = []
        for p in list(calibration)[:32]:
            try:
                views.append(load_view(p, probe.channels, lambda im: probe.views(im, "center")))
            except UserError:
                continue
        calib = probe.normalizer(torch.cat(views)) if views else torch.empty(0)
    return cls(ckpt, engine=make(precision, calib, compiled=compile), reference=reference)


def format_report(report: Report) -> str:
    """Plain text: each file, then its top classes with probabilities in percent."""
    lines = []
    for pred in report.predictions:
        lines.append(pred.path)
        lines.extend(f"  {100.0 * p:6.2f}%  {name} ({i})" for i, name, p in pred.top)
    return "\n".join(lines)
