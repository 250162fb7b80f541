"""Training: ``train_one_step``, and ``fit`` as a few named steps around an explicit loop.

The loop counts iterations, as the paper does (section 4.2: 64k iterations of batch 128). It never loses
work: checkpoints are atomic and hold everything needed to continue bit-identically (the train state plus
the model's description); the same command on an existing run directory resumes it; SIGINT/SIGTERM finish
the step, write a checkpoint and stop; a NaN/Inf loss stops the run before anything bad is written. Host
syncs happen only at log, eval and checkpoint points (and every few iterations during the ResNet-110
warm-up), so a GPU never waits on Python.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.checkpoint import Checkpoint, load_checkpoint
from resnet.config import Config, dump
from resnet.data.augment import Lighting
from resnet.data.preprocess import Normalizer
from resnet.data.sources import ArraySource, FolderSource, open_source
from resnet.errors import NonFiniteLoss, TrainingInterrupted, UserError
from resnet.eval.sources import evaluate_split
from resnet.io import atomic_write_text
from resnet.models import create_model
from resnet.train import distributed as dist
from resnet.train.console import Console
from resnet.train.meters import LossWindow
from resnet.train.metrics_log import MetricsLog, summarize
from resnet.train.resume import check_same_data, restore
from resnet.train.rundir import RunDir, check_resumable, claim, record_invocation
from resnet.train.runtime import Runtime, resolve_runtime
from resnet.train.schedule import LRSchedule, total_iterations
from resnet.train.signals import StopSignals
from resnet.train.state import TrainState, build_optimizer, model_kwargs
from resnet.train.step import train_one_step

Source = ArraySource | FolderSource


def fit(
    cfg: Config,
    out: str | Path,
    *,
    argv: list[str] | None = None,
    progress: bool | None = None,
    echo: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` into run directory ``out`` (resuming it if it holds a checkpoint); returns the summary.

    ``progress`` forces the tqdm bar on or off (default: on a terminal); ``echo=False`` prints nothing (the
    run's train.log still gets every line). The run directory is locked while this runs.
    """
    run = RunDir(Path(out))
    rt = resolve_device(cfg)
    check_model(cfg)  # a misspelt model fails before thousands of images are decoded
    with contextlib.ExitStack() as held:
        claim(run, held)  # locked before anything in it is read: a finishing run's last checkpoint is never stale
        ckpt = read_resume_point(run, cfg)
        source = open_source(cfg)  # before writing: a bad --data-dir leaves nothing behind
        check_same_data(run, ckpt, source)
        normalizer, lighting = preprocessing(cfg, source, ckpt)
        state, kwargs = init_state(cfg, source, normalizer, lighting, rt, ckpt, str(run.checkpoint))
        metrics = open_run_dir(run, cfg, state, argv, rt.device)
        trainer = Trainer(cfg, run, source, normalizer, lighting, state, kwargs, metrics, rt, progress, echo)
        trainer.announce(resumed=ckpt is not None)
        trainer.loop()
        return trainer.finish()


