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
from resnet.data.transforms import is_image_file, load_image
from resnet.errors import UserError
from resnet.eval.views import views as test_views
from resnet.interop.convert import load_any
from resnet.interop.inference import optimize_for_inference
from resnet.models import model_info

PROTOCOLS = ("center", "10crop")
#: The paper's ImageNet test geometry: shorter side 256, then 224x224 views (section 3.4).
RESIZE_FOR_224 = 256


def view_resize(model_name: str, size: tuple[int, int]) -> int:
    """The shorter side ``predict`` resizes to before cropping ``size``: 256 for 224 (section 3.4), scaled for
    other ImageNet-style inputs; the native size itself for CIFAR-style nets (section 4.2)."""
    if model_info(model_name).family == "imagenet":
        return round(size[0] * RESIZE_FOR_224 / 224)
    return min(size)


def view_geometry(model_name: str, size: tuple[int, int]) -> dict[str, Any]:
    """How ``predict`` turns a decoded 8-bit image into the model's input, precisely enough to reproduce its
    probabilities elsewhere (exported as ``resnet.resize`` next to the graph).

    The resize is torch's antialiased bilinear on float pixels, rounded to uint8 once; Pillow's
    ``Image.resize(..., Image.BILINEAR)`` computes the same filter in 8-bit fixed point and lands within one
    grey level (tests/test_export.py reproduces predict's probabilities that way through onnxruntime).
    """
    return {
        "shorter_side": view_resize(model_name, size),
        "longer_side": "floor(shorter_side * longer / shorter), at least shorter_side",
        "filter": "bilinear",
        "antialias": True,
        "align_corners": False,
        "rounding": "round half to even to uint8, once, after both directions",
        "implementation": "torch.nn.functional.interpolate(mode='bilinear', antialias=True, align_corners=False)",
        "pillow_equivalent": "PIL.Image.resize(size, PIL.Image.BILINEAR) (within 1 grey level)",
        "crop": [int(size[0]), int(size[1])],
        "crop_position": "centre; top = round((H - h) / 2), left = round((W - w) / 2) (Python round)",
        "decode": "Pillow, EXIF orientation applied, alpha composited over white, 8-bit RGB (L for 1 channel)",
        "protocol": "center (the 10crop protocol averages the softmax of 10 such views)",
    }


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


class Predictor:
    """A checkpoint ready to classify images: the fast-path model, its preprocessing and class names."""

    def __init__(
        self, ckpt: Checkpoint, *, model: nn.Module | None = None, where: str = "checkpoint", fast: bool = True
    ) -> None:
        model = model if model is not None else ckpt.build_model(where)
        self.model = optimize_for_inference(model) if fast else model
        self.model_name = ckpt.model_name
        self.normalizer = ckpt.normalizer()
        self.classes = list(ckpt.classes)
        channels, height, width = ckpt.input_size
        self.channels, self.size = channels, (height, width)
        self.imagenet_style = model_info(self.model_name).family == "imagenet"

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Predictor:
        loaded = load_any(path)
        return cls(loaded.checkpoint, model=loaded.model, where=str(path), **kwargs)

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
        return torch.stack(test_views(image, protocol, view_resize(self.model_name, self.size), self.size))

    @torch.inference_mode()
    def probabilities(self, views: torch.Tensor, per_image: int) -> torch.Tensor:
        """Softmax scores of uint8 views, averaged over each image's ``per_image`` consecutive views."""
        probs = torch.softmax(self.model(self.normalizer(views)).float(), dim=1)
        return probs.view(-1, per_image, probs.shape[1]).mean(dim=1)

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
                        views.append(self.views(load_image(path, self.channels), protocol))
                        names.append(str(path))
                    except UserError as e:
                        report.skipped.append((str(path), str(e)))
                        if warn:
                            bar.clear()
                            warn(f"skipped {e}")
                if views:
                    probs = self.probabilities(torch.cat(views), len(views[0]))
                    values, indices = probs.topk(k, dim=1)
                    for name, p, i in zip(names, values.tolist(), indices.tolist(), strict=True):
                        top = [(idx, self.classes[idx], prob) for idx, prob in zip(i, p, strict=True)]
                        report.predictions.append(Prediction(name, top))
                bar.update(len(paths[start : start + batch_size]))
        finally:
            bar.close()
        return report


def format_report(report: Report) -> str:
    """Plain text: each file, then its top classes with probabilities in percent."""
    lines = []
    for pred in report.predictions:
        lines.append(pred.path)
        lines.extend(f"  {100.0 * p:6.2f}%  {name} ({i})" for i, name, p in pred.top)
    return "\n".join(lines)
