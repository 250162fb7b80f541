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
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError
from resnet.models import create_model

#: Fields a training checkpoint holds beyond the model description (its train state).
TRAINING_KEYS = ("optimizer", "schedule", "loader", "rng", "metrics", "train_seconds")


def _check(ok: bool, where: str, key: str, must: str) -> None:
    if not ok:
        raise UserError(f"{where}: damaged checkpoint: {key!r} {must}")


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list | tuple) and all(isinstance(c, str) for c in v)


def _check_preprocessing(pre: Any, where: str) -> None:
    _check(isinstance(pre, dict), where, "preprocessing", "must be a dict")
    _check(isinstance(pre.get("kind"), str), where, "preprocessing.kind", "must be a string")
    for k in ("mean", "std"):
        t = pre.get(k)
        _check(isinstance(t, torch.Tensor) and t.is_floating_point(), where, f"preprocessing.{k}", "must be a tensor")
        _check(bool(torch.isfinite(t).all()), where, f"preprocessing.{k}", "must be finite")
    _check(bool((pre["std"] > 0).all()), where, "preprocessing.std", "must be positive")


#: Types and ranges of the model keywords a checkpoint may record (create_model checks the names and choices).
_KWARG_RULES: dict[str, tuple[type, int]] = {"num_classes": (int, 1_000_000), "in_channels": (int, 4096)}


def _check_model_kwargs(kwargs: Any, where: str) -> None:
    _check(
        isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs), where, "model_kwargs", "must be a dict"
    )
    for key, value in kwargs.items():
        if key in _KWARG_RULES:
            ok = type(value) is int and 1 <= value <= _KWARG_RULES[key][1]
            _check(ok, where, f"model_kwargs.{key}", f"must be a whole number in 1..{_KWARG_RULES[key][1]:,}")
        elif key == "zero_init_residual":
            _check(isinstance(value, bool), where, f"model_kwargs.{key}", "must be true or false")
        elif key in ("shortcut", "bottleneck_stride"):
            _check(value is None or isinstance(value, str), where, f"model_kwargs.{key}", "must be a name or null")
        else:  # a family's own keywords (create_model checks names and choices): scalars only
            finite = isinstance(value, float) and math.isfinite(value)
            ok = value is None or isinstance(value, str | bool | int) or finite
            _check(ok, where, f"model_kwargs.{key}", "must be a name, a finite number, true/false or null")


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

    @classmethod
    def from_dict(cls, obj: dict[str, Any], where: str = "checkpoint") -> Checkpoint:
        """Validate a loaded dict of this project's format; a one-line ``UserError`` names what is wrong."""
        _check(obj.get("format") == FORMAT, where, "format", f"must be {FORMAT!r} (convert it with `resnet convert`)")
        _check(isinstance(obj.get("model_name"), str) and bool(obj["model_name"]), where, "model_name", "is missing")
        kwargs = obj.get("model_kwargs")
        kwargs = {} if kwargs is None else kwargs
        _check_model_kwargs(kwargs, where)
        state = obj.get("model")
        _check(isinstance(state, dict) and bool(state), where, "model", "must be a non-empty state_dict")
        bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
        _check(bad is None, where, f"model[{bad!r}]", "must be a tensor under a string key")
        _check_preprocessing(obj.get("preprocessing"), where)
        _check(_is_str_list(obj.get("classes")) and len(obj["classes"]) > 0, where, "classes", "must list class names")
        size = obj.get("input_size")
        ok = isinstance(size, list | tuple) and len(size) == 3 and all(type(s) is int and s > 0 for s in size)
        _check(ok, where, "input_size", "must be [channels, height, width]")
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
        training = None
        if any(k in obj for k in TRAINING_KEYS):
            _check_training(obj, where)
            training = {k: obj[k] for k in TRAINING_KEYS if k in obj}
        known = {"format", "model", "model_name", "model_kwargs", "preprocessing", "classes", "input_size",
                 "dataset", "iteration", "config", "lighting", "data", *TRAINING_KEYS}  # fmt: skip
        return cls(
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
        )

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
        """The eval-mode model with these weights, loaded strictly (a readable diff if they do not fit)."""
        try:
            model = create_model(self.model_name, **self.model_kwargs)
        except (ValueError, TypeError) as e:
            raise UserError(f"{where}: cannot build {self.model_name} ({e})") from None
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
        raise UserError(f"{path}: not a checkpoint of this project (convert it first with `resnet convert`)")
    return Checkpoint.from_dict(obj, str(path))