def resolve_device(cfg: Config) -> Runtime:
    """The device this process trains on (joining torchrun's process group), and how the math runs there."""
    device = dist.local_device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no CUDA device is available; use --device cpu")
    dist.setup(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return resolve_runtime(cfg, device)


def check_model(cfg: Config) -> None:
    """Build the recipe's model on the meta device (no memory, no RNG use): a bad name or option fails now."""
    with torch.device("meta"):
        create_model(cfg.model.name, **model_kwargs(cfg, 10, 3))


def read_resume_point(run: RunDir, cfg: Config) -> Checkpoint | None:
    """The run directory's checkpoint, if any, after checking that it may be continued under ``cfg``."""
    if not run.checkpoint.is_file():
        return None
    ckpt = load_checkpoint(run.checkpoint)
    ckpt.require_training(str(run.checkpoint))
    check_resumable(run, ckpt.config or {}, cfg)
    return ckpt


def preprocessing(cfg: Config, source: Source, ckpt: Checkpoint | None) -> tuple[Normalizer, Lighting | None]:
    """The checkpoint's constants when resuming; else estimated from the training data (rank 0's under DDP)."""
    if ckpt is not None:
        return ckpt.normalizer(), (Lighting.from_state_dict(ckpt.lighting) if ckpt.lighting else None)
    normalizer, lighting = source.preprocessing(cfg)
    if dist.world_size() > 1:  # every rank must use rank 0's constants (estimates from a sample could differ)
        normalizer, lighting = dist.broadcast_object((normalizer, lighting))  # type: ignore[misc]
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
    model = create_model(cfg.model.name, **kwargs).to(device)
    if world > 1 and cfg.train.sync_bn:
        if device.type != "cuda":
            raise UserError("train.sync_bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model, device)
    loader = source.train_stream(cfg, normalizer, lighting, device, dist.rank(), world)
    schedule = LRSchedule(cfg.schedule, cfg.optim.lr, device, loader.steps_per_epoch)
    state = TrainState(model, optimizer, schedule, loader, device)
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
        atomic_write_text(run.config, dump(cfg))
        if state.iteration < total_iterations(cfg.schedule, state.loader.steps_per_epoch):
            run.summary.unlink(missing_ok=True)  # extending a finished run: its old summary no longer holds
    metrics = MetricsLog(run.metrics if main else None, state.records)
    state.records = metrics.records
    if cfg.train.tensorboard and main:
        metrics.enable_tensorboard(run.root / "tb")
    return metrics


class Trainer:
    """One run while it trains: the loop, and what happens at its log, eval and checkpoint points."""

    def __init__(
        self,
        cfg: Config,
        run: RunDir,
        source: Source,
        normalizer: Normalizer,
        lighting: Lighting | None,
        state: TrainState,
        kwargs: dict[str, Any],
        metrics: MetricsLog,
        rt: Runtime,
        progress: bool | None,
        echo: bool,
    ) -> None:
        self.cfg, self.run, self.source, self.state, self.kwargs = cfg, run, source, state, kwargs
        self.normalizer, self.lighting, self.metrics, self.rt = normalizer, lighting, metrics, rt
        self.world, self.main = dist.world_size(), dist.is_main()
        self.total = total_iterations(cfg.schedule, state.loader.steps_per_epoch)
        self.net = self._wrap(state.model)
        self.window = LossWindow(cfg.train.log_every, rt.device, cfg.train.batch_size // self.world, self.world)
        self.console = Console(
            run.log if self.main else None, self.total, state.iteration, enabled=self.main, progress=progress, echo=echo
        )

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP across ranks, then ``torch.compile`` if the recipe asks for it."""
        net = model
        if self.world > 1:
            ids = [self.rt.device] if self.rt.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.train.compile != "off":
            net = torch.compile(net, mode=None if self.cfg.train.compile == "default" else self.cfg.train.compile)
        return net

    def announce(self, resumed: bool) -> None:
        cfg, src, rt = self.cfg, self.source, self.rt
        sizes = ", ".join(f"{n} {split}" for split, n in src.sizes.items() if n)
        ranks = f" x {self.world} ranks" if self.world > 1 else ""
        layout = ", channels_last" if rt.channels_last else ""
        self.console.log(
            f"{'resuming' if resumed else 'training'} {cfg.model.name} on {src.name} ({sizes}) at iteration "
            f"{self.state.iteration}/{self.total}, device {rt.device}{ranks}, "
            f"{'bf16' if rt.autocast_dtype else 'fp32'}{layout}; run dir {self.run.root}"
        )

    def loop(self) -> None:
        """Train until the schedule's last iteration, or until a signal asks to stop."""
        s, every = self.state, self.cfg.train
        stop = StopSignals()
        s.start_clock()
        with stop:
            while s.iteration < self.total:
                lr = s.schedule.lr(s.iteration)
                wrong = self.step(lr)
                self.check_warmup(wrong)
                at_end = s.iteration == self.total
                if s.iteration % every.log_every == 0 or at_end:
                    self.log(lr)
                if s.iteration % every.eval_every == 0 or at_end:
                    self.evaluate()
                if s.iteration % every.checkpoint_every == 0 or at_end:
                    self.log(lr)  # a killed run's metrics then stop exactly where its checkpoint does
                    self.checkpoint()
                # Under DDP the ranks agree on stopping through an all-reduce, so ask only every 10 iterations.
                if not at_end and (self.world == 1 or s.iteration % 10 == 0) and stop.requested(self.world):
                    self.log(lr)
                    self.checkpoint()
                    self.console.close()
                    raise TrainingInterrupted(s.iteration, self.run.root, stop.name, stop.exit_code)

    def step(self, lr: float) -> torch.Tensor:
        """One SGD step on the next batch; returns its number of wrong predictions (on the device)."""
        x, y = self.state.loader.next()
        x = x.contiguous(memory_format=torch.channels_last) if self.rt.channels_last else x.contiguous()
        loss, wrong = train_one_step(self.net, self.state.optimizer, x, y, lr, self.rt.autocast())
        self.window.add(loss, wrong)
        self.state.iteration += 1
        return wrong

    def check_warmup(self, wrong: torch.Tensor) -> None:
        """ResNet-110/1202: end the warm-up once the running training error is below the threshold."""
        schedule, it = self.state.schedule, self.state.iteration
        if not schedule.warming_up:
            return
        reduce = (lambda t: dist.all_reduce_sum(t.clone()) / self.world) if self.world > 1 else None
        if not schedule.observe(it, wrong.double() * (100.0 / self.window.per_rank), reduce):
            return
        self.check_finite()
        running = schedule.last_running_error
        if self.main:
            self.metrics.add({"iteration": it, "event": "warmup_end", "running_error": running})
        self.console.log(
            f"iter {it:>6}  warm-up ends: running training error {running:.1f}% "
            f"< {self.cfg.schedule.warmup_until_error:g}%; lr {self.cfg.optim.lr:g} from now on"
        )

    def check_finite(self) -> None:
        """Stop before anything is written if any iteration since the last check had a NaN/Inf loss."""
        bad = self.window.first_nonfinite()
        if bad is None:
            return
        at = self.state.iteration - self.window.filled + bad[0] + 1
        loss = bad[1] if self.world == 1 else "NaN/Inf"
        raise NonFiniteLoss(
            f"loss became {loss} at iteration {at}; training stopped; checkpoint: {self._kept()}. "
            "Lower optim.lr or check the data"
        )

    def _kept(self) -> str:
        return f"the last good checkpoint stays in {self.run.checkpoint}" if self.run.checkpoint.is_file() else "none"

    def log(self, lr: float) -> None:
        """One training record for the iterations since the last one."""
        if self.window.filled == 0:
            return
        self.check_finite()
        rec = self.window.record(self.state.iteration, lr)
        if self.main:
            self.metrics.add(rec)  # type: ignore[arg-type]
        self.console.train_line(rec)  # type: ignore[arg-type]

    def evaluate(self) -> None:
        """Val/test errors on rank 0; a plateau schedule then drops the lr on every rank at once."""
        self.check_finite()
        self.window.clock.pause()  # img/s counts training steps only
        s, errors = self.state, {}
        if self.main:
            for split in self.source.eval_splits():
                res = evaluate_split(self.source, split, s.model, self.normalizer, self.cfg, self.rt.device,
                                     autocast=self.rt.autocast(), channels_last=self.rt.channels_last)  # fmt: skip
                errors[split] = res.error
                self.metrics.add({"iteration": s.iteration, "split": split, **res.as_record()})
                self.console.log(f"iter {s.iteration:>6}  {split:<5} error {res.error:6.2f}%  loss {res.loss:.4f}")
        if self.cfg.schedule.kind == "plateau":
            val = dist.broadcast_object(errors.get("val"))
            if val is not None and s.schedule.on_eval(s.iteration, val):  # type: ignore[arg-type]
                lr = s.schedule.lr(s.iteration)
                self.metrics.add({"iteration": s.iteration, "event": "lr_drop", "lr": lr})
                self.console.log(f"iter {s.iteration:>6}  validation error plateaued: lr now {lr:g}")
        dist.barrier()
        self.window.clock.resume()

    def checkpoint(self) -> None:
        """Save the train state with the model's description (rank 0), never weights that blew up."""
        s = self.state
        if not s.weights_finite():
            raise NonFiniteLoss(
                f"the weights became NaN/Inf by iteration {s.iteration}; training stopped without saving them; "
                f"checkpoint: {self._kept()}. Lower optim.lr or check the data"
            )
        self.window.clock.pause()
        if self.main:
            self.describe().save(self.run.checkpoint)
        dist.barrier()
        self.window.clock.resume()

    def describe(self) -> Checkpoint:
        """The typed checkpoint of the current state."""
        train = self.state.state_dict()
        return Checkpoint(
            model_name=self.cfg.model.name,
            model_kwargs=self.kwargs,
            state_dict=train.pop("model"),
            preprocessing=self.normalizer.state_dict(),
            classes=list(self.source.classes),
            input_size=list(self.source.input_size),
            dataset=self.source.name,
            iteration=train.pop("iteration"),
            config=self.cfg.to_dict(),
            lighting=self.lighting.state_dict() if self.lighting is not None else None,
            training=train,
            data=self.source.fingerprint(),
        )

    def finish(self) -> dict[str, Any]:
        """Write summary.json (final errors, the val-selected one, time, data sizes) and close the logs."""
        s = self.state
        summary = summarize(self.metrics.records, self.cfg.model.name, s.iteration)
        summary["train_seconds"] = s.train_seconds()
        summary["target_iterations"] = self.total
        summary["data"] = {"dataset": self.source.name, **self.source.sizes}
        if getattr(s.loader, "skipped", 0):
            summary["skipped_images"] = s.loader.skipped  # type: ignore[attr-defined]
        if self.main:
            atomic_write_text(self.run.summary, json.dumps(summary, indent=2) + "\n")
        errors = ", ".join(f"{k} {v:.2f}%" for k, v in summary.items() if k.endswith("_error") and v is not None)
        self.console.log(f"done: {s.iteration} iterations; {errors}")
        self.console.close()
        self.metrics.close()
        return summary
