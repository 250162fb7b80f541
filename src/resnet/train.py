"""Training: ``train_one_step``, then ``fit`` wiring data, model, schedule, checkpoints and metrics together.

The loop is explicit and counts iterations, as the paper does (section 4.2: 64k iterations of batch 128).
It never loses work: checkpoints are atomic and hold everything needed to continue bit-identically
(model, optimizer, warm-up state, RNG, data position, preprocessing, metrics); the same command on an
existing run directory resumes it; SIGINT/SIGTERM finish the step, write a checkpoint and stop; a NaN/Inf
loss stops the run before anything bad is written. Host syncs happen only at log, eval and checkpoint
points (and every few iterations during the ResNet-110 warm-up), so a GPU never waits on Python.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet import distributed as dist
from resnet.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from resnet.config import Config, dump
from resnet.console import Console, StopSignals
from resnet.data.augment import Lighting
from resnet.data.preprocess import Normalizer
from resnet.data.sources import open_source
from resnet.errors import NonFiniteLoss, TrainingInterrupted, UserError
from resnet.metrics import MetricsLog, summarize
from resnet.models import create_model
from resnet.runs import RunDir, RunLock, check_resumable, record_invocation
from resnet.runtime import resolve_runtime
from resnet.schedule import LRSchedule, total_iterations


def model_kwargs(cfg: Config, num_classes: int, in_channels: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels}
    for key in ("shortcut", "bottleneck_stride"):
        if getattr(cfg.model, key) is not None:
            kwargs[key] = getattr(cfg.model, key)
    if cfg.model.zero_init_residual:
        kwargs["zero_init_residual"] = True
    return kwargs


def build_optimizer(cfg: Config, model: nn.Module, device: torch.device) -> torch.optim.SGD:
    """SGD with momentum 0.9 and weight decay 1e-4 on every parameter (section 4.2); foreach kernels on CUDA."""
    o = cfg.optim
    return torch.optim.SGD(
        model.parameters(),
        lr=o.lr,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        nesterov=o.nesterov,
        foreach=device.type == "cuda",
    )


def train_one_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    autocast: contextlib.AbstractContextManager | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step at learning rate ``lr``; returns (loss, number of wrong top-1 predictions) on the device."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast or contextlib.nullcontext():
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), (logits.detach().argmax(dim=1) != y).sum()


def fit(
    cfg: Config,
    out: str | Path,
    *,
    argv: list[str] | None = None,
    progress: bool | None = None,
    echo: bool = True,
) -> dict:
    """Train ``cfg`` into run directory ``out`` (resuming it if it holds a checkpoint); returns the summary.

    ``progress`` forces the tqdm bar on or off (default: on a terminal); ``echo=False`` prints nothing (the
    run's train.log still gets every line). The run directory is locked while this runs.
    """
    with contextlib.ExitStack() as held:
        return _fit(cfg, RunDir(Path(out)), held, argv=argv, progress=progress, echo=echo)


def _fit(
    cfg: Config,
    run: RunDir,
    held: contextlib.ExitStack,
    *,
    argv: list[str] | None,
    progress: bool | None,
    echo: bool,
) -> dict:
    device = dist.local_device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no CUDA device is available; use --device cpu")
    dist.setup(device)
    rank, world, main = dist.rank(), dist.world_size(), dist.is_main()
    rt = resolve_runtime(cfg, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    ckpt = load_checkpoint(run.checkpoint) if run.checkpoint.is_file() else None
    if ckpt is not None:
        check_resumable(run, ckpt["config"], cfg)
    source = open_source(cfg)  # before touching the run directory: a bad --data-dir leaves nothing behind
    if ckpt is not None:
        normalizer = Normalizer.from_state_dict(ckpt["preprocessing"])
        lighting = Lighting.from_state_dict(ckpt["lighting"]) if ckpt.get("lighting") else None
    else:
        normalizer, lighting = source.preprocessing(cfg)
        if world > 1:  # every rank must use rank 0's constants (estimates from a sample could differ)
            normalizer, lighting = dist.broadcast_object((normalizer, lighting))  # type: ignore[misc]
    torch.manual_seed(cfg.train.seed)
    kwargs = model_kwargs(cfg, len(source.classes), source.input_size[0])
    model = create_model(cfg.model.name, **kwargs).to(device)
    if world > 1 and cfg.train.sync_bn:
        if device.type != "cuda":
            raise UserError("train.sync_bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model, device)
    loader = source.train_stream(cfg, normalizer, lighting, device, rank, world)
    schedule = LRSchedule(cfg.schedule, cfg.optim.lr, device, loader.steps_per_epoch)
    iteration, records, seconds_before = 0, [], 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        loader.load_state_dict(ckpt["loader"])
        iteration, records = int(ckpt["iteration"]), list(ckpt["metrics"])
        seconds_before = float(ckpt.get("train_seconds", 0.0))
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
    if main:
        run.root.mkdir(parents=True, exist_ok=True)
        held.enter_context(RunLock(run))
        atomic_write_text(run.config, dump(cfg))
        if iteration < total_iterations(cfg.schedule, loader.steps_per_epoch):
            run.summary.unlink(missing_ok=True)  # extending a finished run: its old summary no longer holds
    metrics = MetricsLog(run.metrics if main else None, records)
    if cfg.train.tensorboard and main:
        metrics.enable_tensorboard(run.root / "tb")
    if main:
        record_invocation(run, argv, device, iteration)

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.train.compile != "off":
        net = torch.compile(net, mode=None if cfg.train.compile == "default" else cfg.train.compile)

    total = total_iterations(cfg.schedule, loader.steps_per_epoch)
    console = Console(run.log if main else None, total, iteration, enabled=main, progress=progress, echo=echo)
    sizes = ", ".join(f"{n} {split}" for split, n in source.sizes.items() if n)
    console.log(
        f"{'resuming' if ckpt else 'training'} {cfg.model.name} on {source.name} ({sizes}) at iteration "
        f"{iteration}/{total}, device {device}{f' x {world} ranks' if world > 1 else ''}, "
        f"{'bf16' if rt.autocast_dtype else 'fp32'}{', channels_last' if rt.channels_last else ''}; run dir {run.root}"
    )

    def state() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "model_name": cfg.model.name,
            "model_kwargs": kwargs,
            "iteration": iteration,
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "loader": loader.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
            "preprocessing": normalizer.state_dict(),
            "lighting": lighting.state_dict() if lighting is not None else None,
            "classes": source.classes,
            "input_size": list(source.input_size),
            "dataset": source.name,
            "metrics": metrics.records,
            "config": cfg.to_dict(),
            "train_seconds": seconds_before + time.perf_counter() - loop_start,
        }

    def checkpoint() -> None:
        # A step that wrecks the weights only shows in the *next* loss; never save such weights. "Wrecked" means
        # NaN/Inf, or so large that the squared norm overflows float32 (|w| above ~1e19; healthy nets: < 1e3).
        if not torch.stack([p.detach().float().square().sum() for p in model.parameters()]).sum().isfinite().item():
            kept = f"the last good checkpoint stays in {run.checkpoint}" if run.checkpoint.is_file() else "none"
            raise NonFiniteLoss(
                f"the weights became NaN/Inf by iteration {iteration}; training stopped without saving them; "
                f"checkpoint: {kept}. Lower optim.lr or check the data"
            )
        if main:
            save_checkpoint(run.checkpoint, state())
        dist.barrier()

    def run_eval() -> None:
        errors = {}
        if main:
            for split in source.eval_splits():
                res = source.evaluate(
                    split, model, normalizer, cfg, device, autocast=rt.autocast(), channels_last=rt.channels_last
                )
                errors[split] = res.error
                metrics.add({"iteration": iteration, "split": split, **res.as_record()})
                console.log(f"iter {iteration:>6}  {split:<5} error {res.error:6.2f}%  loss {res.loss:.4f}")
        if cfg.schedule.kind == "plateau":
            val = dist.broadcast_object(errors.get("val"))  # the lr must drop on every rank at once
            if val is not None and schedule.on_eval(iteration, val):  # type: ignore[arg-type]
                metrics.add({"iteration": iteration, "event": "lr_drop", "lr": schedule.lr(iteration)})
                console.log(f"iter {iteration:>6}  validation error plateaued: lr now {schedule.lr(iteration):g}")
        dist.barrier()

    # Per-iteration loss and wrong counts since the last log line, kept on the device.
    window = torch.zeros(cfg.train.log_every, 2, dtype=torch.float64, device=device)
    filled, window_start, window_images = 0, time.perf_counter(), 0
    per_rank = cfg.train.batch_size // world

    def check_finite() -> None:
        """Stop before anything is written if any iteration since the last check had a NaN/Inf loss."""
        losses = window[:filled, 0].clone()
        bad = torch.nonzero(~torch.isfinite(losses))
        first = torch.tensor([bad[0, 0].item() if len(bad) else math.inf], dtype=torch.float64, device=device)
        if world > 1:
            torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
        if math.isfinite(first.item()):
            at = iteration - filled + int(first.item()) + 1
            kept = (
                f"the last good checkpoint stays in {run.checkpoint}" if run.checkpoint.is_file() else "no checkpoint"
            )
            raise NonFiniteLoss(
                f"loss became {losses[int(first.item())].item() if world == 1 else 'NaN/Inf'} at iteration {at}; "
                f"training stopped; checkpoint: {kept}. Lower optim.lr or check the data"
            )

    def log_window(lr: float) -> None:
        """One training record for the iterations since the last one (loss and error averaged over ranks)."""
        nonlocal filled, window_images
        if filled == 0:
            return
        check_finite()
        sums = window[:filled].sum(dim=0)
        if world > 1:
            dist.all_reduce_sum(sums)
        elapsed = time.perf_counter() - window_start
        rec = {
            "iteration": iteration,
            "split": "train",
            "loss": sums[0].item() / (filled * world),
            "error": 100.0 * sums[1].item() / (filled * per_rank * world),
            "lr": lr,
            "img_per_s": window_images / max(elapsed, 1e-9),
        }
        if main:
            metrics.add(rec)
        console.train_line(rec)
        filled, window_images = 0, 0

    # The warm-up decision uses the running error over every rank, so all ranks switch at the same iteration.
    def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
        return dist.all_reduce_sum(t.clone()) / world

    reduce = mean_over_ranks if world > 1 else None
    stop = StopSignals()
    loop_start = time.perf_counter()
    with stop:
        while iteration < total:
            lr = schedule.lr(iteration)
            x, y = loader.next()
            if rt.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            else:
                x = x.contiguous()
            loss, wrong = train_one_step(net, optimizer, x, y, lr, rt.autocast())
            window[filled, 0], window[filled, 1] = loss, wrong
            filled += 1
            window_images += per_rank * world
            iteration += 1
            if schedule.warming_up and schedule.observe(iteration, wrong.double() * (100.0 / per_rank), reduce):
                check_finite()
                running = schedule.last_running_error
                if main:
                    metrics.add({"iteration": iteration, "event": "warmup_end", "running_error": running})
                console.log(
                    f"iter {iteration:>6}  warm-up ends: running training error {running:.1f}% "
                    f"< {cfg.schedule.warmup_until_error:g}%; lr {cfg.optim.lr:g} from now on"
                )
            at_end = iteration == total
            if iteration % cfg.train.log_every == 0 or at_end:
                log_window(lr)
            if iteration % cfg.train.eval_every == 0 or at_end:
                check_finite()
                run_eval()
            if iteration % cfg.train.checkpoint_every == 0 or at_end:
                log_window(lr)  # a killed run's metrics then stop exactly where its checkpoint does
                checkpoint()
            if iteration % cfg.train.log_every == 0 or at_end:
                window_start = time.perf_counter()  # img/s excludes evaluation and checkpoint time
            # Under DDP the ranks agree on stopping through an all-reduce, so ask only every 10 iterations.
            if (world == 1 or iteration % 10 == 0) and not at_end and stop.requested(world):
                log_window(lr)
                checkpoint()
                console.close()
                raise TrainingInterrupted(iteration, run.root, stop.name, stop.exit_code)

    summary = summarize(metrics.records, cfg.model.name, iteration)
    summary["train_seconds"] = seconds_before + time.perf_counter() - loop_start
    summary["target_iterations"] = total
    summary["data"] = {"dataset": source.name, **source.sizes}
    if getattr(loader, "skipped", 0):
        summary["skipped_images"] = loader.skipped  # type: ignore[attr-defined]
    if main:
        atomic_write_text(run.summary, json.dumps(summary, indent=2) + "\n")
    console.log(
        f"done: {iteration} iterations; "
        + ", ".join(f"{k} {v:.2f}%" for k, v in summary.items() if k.endswith("_error") and v is not None)
    )
    console.close()
    metrics.close()
    return summary
