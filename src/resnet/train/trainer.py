"""The Trainer: one run while it trains, the explicit loop and what happens at its log, eval and checkpoint points.

:func:`resnet.train.loop.fit` builds it from named steps (device, model check, resume point, data,
preprocessing, train state, run directory), then calls ``announce``, ``loop`` and ``finish``.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from resnet.checkpoint import Checkpoint
from resnet.config import Config
from resnet.data.augment import Lighting
from resnet.data.preprocess import Normalizer
from resnet.data.sources import ArraySource, FolderSource
from resnet.errors import NonFiniteLoss, TrainingInterrupted, UserError
from resnet.eval.sources import evaluate_split
from resnet.io import write_output
from resnet.rundir_format import RunDir, summarize
from resnet.train import distributed as dist
from resnet.train.bn_average import recomputed_bn_event
from resnet.train.console import Console
from resnet.train.graphed import WARMUP_ITERS, WARMUP_ITERS_DDP, GraphedStep, use_cuda_graph
from resnet.train.meters import LossWindow
from resnet.train.metrics_log import MetricsLog
from resnet.train.runtime import Runtime
from resnet.train.schedule import describe_schedule, plural, total_iterations
from resnet.train.signals import StopSignals
from resnet.train.state import TrainState
from resnet.train.step import train_one_step

Source = ArraySource | FolderSource


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
        try:  # a run stopped between log points continues its window (its records then equal an unstopped run's)
            self.window.load_state_dict(state.saved_window, dist.rank())
        except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as e:
            raise UserError(
                f"{run.checkpoint}: damaged checkpoint: its loss window does not fit this run ({e}); "
                "restore the file from a backup or train into a new --out"
            ) from None
        log = run.log if self.main else None
        self.console = Console(log, self.total, state.iteration, enabled=self.main, progress=progress, echo=echo,
                               batch_size=cfg.train.batch_size)  # fmt: skip
        self.graph: GraphedStep | None = None
        if use_cuda_graph(cfg, state.loader):
            self.graph = GraphedStep(
                self.net, state.optimizer, state.schedule, state.loader, rt, self.window,
                capture=rt.device.type == "cuda", warmup_iters=WARMUP_ITERS_DDP if self.world > 1 else WARMUP_ITERS,
            )  # fmt: skip

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
        if self.graph is not None:
            layout += ", CUDA graph" if self.graph.capture else ", capturable step (uncaptured)"
        it = self.state.iteration
        if it >= self.total:  # a finished run given again: nothing to train (its summary is rewritten)
            doing = f"{cfg.model.name} in {self.run.root} is finished ({it}/{self.total} iterations): nothing to train"
        else:
            doing = f"{'resuming' if resumed else 'training'} {cfg.model.name} on {src.name} ({sizes}) at iteration "
            doing += f"{it}/{self.total}"
        threads = f", {rt.threads}" if rt.threads else ""
        self.console.log(
            f"{doing}, device {rt.device}{ranks}{threads}, "
            f"{'bf16' if rt.autocast_dtype else 'fp32'}{layout}; run dir {self.run.root}"
            + (f"; {self.state.origin}" if self.state.origin else "")
            + "; "
            + describe_schedule(cfg, self.state.loader.steps_per_epoch)
        )

    def loop(self) -> None:
        """Train until the schedule's last iteration, or until a signal asks to stop."""
        s, every = self.state, self.cfg.train
        stop = StopSignals()
        s.start_clock()
        with stop:
            while s.iteration < self.total:
                lr = None if self.graph is not None else s.schedule.lr(s.iteration)
                if lr is None:
                    self.graph_step()
                else:
                    self.check_warmup(self.step(lr))
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
                    self.checkpoint()  # the unlogged window travels in it: no record is split by the stop
                    self.console.close()
                    raise TrainingInterrupted(s.iteration, self.run.root, stop.name, stop.exit_code)

    def step(self, lr: float) -> torch.Tensor:
        """One SGD step on the next batch; returns its number of wrong predictions (on the device)."""
        x, y = self.state.loader.next()
        x = x.contiguous(memory_format=torch.channels_last) if self.rt.channels_last else x.contiguous()
        loss, wrong = train_one_step(self.net, self.state.optimizer, x, y, lr, self.rt.autocast())
        self.window.add(loss, wrong)
        self.state.iteration += 1
        self.console.tick()
        return wrong

    def graph_step(self) -> None:
        """One iteration of the captured step; its lr stays on the device (read at log points: lr None)."""
        reduce = (lambda t: dist.all_reduce_sum(t.clone()) / self.world) if self.world > 1 else None
        self.graph.run(self.state.iteration, reduce)  # type: ignore[union-attr]
        self.window.filled += 1
        self.state.iteration += 1

    def read_graph(self) -> None:
        """The captured step's warm-up state back into the schedule; log the warm-up's end if it happened."""
        if self.graph is None:
            return
        ended = self.graph.read_back()
        if ended is not None:
            self.check_finite()
            self.warmup_ended(*ended)

    def check_warmup(self, wrong: torch.Tensor) -> None:
        """ResNet-110/1202: end the warm-up once the running training error is below the threshold."""
        schedule, it = self.state.schedule, self.state.iteration
        if not schedule.warming_up:
            return
        reduce = (lambda t: dist.all_reduce_sum(t.clone()) / self.world) if self.world > 1 else None
        if not schedule.observe(it, wrong.double() * (100.0 / self.window.per_rank), reduce):
            return
        self.check_finite()
        self.warmup_ended(it, schedule.last_running_error)

    def warmup_ended(self, it: int, running: float) -> None:
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

    def log(self, lr: float | None) -> None:
        """One training record for the iterations since the last one (``lr`` None: read the device's)."""
        if self.window.filled == 0:
            return
        self.check_finite()
        self.read_graph()
        if lr is None:
            lr = self.graph.last_lr()  # type: ignore[union-attr]
        rec = self.window.record(self.state.iteration, lr)
        if self.main:
            self.metrics.add(rec)  # type: ignore[arg-type]
        self.console.train_line(rec)  # type: ignore[arg-type]

    def evaluate(self) -> None:
        """Val/test errors, each rank evaluating its share of the images (rank 0 records them); a plateau
        schedule then drops the lr on every rank at once."""
        self.check_finite()
        self.read_graph()  # a plateau schedule asks whether the warm-up is over
        self.window.clock.pause()  # img/s counts training steps only
        s, errors = self.state, {}
        dist.broadcast_buffers(s.model)
        for split in self.source.eval_splits():
            res = evaluate_split(self.source, split, s.model, self.normalizer, self.cfg, self.rt.device,
                                 autocast=self.rt.autocast(), channels_last=self.rt.channels_last,
                                 shard=self.world > 1)  # fmt: skip
            errors[split] = res.error
            if self.main:
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
        window = self.window.state_dict()  # every rank's rows (a collective), before rank 0 writes
        dist.agree(lambda: self._save(window) if self.main else None)  # a failed write ends every rank at once
        self.window.clock.resume()

    def _save(self, window: dict[str, Any] | None) -> None:
        ckpt = self.describe()
        ckpt.training["window"] = window  # type: ignore[index]
        ckpt.save(self.run.checkpoint)

    def describe(self) -> Checkpoint:
        """The typed checkpoint of the current state."""
        self.read_graph()
        train = self.state.state_dict()
        if self.graph is not None:
            train["optimizer"] = self.graph.host_optimizer_state(train["optimizer"])
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

    def average_bn(self) -> None:
        """``train.recompute_bn``: the final errors with averaged BN statistics, once per finished run."""
        done = [r for r in self.metrics.records if r.get("event") == "recomputed_bn"]
        if (
            done
            and done[-1]["iteration"] == self.state.iteration
            and done[-1]["requested"] == self.cfg.train.recompute_bn
        ):
            return
        event = recomputed_bn_event(self.cfg, self.source, self.state.model, self.normalizer, self.rt,  # type: ignore[arg-type]
                                    self.state.iteration)  # fmt: skip
        self.metrics.add(event)
        errors = ", ".join(f"{k.split('_')[0]} error {v:.2f}%" for k, v in event.items() if k.endswith("_error"))
        self.console.log(f"iter {self.state.iteration:>6}  BN statistics averaged over {event['batches']} "
                         f"training batches: {errors}")  # fmt: skip

    def finish(self) -> dict[str, Any]:
        """Write summary.json (final errors, the val-selected one, time, data sizes) and close the logs."""
        s = self.state
        if self.main and self.cfg.train.recompute_bn and s.iteration >= self.total:
            self.average_bn()
        summary = summarize(self.metrics.records, self.cfg.model.name, s.iteration)
        summary["train_seconds"] = s.train_seconds()
        summary["target_iterations"] = self.total
        summary["data"] = {"dataset": self.source.name, **self.source.sizes}
        if getattr(s.loader, "skipped", 0):
            summary["skipped_images"] = s.loader.skipped  # type: ignore[attr-defined]
        if self.main:
            write_output(self.run.summary, json.dumps(summary, indent=2) + "\n", owned=True)
        errors = ", ".join(f"{k} {v:.2f}%" for k, v in summary.items() if k.endswith("_error") and v is not None)
        self.console.end_bar()  # "done:" below the final bar, not above it
        self.console.log(f"done: {plural(s.iteration, 'iteration')}; {errors}")
        self.console.close()
        self.metrics.close()
        return summary
