"""Recipes as data: typed defaults, one YAML file per experiment, ``--set section.key=value`` overrides.

Precedence: explicit command-line values beat the YAML file, which beats these defaults. Every field says
what it does and where its default comes from (the paper's section 4.2 CIFAR recipe unless noted). The
resolved config is written to every run directory and stored in every checkpoint as a plain dict.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resnet.errors import UserError
from resnet.io import read_input_text, shown
from resnet.ranges import RANGES, check_range, get_key  # noqa: F401  (RANGES: re-exported)
from resnet.safe_yaml import MAX_YAML_CHARS, load_yaml, parse_yaml


@dataclass
class ModelConfig:
    name: str = "resnet20"  # any name `resnet models` lists, or a CIFAR depth 6n+2 (resnet38)
    shortcut: str | None = None  # "A" | "B" | "C"; None: the model's default (A on CIFAR, B on ImageNet)
    bottleneck_stride: str | None = None  # "1x1" (paper) | "3x3" (torchvision v1.5); ImageNet nets only
    zero_init_residual: bool = False  # not in the paper (Goyal et al. 2017)
    # Further create_model keywords of the model's family (a user's family's own, e.g. `width: 2`); set one
    # with `--set model.kwargs.width=2`. The registry refuses a keyword the model does not take.
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Fine-tuning: start from these weights (a `resnet convert` output or a run directory) instead of He init;
    # a fresh classifier when the class count differs. Resuming still restores the run's own checkpoint.
    init_from: str | None = None


#: Every value ``data.dataset`` takes: the in-memory array datasets, then image folders (ImageNet's layout);
#: a dataset registered later (``resnet.data.datasets.register_dataset``) adds its name.
DATASET_KINDS = ["cifar10", "cifar100", "digits", "synthetic", "imagefolder"]


@dataclass
class DataConfig:
    dataset: str = "cifar10"  # cifar10 | cifar100 | digits | synthetic | imagefolder
    # CIFAR: the extracted folder or .tar.gz of the official python release; imagefolder: ROOT holding
    # train/<class>/* and val/<class>/*.
    data_dir: str | None = None
    # Section 4.2: the nets are trained on the 50k training images (0: all of them); the schedule was
    # "determined on a 45k/5k train/val split", which 0.1 gives: the last tenth of the official training
    # order (the second half of data_batch_5), for model-selection studies.
    val_fraction: float = 0.0
    normalize: str = "pixel_mean"  # "pixel_mean": subtract the mean image (paper) | "channel_mean_std"
    augment: bool = True  # pad + random crop + horizontal flip (section 4.2)
    pad: int = 4  # pixels of zero padding on each side, after mean subtraction (so padding = the mean)
    flip: bool = True  # random horizontal flip (off for digits: a mirrored digit is a different glyph)
    synthetic_size: int = 50_000  # images in the "synthetic" dataset (benchmarks)
    # Image folders (section 3.4): shorter side random in [scale_min, scale_max], random crop x crop, flip,
    # PCA lighting noise of std `lighting` (0 turns it off); tests view the image resized to eval_resize.
    scale_min: int = 256
    scale_max: int = 480
    crop: int = 224
    eval_resize: int = 256
    lighting: float = 0.1
    # The PCA axes of the lighting noise: "standard" (AlexNet's ImageNet eigenvalues/vectors, as fb.resnet.torch
    # and every reproduction use them) | "estimated" (from data.mean_samples of this folder's training images).
    lighting_axes: str = "standard"
    mean_samples: int = 5_000  # training images sampled to estimate the mean image and the PCA axes
    workers: int = 8  # DataLoader decode workers per process
    strict_decode: bool = False  # a corrupt image stops the run instead of being skipped and counted


@dataclass
class OptimConfig:
    lr: float = 0.1  # section 4.2: "start with a learning rate of 0.1"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False  # the paper uses plain momentum SGD


@dataclass
class ScheduleConfig:
    iterations: int = 64_000  # "terminate training at 64k iterations"
    epochs: int | None = None  # instead of iterations: epochs x (training images // batch size)
    # "steps": divide by 1/gamma at each milestone; "plateau": when the validation error stops improving
    # (ImageNet, section 3.4: "divided by 10 when the error plateaus").
    kind: str = "steps"
    milestones: list[int] = field(default_factory=lambda: [32_000, 48_000])  # "divide it by 10 at 32k and 48k"
    milestone_unit: str = "iterations"  # iterations | epochs (the 30/60/90-epoch schedule of most reproductions)
    gamma: float = 0.1
    plateau_patience: int = 3  # evaluations without an improvement of plateau_min_delta before a drop
    plateau_min_delta: float = 0.1  # points of validation error
    # ResNet-110/1202: "use 0.01 to warm up the training until the training error is below 80% (about 400
    # iterations), and then go back to 0.1". None: no warm-up.
    warmup_lr: float | None = None
    warmup_until_error: float = 80.0  # percent, running training error over the window below
    warmup_window: int = 50  # iterations averaged for the running training error


@dataclass
class TrainConfig:
    batch_size: int = 128  # global mini-batch (section 4.2: 128, on two GPUs)
    seed: int = 0  # model init, data order and augmentation all follow from it
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    channels_last: str = "auto"  # auto (on CUDA) | true | false
    compile: str = "off"  # off | default | reduce-overhead | max-autotune (torch.compile mode)
    # Replay forward + backward + SGD as one CUDA graph (resnet.train.graphed): "true" captures on CUDA and
    # runs the same step uncaptured on the CPU; "auto" is off until the GPU check has measured it.
    cuda_graph: str = "auto"  # auto | true | false
    log_every: int = 100  # iterations between training log lines / metrics records
    eval_every: int = 2_000  # iterations between val/test evaluations (curves of Fig. 6)
    checkpoint_every: int = 2_000  # iterations between checkpoints (also written at the end and on signal)
    eval_batch_size: int = 1_000
    eval_limit: int | None = None  # evaluate a fixed random subset of this many images (image folders)
    sync_bn: bool = False  # under DDP, BN statistics over the global batch instead of each rank's shard
    tensorboard: bool = False  # also write TensorBoard events to RUN_DIR/tb (needs the [tb] extra)
    # After the last iteration, also evaluate with BN statistics recomputed as true averages over this many
    # training batches (the paper's released models: "computed using average, not moving average"); 0: off.
    recompute_bn: int = 0


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""  # what the recipe reproduces, e.g. "CIFAR-10 ResNet-56 (Table 6: 6.97%)"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Keys that may change when a run directory is resumed: they do not alter what is being trained.
RESUMABLE_KEYS = frozenset(
    {
        "schedule.iterations",
        "schedule.epochs",
        "data.data_dir",
        "train.device",
        "train.compile",
        "train.cuda_graph",
        "train.log_every",
        "train.eval_every",
        "train.checkpoint_every",
        "train.eval_batch_size",
        "train.eval_limit",
        "train.tensorboard",
        "train.recompute_bn",
        "data.workers",
        "description",
    }
)


def all_keys(cfg: Config | None = None) -> list[str]:
    """Every dotted key of the config (``optim.lr``, ``train.seed``, ...)."""
    cfg = cfg or Config()
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(value)]
        else:
            keys.append(f.name)
    return keys


def _unknown_key(key: str, where: str) -> UserError:
    close = difflib.get_close_matches(key, all_keys(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see src/resnet/config.py for the keys"
    return UserError(f"{where}unknown config key {key!r}; {hint}")


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against the field's type (ints are accepted for floats); raise a UserError otherwise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list | tuple):
            raise UserError(f"config key {key!r} expects a list, got {value!r}")
        return [_coerce(key, v, item) for v in value]
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if annotation is str and isinstance(value, bool):
        return "true" if value else "false"  # YAML reads `channels_last: true` as a bool
    if (
        annotation in (int, str, bool)
        and isinstance(value, annotation)
        and not (annotation is int and isinstance(value, bool))
    ):
        return value
    raise UserError(f"config key {key!r} expects {getattr(annotation, '__name__', annotation)}, got {value!r}")


def _set_open_key(cfg: Config, key: str, value: Any, where: str) -> bool:
    """Set ``model.kwargs.NAME`` (an open mapping of scalars); False when ``key`` is no such key."""
    prefix, _, name = key.rpartition(".")
    if prefix != "model.kwargs":
        return False
    if not re.fullmatch(r"[A-Za-z_]\w{0,63}", name):
        raise UserError(f"{where}config key {key!r}: {name!r} is not a keyword name")
    if not (value is None or isinstance(value, str | bool | int | float)):
        raise UserError(f"{where}config key {key!r} expects a number, a name, true/false or null, got {value!r}")
    cfg.model.kwargs[name] = value
    return True


def set_key(cfg: Config, key: str, value: Any, where: str = "") -> None:
    """Set one dotted key, type-checked; unknown keys fail with the close matches."""
    if _set_open_key(cfg, key, value, where):
        return
    parts = key.split(".")
    target: Any = cfg
    for part in parts[:-1]:
        if not hasattr(target, part) or not dataclasses.is_dataclass(getattr(target, part)):
            raise _unknown_key(key, where)
        target = getattr(target, part)
    name = parts[-1]
    fields = {f.name: f for f in dataclasses.fields(target)}
    if name not in fields or dataclasses.is_dataclass(getattr(target, name)):
        raise _unknown_key(key, where)
    annotation = typing.get_type_hints(type(target))[name]
    setattr(target, name, _coerce(key, value, annotation))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for k, v in data.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def from_dict(data: dict[str, Any], where: str = "") -> Config:
    """A Config from a nested dict (a YAML file or a checkpoint's stored config)."""
    cfg = Config()
    for key, value in _flatten(data).items():
        set_key(cfg, key, value, where)
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.05"`` -> ``("optim.lr", 0.05)``; values are read as YAML scalars or lists."""
    if "=" not in text:
        raise UserError(f"override {text!r} is not of the form key=value (e.g. --set optim.lr=0.05)")
    key, raw = text.split("=", 1)
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def find_config(name_or_path: str) -> Path:
    """A config file by path, or by recipe name (``cifar10/resnet56``) from the project's configs folder."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = name_or_path.removesuffix(".yaml")
    for root in config_roots():
        candidate = root / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted(str(p.relative_to(r)).removesuffix(".yaml") for r in config_roots() for p in r.rglob("*.yaml"))
    close = difflib.get_close_matches(stem, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known recipes: {', '.join(known) or 'none found'}"
    raise UserError(f"no config file {name_or_path!r}; {hint}")


def config_roots() -> list[Path]:
    """Where recipes live: ``resnet/configs`` in an installed wheel, ``configs/`` in a source checkout."""
    here = Path(__file__).resolve().parent
    return [p for p in (here / "configs", here.parent.parent / "configs") if p.is_dir()]


def read_yaml(path: str | Path) -> Any:
    """The data of a YAML file (a recipe, a run's ``config.yaml``): a regular file, read through
    :func:`resnet.safe_yaml.load_yaml` (no aliases, no duplicate keys, bounded size and nesting)."""
    return load_yaml(read_input_text(path, max_bytes=4 * MAX_YAML_CHARS), shown(path))


def load_config(name_or_path: str | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file (if any), then ``key=value`` overrides."""
    cfg = Config()
    if name_or_path:
        path = find_config(name_or_path)
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of sections (model, data, optim, schedule, train)")
        cfg = from_dict(data, where=f"{path}: ")
    for text in overrides:
        set_key(cfg, *parse_override(text), where="--set: ")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks with messages that say what to change."""
    choices = {
        "data.dataset": (cfg.data.dataset, DATASET_KINDS),
        "data.normalize": (cfg.data.normalize, ("pixel_mean", "channel_mean_std")),
        "train.precision": (cfg.train.precision, ("auto", "fp32", "bf16")),
        "train.channels_last": (cfg.train.channels_last, ("auto", "true", "false")),
        "train.compile": (cfg.train.compile, ("off", "default", "reduce-overhead", "max-autotune")),
        "train.cuda_graph": (cfg.train.cuda_graph, ("auto", "true", "false")),
        "schedule.kind": (cfg.schedule.kind, ("steps", "plateau")),
        "schedule.milestone_unit": (cfg.schedule.milestone_unit, ("iterations", "epochs")),
        "data.lighting_axes": (cfg.data.lighting_axes, ("standard", "estimated")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise UserError(f"config key {key!r} is {value!r}; choose one of {', '.join(allowed)}")
    for key in all_keys(cfg):
        check_range(key, get_key(cfg, key))
    if not re.fullmatch(r"auto|cpu|cuda(:\d{1,4})?", cfg.train.device):
        raise UserError(f"config key 'train.device' is {cfg.train.device!r}; choose auto, cpu, cuda or cuda:N")
    if cfg.train.cuda_graph == "true" and cfg.train.compile != "off":
        raise UserError(
            "train.cuda_graph=true and train.compile both change how the step runs; choose one "
            "(compile mode reduce-overhead uses CUDA graphs itself)"
        )
    if cfg.train.cuda_graph == "true" and cfg.data.dataset == "imagefolder":
        raise UserError(
            "train.cuda_graph=true needs the device-resident loader (cifar10, cifar100, digits, synthetic), "
            "not image folders; use --set train.cuda_graph=false"
        )
    if cfg.schedule.iterations < 1 or cfg.train.batch_size < 1 or (cfg.schedule.epochs or 1) < 1:
        raise UserError("schedule.iterations, schedule.epochs and train.batch_size must be positive")
    if not cfg.data.crop <= cfg.data.scale_min <= cfg.data.scale_max:
        raise UserError("image folders need data.crop <= data.scale_min <= data.scale_max (224 <= 256 <= 480)")
    if not 0 <= cfg.data.val_fraction < 1:
        raise UserError(f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}")
    if sorted(cfg.schedule.milestones) != cfg.schedule.milestones:
        raise UserError(f"schedule.milestones must be increasing, got {cfg.schedule.milestones}")
    if not cfg.data.crop <= cfg.data.eval_resize:
        raise UserError("image folders need data.crop <= data.eval_resize (tests crop 224 from 256)")


def shortened_schedule(cfg: Config, iterations: int) -> dict[str, Any]:
    """The keys that scale a recipe's schedule to ``iterations`` (``train --iterations``, ``reproduce --iterations``).

    Milestones keep their place in the run (32k/48k of 64k become N/2 and 3N/4, section 4.2); evaluation
    keeps the recipe's share of the run (the paper's CIFAR recipe: 32 evaluations) but never less than 50
    iterations apart on long-enough runs (evaluating 15k images would cost more than training); at least 64
    log records and 8 checkpoints. Nothing changes for the recipe's own length or an epoch-based schedule.
    """
    sc, tr = cfg.schedule, cfg.train
    if iterations == sc.iterations or sc.epochs is not None:
        return {"schedule.iterations": iterations}
    full = sc.iterations
    evals = max(tr.eval_every * iterations // full, min(iterations, 50))
    keys: dict[str, Any] = {"schedule.iterations": iterations}
    if sc.milestone_unit == "iterations":
        # At least 1: a milestone at 0 would start the run at the last lr (and ranges.py refuses it); a
        # milestone that lands on or beyond the end of a 1-iteration run simply is not reached.
        keys["schedule.milestones"] = [max(1, m * iterations // full) for m in sc.milestones]
    keys["train.eval_every"] = evals
    keys["train.log_every"] = max(1, min(tr.log_every, iterations // 64))
    keys["train.checkpoint_every"] = max(evals, iterations // 8)
    return keys


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two config dicts."""
    a, b = _flatten(old), _flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def dump(cfg: Config) -> str:
    """The resolved config as YAML (sections in declaration order)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
