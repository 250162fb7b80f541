"""The typed checkpoint: what every reader gets, checked once on load, and the one way to build its model.

On disk a checkpoint is a flat dict (see :mod:`resnet.checkpoint.storage`); :class:`Checkpoint` is its typed
view. Every field is validated when a file is read, so a damaged or hand-made file fails with one line
naming the field, never with a ``KeyError`` deep inside training or evaluation. :meth:`Checkpoint.build_model`
is the only place that turns stored weights into a network: strictly, with a readable diff when they do
not fit.

A checkpoint written by ``resnet train`` also carries the state needed to continue bit-identically
(``TRAINING_KEYS``: optimizer, warm-up/plateau schedule, data position, RNG, metrics, training time);
converted weights do not, and :meth:`Checkpoint.require_training` says so when one is resumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.checkpoint.statedict import StateDictDiff, infer_architecture
from resnet.checkpoint.storage import FORMAT, load_file, save_checkpoint
from resnet.config import Config, from_dict
from resnet.data.datasets import is_folder_dataset
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError
from resnet.eval.views import view_resize
from resnet.metadata import ModelMetadata, Preprocessing, Resize, check_classes, check_model_kwargs
from resnet.models import build_network, model_info

#: Fields a training checkpoint holds beyond the model description (its train state).
TRAINING_KEYS = ("optimizer", "schedule", "loader", "rng", "metrics", "train_seconds", "window")


def _damaged(where: str, key: str, must: str) -> UserError:
    return UserError(f"{where}: damaged checkpoint: {key!r} {must}")


def _check(ok: bool, where: str, key: str, must: str) -> None:
    if not ok:
        raise _damaged(where, key, must)


#: Above sqrt(float32's 3.4e38) a weight overflows float32 when it meets a value of its own size (BN squares
#: its inputs for the variance; a conv multiplies): no trained net comes within many orders of it.
MAX_ABS_WEIGHT = 1.8e19


def check_weights(state: dict[str, Any], where: str) -> None:
    """Refuse weights that cannot compute a number: a non-float tensor (BN's integer counters aside), NaN or
    Inf, or values beyond :data:`MAX_ABS_WEIGHT`; the message names the first such tensor."""
    for key, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise UserError(f"{where}: damaged weights: {key!r} is not a tensor")
        if key.endswith("num_batches_tracked"):
            if t.is_floating_point() or t.is_complex() or t.numel() != 1:
                raise UserError(f"{where}: damaged weights: {key!r} must be one whole number (a BN counter)")
            continue
        if not t.is_floating_point():
            raise UserError(
                f"{where}: damaged weights: {key!r} holds {str(t.dtype).removeprefix('torch.')} values, not "
                "floating point; weights are never whole numbers: the file is damaged or not a model's weights"
            )
        if t.numel() and not bool(torch.isfinite(t).all()):
            raise UserError(f"{where}: damaged weights: {key!r} holds NaN or Inf values; use an earlier checkpoint")
        if t.numel() and float(t.detach().abs().max()) > MAX_ABS_WEIGHT:
            raise UserError(
                f"{where}: damaged weights: {key!r} holds values of {float(t.detach().abs().max()):.3g}, beyond "
                f"{MAX_ABS_WEIGHT:.2g} (float32 overflows on them); use an earlier checkpoint"
            )


def resize_for(model_name: str, input_size: tuple[int, int, int] | list[int]) -> Resize:
    """The resize and crop this project applies to the inputs of ``model_name`` (the paper's, section 3.4 / 4.2)."""
    try:
        imagenet = model_info(model_name).test_views == "crops"  # the paper's ImageNet testing (section 3.4)
    except ValueError:  # an unknown name: refused when the model is built, with the close matches
        imagenet = False
    size = (int(input_size[1]), int(input_size[2]))
    return Resize(view_resize(imagenet, size), size)


def _check_preprocessing(pre: Any, channels: int, where: str) -> None:
    _check(isinstance(pre, dict), where, "preprocessing", "must be a dict")
    Preprocessing.from_state(pre, where).check(channels, where)


def _check_model_kwargs(kwargs: Any, where: str) -> None:
    check_model_kwargs(kwargs, where)


def _check_lighting(light: Any, where: str) -> None:
    if light is None:
        return
    _check(isinstance(light, dict), where, "lighting", "must be a dict")
    val, vec, std = light.get("eigval"), light.get("eigvec"), light.get("std")
    ok = isinstance(val, torch.Tensor) and val.shape == (3,) and isinstance(vec, torch.Tensor) and vec.shape == (3, 3)
    _check(ok, where, "lighting", "must hold eigval (3) and eigvec (3x3) tensors")
    _check(type(std) in (int, float) and math.isfinite(std) and std >= 0, where, "lighting.std", "must be a number")


def _check_data(data: Any, where: str) -> None:
    if data is None:
        return
    sizes = data.get("sizes") if isinstance(data, dict) else None
    ok = (
        isinstance(data, dict)
        and isinstance(data.get("dataset"), str)
        and type(data.get("classes")) is int
        and isinstance(data.get("labels"), str)
        and isinstance(sizes, dict)
        and all(isinstance(k, str) and type(v) is int for k, v in sizes.items())
    )
    _check(ok, where, "data", "must be the data fingerprint (dataset, classes, sizes, labels)")


def _check_training(obj: dict[str, Any], where: str) -> None:
    for key in ("optimizer", "schedule", "loader", "rng"):
        _check(isinstance(obj.get(key), dict), where, key, "must be a dict (is this a run's checkpoint?)")
    _check(isinstance(obj["rng"].get("torch"), torch.Tensor), where, "rng.torch", "must be a tensor")
    _check(isinstance(obj.get("metrics"), list), where, "metrics", "must be a list of records")
    scalar = (str, int, float, bool, type(None))
    ok = all(isinstance(r, dict) and all(isinstance(v, scalar) for v in r.values()) for r in obj["metrics"])
    _check(ok, where, "metrics", "must hold records of plain numbers and names")
    window = obj.get("window")  # the unlogged loss window of a run stopped between log points
    rows = window.get("rows") if isinstance(window, dict) else None
    ok = window is None or (isinstance(rows, torch.Tensor) and rows.is_floating_point())
    _check(ok, where, "window", "must hold a float tensor of loss rows")
    seconds = obj.get("train_seconds", 0.0)
    _check(isinstance(seconds, int | float) and math.isfinite(seconds), where, "train_seconds", "must be a number")


@dataclass
class Checkpoint:
    """A model, how to feed it, what it predicts, and (for training runs) how to continue training it."""

    model_name: str
    model_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]  # "model" on disk
    preprocessing: dict[str, Any]  # Normalizer.state_dict()
    classes: list[str]
    input_size: list[int]  # C, H, W at the native resolution
    dataset: str = "unknown"
    iteration: int | None = None
    config: dict[str, Any] | None = None  # the resolved recipe of a training run
    lighting: dict[str, Any] | None = None  # PCA lighting of image-folder runs
    training: dict[str, Any] | None = None  # TRAINING_KEYS, present in checkpoints written by `resnet train`
    data: dict[str, Any] | None = None  # the training data's fingerprint (sizes, classes, label hash)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept so that nothing is lost
    #: The resize and crop recorded with the weights (a converted or exported model's description); ``None``
    #: for files that record none (training checkpoints, files written before it was recorded): the family's.
    resize: Resize | None = None

    @classmethod
    def from_dict(cls, obj: dict[str, Any], where: str = "checkpoint") -> Checkpoint:
        """Validate a loaded dict of this project's format; a one-line ``UserError`` names what is wrong."""
        _check(obj.get("format") == FORMAT, where, "format", f"must be {FORMAT!r} (convert it with `resnet convert`)")
        _check(isinstance(obj.get("model_name"), str) and bool(obj["model_name"]), where, "model_name", "is missing")
        kwargs = obj.get("model_kwargs")
        kwargs = {} if kwargs is None else kwargs
        _check_model_kwargs(kwargs, where)
        state = obj.get("model")
        if not isinstance(state, dict) or not state:
            raise _damaged(where, "model", "must be a non-empty state_dict")
        bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
        _check(bad is None, where, f"model[{bad!r}]", "must be a tensor under a string key")
        check_classes(obj.get("classes"), where)
        size = obj.get("input_size")
        if not isinstance(size, list | tuple) or len(size) != 3 or not all(type(s) is int and s > 0 for s in size):
            raise _damaged(where, "input_size", "must be [channels, height, width]")
        _check_preprocessing(obj.get("preprocessing"), size[0], where)
        it = obj.get("iteration")
        _check(it is None or (type(it) is int and it >= 0), where, "iteration", "must be a count")
        for key in ("config", "lighting", "data"):
            _check(obj.get(key) is None or isinstance(obj[key], dict), where, key, "must be a dict")
        _check_lighting(obj.get("lighting"), where)
        _check_data(obj.get("data"), where)
        if obj.get("config"):
            try:
                from_dict(obj["config"])
            except UserError as e:
                raise UserError(f"{where}: damaged checkpoint: stored config: {e}") from None
        _check(isinstance(obj.get("dataset", "unknown"), str), where, "dataset", "must be a string")
        resize = obj.get("resize")
        _check(resize is None or isinstance(resize, dict), where, "resize", "must be a dict (shorter_side, crop)")
        training = None
        if any(k in obj for k in TRAINING_KEYS):
            _check_training(obj, where)
            training = {k: obj[k] for k in TRAINING_KEYS if k in obj}
        known = {"format", "model", "model_name", "model_kwargs", "preprocessing", "classes", "input_size",
                 "dataset", "iteration", "config", "lighting", "data", "resize", *TRAINING_KEYS}  # fmt: skip
        ckpt = cls(
            model_name=obj["model_name"],
            model_kwargs=dict(kwargs),
            state_dict=state,
            preprocessing=obj["preprocessing"],
            classes=list(obj["classes"]),
            input_size=list(size),
            dataset=obj.get("dataset", "unknown"),
            iteration=it,
            config=obj.get("config"),
            lighting=obj.get("lighting"),
            training=training,
            data=obj.get("data"),
            extra={k: v for k, v in obj.items() if k not in known},
            resize=None if resize is None else Resize.from_json(resize, where),
        )
        ckpt.metadata(where)  # the description as a whole: classes against the head, channels, resize
        return ckpt

    @classmethod
    def from_metadata(cls, meta: ModelMetadata, state_dict: dict[str, torch.Tensor], **fields: Any) -> Checkpoint:
        """A checkpoint of ``state_dict`` described by ``meta`` (``fields``: iteration, config, ...)."""
        return cls(
            model_name=meta.model_name,
            model_kwargs=dict(meta.model_kwargs),
            state_dict=state_dict,
            preprocessing=meta.preprocessing.state(),
            classes=list(meta.classes),
            input_size=list(meta.input_size),
            dataset=meta.dataset,
            resize=meta.resize,
            **fields,
        )

    def metadata(self, where: str = "checkpoint") -> ModelMetadata:
        """What travels with these weights, validated (:class:`resnet.metadata.ModelMetadata`)."""
        size = tuple(int(s) for s in self.input_size)
        if len(size) != 3:
            raise _damaged(where, "input_size", "must be [channels, height, width]")
        return ModelMetadata(
            model_name=self.model_name,
            model_kwargs=dict(self.model_kwargs),
            classes=tuple(self.classes),
            input_size=size,
            preprocessing=Preprocessing.from_state(self.preprocessing, where),
            resize=self._resize(size, where),
            dataset=self.dataset,
        ).check(where)

    def eval_resize(self, where: str = "checkpoint") -> Resize:
        """The resize and crop these weights are tested with, by ``predict`` and ``resnet eval`` alike (and
        recorded by conversions and exports): the one the weights record; else an image-folder run's
        ``data.eval_resize``, which its own evaluations used; else the family's (:func:`resize_for`)."""
        return self.metadata(where).resize

    def _resize(self, size: tuple[int, int, int], where: str) -> Resize:
        if self.resize is not None:
            return self.resize
        cfg = self.recipe(where)
        # Only image-folder runs test on a resized image: an array run's eval_resize is an unused default.
        if cfg is not None and is_folder_dataset(cfg.data.dataset):
            return Resize(cfg.data.eval_resize, (size[1], size[2]))
        return resize_for(self.model_name, size)

    def to_dict(self) -> dict[str, Any]:
        """The flat on-disk layout (the format every version of this project reads)."""
        return {
            "format": FORMAT,
            "model": self.state_dict,
            "model_name": self.model_name,
            "model_kwargs": self.model_kwargs,
            "iteration": self.iteration,
            "preprocessing": self.preprocessing,
            "lighting": self.lighting,
            "classes": self.classes,
            "input_size": self.input_size,
            "dataset": self.dataset,
            "config": self.config,
            **({"data": self.data} if self.data is not None else {}),
            **({"resize": self.resize.to_json()} if self.resize is not None else {}),
            **self.extra,
            **(self.training or {}),
        }

    def save(self, path: str | Path) -> None:
        save_checkpoint(path, {k: v for k, v in self.to_dict().items() if k != "format"})

    def normalizer(self) -> Normalizer:
        return Normalizer.from_state_dict(self.preprocessing)

    def recipe(self, where: str = "checkpoint") -> Config | None:
        """The training recipe this checkpoint was written under, if it records one."""
        return from_dict(self.config, where=f"{where}: stored config: ") if self.config else None

    def require_training(self, where: str) -> dict[str, Any]:
        """The train state, or a clear error for converted weights used as a run's checkpoint."""
        if self.training is None or not all(k in self.training for k in TRAINING_KEYS[:5]) or not self.config:
            raise UserError(
                f"{where} holds weights without a training state (a converted checkpoint?); it cannot be "
                "resumed: train into a new --out (to start from these weights, use model.init_from)"
            )
        return self.training

    def build_model(self, where: str = "checkpoint") -> nn.Module:
        """The eval-mode model with these weights, loaded strictly (a readable diff if they do not fit).

        The weights are checked first (:func:`check_weights`); the net's size is checked against the budget
        before it is built (``build_network``), and the class names against its outputs after.
        """
        check_weights(self.state_dict, where)
        try:
            model = build_network(self.model_name, **self.model_kwargs)
        except (ValueError, TypeError) as e:
            raise UserError(f"{where}: cannot build {self.model_name} ({e})") from None
        fc = getattr(model, "fc", None)
        if isinstance(fc, nn.Linear) and len(self.classes) != fc.out_features:
            raise UserError(
                f"{where}: the model has {fc.out_features} outputs but the file names {len(self.classes)} "
                "classes; the file is damaged or was edited by hand: convert the weights again"
            )
        state = with_bn_counters(self.state_dict, model.state_dict())
        diff = StateDictDiff.compare(model.state_dict(), state)
        if diff:
            args = ", ".join(f"{k}={v}" for k, v in self.model_kwargs.items())
            raise UserError(f"{where}: weights do not fit {self.model_name}({args}): {diff.summary()}{self._hint()}")
        model.load_state_dict(state, strict=True)
        return model.eval()

    def _hint(self) -> str:
        try:
            arch = infer_architecture(self.state_dict)
        except UserError:
            return ""
        if self.model_name in arch.names:
            return ""
        return f"; the weights look like {' or '.join(arch.names)}: pass --model {arch.names[0]}"


def with_bn_counters(given: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the ``num_batches_tracked`` counters older files lack (torchvision's legacy weights, Caffe ports).

    PyTorch's own BN loading accepts their absence; the counter only matters for ``momentum=None``, which
    the models do not use. Filled with 0, as BN does for pre-1.0 state_dicts.
    """
    missing = [
        k
        for k in expected
        if k.endswith(".num_batches_tracked")
        and k not in given
        and k.replace("num_batches_tracked", "running_mean") in given
    ]  # only for BN layers the file has: anything else stays a real difference
    if not missing:
        return given
    return {**given, **{k: torch.zeros((), dtype=torch.long) for k in missing}}


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """A checkpoint of this project (a run directory means its ``checkpoint.pt``), read safely and validated."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    obj = load_file(path, map_location)
    if obj.get("format") != FORMAT:
        # akamaster/pytorch_resnet_cifar10 saves .th files whose classifier is called `linear`: name its flag.
        state = obj.get("state_dict", obj)
        keys = state if isinstance(state, dict) else {}
        theirs = path.suffix == ".th" or any(str(k).endswith("linear.weight") for k in keys)
        how = f"resnet convert {path} --to {path.stem}.pt" + (" --from akamaster" if theirs else "")
        raise UserError(f"{path}: not a checkpoint of this project; convert it first (`{how}`) and use that file")
    return Checkpoint.from_dict(obj, str(path))
