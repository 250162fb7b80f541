"""``resnet.evaluate`` and ``resnet eval``: a run's, checkpoint's or model's error on its data.

The model, preprocessing and data are rebuilt from what the checkpoint records (or what a model made by
``resnet.create_model``/``resnet.load`` carries); the evaluation itself is :func:`resnet.eval.evaluate.evaluate_model`.
Array datasets (CIFAR, digits) use the single original view (section 4.2). Image-folder runs and converted
ImageNet weights use a test protocol (center, 10crop or multiscale; section 3.4) on ``DATA_DIR/val``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from resnet.checkpoint import Checkpoint
from resnet.data.datasets import DATASETS, FOLDER_DATASETS, FolderDataset, is_folder_dataset, load_dataset
from resnet.data.imagefolder import scan
from resnet.errors import UserError
from resnet.eval.evaluate import BNAverage, EvalProtocol, EvalReport, evaluate_model
from resnet.eval.metrics import EvalResult
from resnet.interop.evaluate_engines import array_data_config, evaluate_with_engine, read_checkpoint
from resnet.train.distributed import local_device


def evaluate(
    model: str | Path | nn.Module,
    data_dir: str | Path | None = None,
    *,
    dataset: str | None = None,
    split: str = "test",
    protocol: str | None = None,
    limit: int | None = None,
    scores: str = "softmax",
    device: str = "auto",
    workers: int | None = None,
    recompute_bn: int = 0,
    backend: str | None = None,
    precision: str = "fp32",
    compile: bool = False,
    progress: bool = False,
) -> EvalReport:
    """The top-1/top-5 error, loss and per-class error of ``model`` on its data, as a frozen :class:`EvalReport`.

    ``model``: a checkpoint, run directory, ``.safetensors``, ``save_pretrained`` folder, ``.onnx``/``.pt2``
    export, or a model made by :func:`resnet.create_model`/:func:`resnet.load` (it carries its description).
    ``data_dir``: where the data lies (default: the recipe's); ``dataset`` a registered dataset to test on
    instead of the recorded one (same classes). Image folders are tested on ``data_dir/val`` with
    ``protocol`` (center, 10crop, multiscale); arrays on ``split``'s single native view. ``recompute_bn`` > 0
    also evaluates a copy whose BN statistics are averaged over that many training batches.
    ``backend``/``precision`` (or an ``.onnx``/``.pt2`` file) go through an inference engine (array datasets);
    ``compile`` runs the torch engine through torch.compile; ``progress`` shows a bar for image folders on a
    terminal (``resnet eval``; quiet by default for library callers).
    """
    target = local_device(device)  # a bad or absent device fails before anything is read
    if limit is not None and (type(limit) is not int or limit < 1):
        raise UserError(f"--limit must be at least 1, got {limit!r}")
    if workers is not None and (type(workers) is not int or workers < 0):
        raise UserError(f"--workers must be 0 or more, got {workers!r}")
    if recompute_bn < 0:
        raise UserError(f"--recompute-bn takes a number of training batches (1 or more), got {recompute_bn}")
    data = str(data_dir) if data_dir is not None else None
    asked = _Asked(split, data, dataset, protocol, limit, scores, workers, recompute_bn, progress)
    if isinstance(model, nn.Module):
        if backend is not None or precision != "fp32" or compile:
            raise UserError("--backend/--precision/--compile evaluate a file; pass the checkpoint's path")
        return _evaluate(_description(model), model.to(target), None, asked)
    if backend is not None or precision != "fp32" or compile or str(model).lower().endswith((".onnx", ".pt2")):
        if protocol not in (None, "center"):
            raise UserError(f"--protocol {protocol} is for image folders; CIFAR is tested on the single 32x32 view")
        if recompute_bn:
            raise UserError(
                "--recompute-bn needs the PyTorch model; drop --backend/--precision/--compile or the .onnx file"
            )
        # An engine runs on the CPU unless a device is named: `auto` must not turn `--precision int8`
        # (onnxruntime, CPU only) into an error on a machine that happens to have a GPU.
        engine_device = None if device == "auto" else target
        return evaluate_with_engine(
            model, split, data, limit, backend or "auto", precision, compile, engine_device, dataset=dataset
        )
    # .safetensors weights carry our metadata in their header (``resnet convert --to x.safetensors``), a
    # save_pretrained folder in its config.json; everything else is a checkpoint of ours or a run directory.
    ckpt = read_checkpoint(model)
    net = ckpt.build_model(str(model)).to(target)
    return _evaluate(ckpt, net, model, asked)


def _description(model: nn.Module) -> Checkpoint:
    """The description a library model carries (its classes, preprocessing, dataset, recipe)."""
    describe = getattr(model, "checkpoint", None)
    if not callable(describe):
        raise UserError(
            "this model carries no description (classes, preprocessing, dataset); make it with resnet.create_model "
            "or resnet.load, or call resnet.eval.evaluate.evaluate_model with the data and normalizer"
        )
    return describe()


@dataclass(frozen=True)
class _Asked:
    """What :func:`evaluate` was asked for, passed on whole to the data-specific halves below."""

    split: str
    data_dir: str | None
    dataset: str | None
    protocol: str | None
    limit: int | None
    scores: str
    workers: int | None
    recompute_bn: int
    progress: bool


def _evaluate(ckpt: Checkpoint, model: nn.Module, path: str | Path | None, asked: _Asked) -> EvalReport:
    where = str(path) if path is not None else ckpt.model_name
    tested = asked.dataset or ckpt.dataset
    if is_folder_dataset(tested):
        return _evaluate_folder(ckpt, model, where, FOLDER_DATASETS[tested], asked)
    cfg = ckpt.recipe(where)
    data = load_dataset(array_data_config(ckpt, where, asked.data_dir, asked.dataset))
    bn = None
    if asked.recompute_bn:  # the equal-weight average over training batches of the run's batch size
        bn = BNAverage(
            asked.recompute_bn,
            batch_size=cfg.train.batch_size if cfg is not None else 128,  # converted weights: the paper's batch
            seed=cfg.train.seed if cfg is not None else 0,  # the run's own batches, as train.recompute_bn uses
        )
    views = EvalProtocol(views=asked.protocol or DATASETS[data.name].protocol, limit=asked.limit)
    return evaluate_model(
        model, data, ckpt.normalizer(), split=asked.split, protocol=views, asked=asked.protocol, bn=bn,
        name=ckpt.model_name, checkpoint=where, iteration=ckpt.iteration,
    )  # fmt: skip


def _evaluate_folder(
    ckpt: Checkpoint, model: nn.Module, where: str, described: FolderDataset, asked: _Asked
) -> EvalReport:
    cfg = ckpt.recipe(where)
    if asked.recompute_bn:
        raise UserError("--recompute-bn works on CIFAR/digits runs for now (image folders are not supported)")
    root = asked.data_dir or (cfg.data.data_dir if cfg else None)
    if not root:
        raise UserError("pass --data-dir ROOT (an image folder with ROOT/val/<class>/*)")
    # A run's labels are its training folder's classes (the val folder may lack some); converted ImageNet
    # weights carry class *names*, so there the folder's own sorted order (= torchvision's) is used.
    index = scan(Path(root).expanduser() / "val", classes=ckpt.classes if described.run_classes else None)
    if len(index.classes) != len(ckpt.classes):  # e.g. 1000 ImageNet classes vs another folder
        raise UserError(f"{root}/val has {len(index.classes)} classes but the model predicts {len(ckpt.classes)}")
    views = EvalProtocol(
        views=asked.protocol or described.protocol,
        limit=asked.limit,
        scores=asked.scores,
        resize=ckpt.eval_resize(where).shorter_side,  # as predict feeds these weights
        size=ckpt.input_size[-1],
        workers=asked.workers if asked.workers is not None else (cfg.data.workers if cfg else 4),
        strict=cfg.data.strict_decode if cfg else False,
        progress=asked.progress,
    )
    return evaluate_model(  # image folders hold a val split only
        model, index, ckpt.normalizer(), split="val", protocol=views, asked=asked.protocol,
        name=ckpt.model_name, checkpoint=where, iteration=ckpt.iteration,
    )  # fmt: skip


def format_eval(report: EvalReport) -> str:
    """``resnet eval``'s table: the errors, the engine if any, and each class's error."""
    res: EvalResult = report.result
    lines = [
        f"{report.model} {_when(report.iteration)}, {report.split_label} split ({res.n} images)",
        f"top-1 error: {res.error:.2f}%   top-5 error: {res.top5_error:.2f}%   loss: {res.loss:.4f}",
    ]
    if report.recomputed_bn is not None:
        bn = report.recomputed_bn.result
        lines[-1] += "   (BN statistics: moving averages, as trained)"
        lines.append(
            f"top-1 error: {bn.error:.2f}%   top-5 error: {bn.top5_error:.2f}%   loss: {bn.loss:.4f}   "
            f"(BN statistics: averages over {report.recomputed_bn.batches} training batches)"
        )
    lines += [
        "",
        f"{'class':<14} {'error %':>8}",
    ]
    if report.engine is not None:
        engine = f"engine: {report.engine}"
        if report.agreement is not None and report.fp32_error is not None:
            engine += (
                f"; top-1 agrees with fp32 on {100.0 * report.agreement:.2f}% of images; fp32 top-1 error "
                f"{report.fp32_error:.2f}% ({res.error - report.fp32_error:+.2f} points)"
            )
        lines.insert(2, engine)
    for name, err in zip(report.classes, res.per_class, strict=False):
        lines.append(f"{name:<14} {err:>8.2f}")
    if res.skipped:
        lines.append(f"\n{len(res.skipped)} unreadable image(s) skipped, e.g. {res.skipped[0]}")
    return "\n".join(lines)


def _when(iteration: int | None) -> str:
    """Converted weights (and exports of them) record no training iteration."""
    return "(converted weights)" if iteration is None else f"at iteration {iteration}"
