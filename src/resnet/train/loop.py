"""Training: ``fit`` as a few named steps (device, model, resume point, data, state, run directory) around the
explicit loop of :class:`resnet.train.trainer.Trainer`.

The loop counts iterations, as the paper does (section 4.2: 64k iterations of batch 128). It never loses
work: checkpoints are atomic and hold everything needed to continue bit-identically (the train state plus
the model's description); the same command on an existing run directory resumes it; SIGINT/SIGTERM finish
the step, write a checkpoint and stop; a NaN/Inf loss stops the run before anything bad is written. Host
syncs happen only at log, eval and checkpoint points (and every few iterations during the ResNet-110
warm-up), so a GPU never waits on Python.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.checkpoint import Checkpoint, load_checkpoint
from resnet.checkpoint.transfer import init_from, init_normalizer
from resnet.config import Config, dump
from resnet.data.augment import Lighting
from resnet.data.preprocess import Normalizer
from resnet.data.sources import ArraySource, FolderSource, open_source
from resnet.errors import UserError
from resnet.io import write_output
from resnet.models import build_network
from resnet.rundir_format import RunDir, read_metrics
from resnet.train import distributed as dist
from resnet.train.bn_average import check_supported
from resnet.train.metrics_log import MetricsLog, require_tensorboard
from resnet.train.resume import check_same_data, restore
from resnet.train.rundir import check_resumable, claim, record_invocation
from resnet.train.runtime import Runtime, Threads, resolve_runtime
from resnet.train.schedule import LRSchedule, total_iterations
from resnet.train.state import TrainState, build_optimizer, model_kwargs
from resnet.train.trainer import Trainer

Source = ArraySource | FolderSource


def fit(
    cfg: Config,
    out: str | Path,
    *,
    argv: list[str] | None = None,
    progress: bool | None = None,
    echo: bool = True,
    restart: bool = False,
    threads: Threads = None,
) -> dict[str, Any]:
    """Train ``cfg`` into run directory ``out`` (resuming it if it holds a checkpoint); returns the summary.

    ``progress`` forces the tqdm bar on or off (default: on a terminal); ``echo=False`` prints nothing (the
    run's train.log still gets every line). ``threads``: torch's intra-op threads, a number, "auto" (the
    policy of :func:`resnet.train.runtime.choose_threads`, what ``resnet train`` uses) or None (left as they
    are). The run directory is locked while this runs. ``restart``: a run whose checkpoint is gone trains
    again from iteration 0, its old metrics kept aside.
    """
    run = RunDir(Path(out))
    rt = resolve_device(cfg, threads)
    # Under torchrun every step below that may fail on one rank alone (its data, rank 0's run directory) is
    # agreed on: all ranks end together with that rank's one line, none waits in a collective it never joins.
    agree = dist.agree
    agree(lambda: dist.check_divides(cfg.train.batch_size))
    agree(lambda: check_model(cfg))  # a misspelt model fails before thousands of images are decoded
    if cfg.train.tensorboard:
        agree(require_tensorboard)  # before the run directory is touched
    with contextlib.ExitStack() as held:
        claim(run, held)  # locked before anything in it is read: a finishing run's last checkpoint is never stale
        ckpt = read_resume_point(run, cfg, restart)
        if ckpt is None:
            early_config(run, cfg, held)  # a kill while the data loads still leaves `resnet train RUN` to retry
        source = agree(lambda: open_source(cfg))  # before writing: a bad --data-dir leaves nothing behind
        agree(lambda: _check_source(run, ckpt, cfg, source))
        normalizer, lighting = preprocessing(cfg, source, ckpt)
        state, kwargs = agree(lambda: init_state(cfg, source, normalizer, lighting, rt, ckpt, str(run.checkpoint)))
        metrics = agree(lambda: open_run_dir(run, cfg, state, argv, rt.device))
        held.callback(metrics.close)  # however the run ends (NaN, Ctrl-C, error): TensorBoard's events flushed
        trainer = Trainer(cfg=cfg, run=run, source=source, normalizer=normalizer, lighting=lighting, state=state,
                          kwargs=kwargs, metrics=metrics, rt=rt, progress=progress, echo=echo)  # fmt: skip
        trainer.announce(resumed=ckpt is not None)
        trainer.loop()
        return trainer.finish()


def resolve_device(cfg: Config, threads: Threads = None) -> Runtime:
    """The device this process trains on (joining torchrun's process group), and how the math runs there."""
    device = dist.local_device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no CUDA device is available; use --device cpu")
    dist.setup(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return resolve_runtime(cfg, device, threads)


def check_model(cfg: Config) -> None:
    """Build the recipe's model on the meta device (no memory, no RNG use): a bad name or option fails now."""
    with torch.device("meta"):
        build_network(cfg.model.name, **model_kwargs(cfg, 10, 3))


def _check_source(run: RunDir, ckpt: Checkpoint | None, cfg: Config, source: Source) -> None:
    """The run may go on with this data (its checkpoint's), and the recipe's options work on it."""
    check_same_data(run, ckpt, source)
    check_supported(cfg, source)


def read_resume_point(run: RunDir, cfg: Config, restart: bool = False) -> Checkpoint | None:
    """The run directory's checkpoint, if any, after checking that it may be continued under ``cfg``.

    Under torchrun rank 0 alone reads it and sends it to the others: the run directory need only be visible
    on the first node.
    """
    ckpt = dist.agree(lambda: _read_resume_point(run, cfg, restart) if dist.is_main() else None)
    return dist.broadcast_object(ckpt) if dist.world_size() > 1 else ckpt


def _read_resume_point(run: RunDir, cfg: Config, restart: bool) -> Checkpoint | None:
    """A run without a checkpoint whose metrics reach past its first checkpoint lost that checkpoint (deleted,
    moved): starting it over would silently rewrite its metrics, so it is refused with the choices, and
    ``restart`` moves the old metrics aside (``metrics.jsonl.old``, ``.old-2``, ...) and starts over. A run
    killed before its first checkpoint simply starts again.
    """
    if not run.checkpoint.is_file():
        reached = recorded_iteration(run)
        first = min(cfg.train.checkpoint_every, cfg.schedule.iterations or cfg.train.checkpoint_every)
        if reached >= first and not restart:
            raise UserError(
                f"{run.root} has metrics up to iteration {reached} but no checkpoint.pt (deleted or moved?); "
                f"put the checkpoint back to resume it, train into a new --out, or pass --restart to train it "
                "again from iteration 0 (its old metrics are kept aside)"
            )
        if reached > 0 and restart:
            keep_aside(run.metrics)
            keep_aside(run.summary)
        return None
    if restart:
        raise UserError(
            f"--restart is for a run whose checkpoint is gone, and {run.checkpoint} exists; to train again from "
            "iteration 0 choose a new --out"
        )
    ckpt = load_checkpoint(run.checkpoint)
    ckpt.require_training(str(run.checkpoint))
    check_resumable(run, ckpt.config or {}, cfg)
    return ckpt


def recorded_iteration(run: RunDir) -> int:
    """The last iteration a run's ``metrics.jsonl`` records (0 when it has none)."""
    if not run.metrics.exists():
        return 0
    return max((r["iteration"] for r in read_metrics(run.metrics) if type(r.get("iteration")) is int), default=0)


def keep_aside(path: Path) -> Path | None:
    """Rename ``path`` to the first free ``NAME.old``, ``NAME.old-2``, ...; never over an existing file."""
    if not path.exists():
        return None
    for n in range(1, 10_000):
        aside = path.with_name(f"{path.name}.old" + (f"-{n}" if n > 1 else ""))
        if not os.path.lexists(aside):
            os.rename(path, aside)
            return aside
    raise UserError(f"{path.parent} holds 10,000 old copies of {path.name}; remove some")


def early_config(run: RunDir, cfg: Config, held: contextlib.ExitStack) -> None:
    """Write a fresh run's resolved recipe before the data is read (minutes for an image folder), so a run
    killed before its first checkpoint restarts with ``resnet train RUN``; an error or Ctrl-C before training
    starts takes it back (a bad --data-dir leaves nothing behind)."""
    if not dist.is_main() or run.config.exists():
        return
    write_output(run.config, dump(cfg), owned=True)
    held.callback(_forget_early_config, run)


def _forget_early_config(run: RunDir) -> None:
    if not run.invocations.exists():  # training never started: nothing else in the run refers to it
        run.config.unlink(missing_ok=True)


def preprocessing(cfg: Config, source: Source, ckpt: Checkpoint | None) -> tuple[Normalizer, Lighting | None]:
    """The checkpoint's constants when resuming; else estimated from the training data (rank 0's under DDP)."""
    if ckpt is not None:
        return dist.agree(
            lambda: (ckpt.normalizer(), Lighting.from_state_dict(ckpt.lighting) if ckpt.lighting else None)
        )
    if dist.world_size() > 1 and not dist.is_main():  # rank 0's estimates are used; none needed here
        normalizer, lighting = dist.agree(lambda: (None, None))
    else:
        normalizer, lighting = dist.agree(lambda: _estimate(cfg, source))
    if dist.world_size() > 1:  # every rank must use rank 0's constants (estimates from a sample could differ)
        normalizer, lighting = dist.broadcast_object((normalizer, lighting))
    assert normalizer is not None  # rank 0 estimated it, and every rank now holds rank 0's
    return normalizer, lighting


def _estimate(cfg: Config, source: Source) -> tuple[Normalizer, Lighting | None]:
    normalizer, lighting = source.preprocessing(cfg)
    if cfg.model.init_from:  # fine-tuned weights see inputs normalised as in their own training
        normalizer = init_normalizer(cfg.model.init_from, source.input_size) or normalizer
    return normalizer, lighting


def init_state(
    cfg: Config,
    source: Source,
    normalizer: Normalizer,
    lighting: Lighting | None,
    rt: Runtime,
    ckpt: Checkpoint | None,
    where: str = "checkpoint",
) -> tuple[TrainState, dict[str, Any]]:
    """Model (seeded He init), optimizer, schedule and data stream; restored from ``ckpt`` when resuming."""
    device, world = rt.device, dist.world_size()
    torch.manual_seed(cfg.train.seed)
    kwargs = model_kwargs(cfg, len(source.classes), source.input_size[0])
    model = build_network(cfg.model.name, **kwargs).to(device)
    origin = None
    if ckpt is None and cfg.model.init_from:  # fine-tuning; a resumed run has its own weights
        origin = init_from(cfg.model.init_from, model, cfg.model.name)
    if world > 1 and cfg.train.sync_bn:
        if device.type != "cuda":
            raise UserError("train.sync_bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub omits it
    optimizer = build_optimizer(cfg, model, device)
    loader = source.train_stream(cfg, normalizer, lighting, device, dist.rank(), world)
    schedule = LRSchedule(cfg.schedule, cfg.optim.lr, device, loader.steps_per_epoch)
    state = TrainState(model, optimizer, schedule, loader, device)
    state.origin = origin
    if ckpt is not None:
        restore(state, ckpt, where)
    return state, kwargs


def open_run_dir(
    run: RunDir,
    cfg: Config,
    state: TrainState,
    argv: list[str] | None,
    device: torch.device,
) -> MetricsLog:
    """Record this invocation (first: it marks the folder as a run), write the resolved recipe, open the metrics."""
    main = dist.is_main()
    if main:
        record_invocation(run, argv, device, state.iteration)
        write_output(run.config, dump(cfg), owned=True)
        if state.iteration < total_iterations(cfg.schedule, state.loader.steps_per_epoch):
            run.summary.unlink(missing_ok=True)  # extending a finished run: its old summary no longer holds
    metrics = MetricsLog(run.metrics if main else None, state.records)
    state.records = metrics.records
    if cfg.train.tensorboard and main:
        metrics.enable_tensorboard(run.root / "tb")
    return metrics
