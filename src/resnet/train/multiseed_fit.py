"""``fit`` for several seeds at once: one wider step (:mod:`resnet.train.multiseed`), K ordinary run directories.

Each seed's directory gets exactly what ``fit`` writes (config.yaml with its ``train.seed``, run.json,
metrics.jsonl, train.log, checkpoint.pt, summary.json) in the same formats, so ``resnet eval``, the reports
and ``fit`` itself treat it as a single run: a replica's checkpoint continues under plain ``fit``. Log, eval
and checkpoint points are the recipe's; Ctrl-C/SIGTERM checkpoint every replica and stop; a NaN/Inf loss in
any replica stops them all before anything is written. Resuming batched needs every directory at the same
iteration (as an interrupted ``fit_seeds`` leaves them); other mixes are refused with the way out.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from resnet.checkpoint import Checkpoint
from resnet.config import Config, dump
from resnet.data.sources import ArraySource, open_source
from resnet.errors import NonFiniteLoss, TrainingInterrupted, UserError
from resnet.eval.sources import evaluate_split
from resnet.io import write_output
from resnet.rundir_format import RunDir, summarize
from resnet.train import distributed as dist
from resnet.train.console import Console
from resnet.train.loop import check_model, read_resume_point, resolve_device
from resnet.train.meters import StepClock
from resnet.train.metrics_log import MetricsLog
from resnet.train.multiseed import MultiSeedTrainer
from resnet.train.resume import check_same_data
from resnet.train.rundir import claim, record_invocation
from resnet.train.schedule import describe_schedule, plural, total_iterations
from resnet.train.signals import StopSignals


def seed_config(cfg: Config, seed: int) -> Config:
    out = copy.deepcopy(cfg)
    out.train.seed = seed
    return out


class SeedRuns:
    """The K run directories of one batched training, and the loop that fills them."""

    def __init__(self, cfg: Config, outs: dict[int, Path], argv: list[str] | None, echo: bool) -> None:
        self.cfg, self.seeds = cfg, list(outs)
        if cfg.train.compile != "off" or cfg.train.cuda_graph == "true":
            raise UserError(
                "several seeds as one step run eagerly; train.compile and train.cuda_graph are for single runs"
            )
        if dist.launched_by_torchrun():
            raise UserError("several seeds as one step run in one process; start it without torchrun")
        if cfg.train.recompute_bn:
            raise UserError(
                "train.recompute_bn runs after single runs; with several seeds as one step, average BN afterwards "
                "with `resnet eval RUN_DIR --recompute-bn N` on each run directory"
            )
        self.runs = {s: RunDir(Path(o)) for s, o in outs.items()}
        self.rt = resolve_device(cfg)
        check_model(cfg)
        ckpts = {s: read_resume_point(self.runs[s], seed_config(cfg, s)) for s in self.seeds}
        done = {s: (c.iteration or 0) if c is not None else 0 for s, c in ckpts.items()}
        if len(set(done.values())) > 1:
            at = ", ".join(f"seed {s}: {i}" for s, i in done.items())
            raise UserError(f"the runs are at different iterations ({at}); resume them one by one with fit / --seed")
        self.source = open_source(cfg)
        if not isinstance(self.source, ArraySource):
            raise UserError("several seeds as one step need array data (CIFAR, digits, synthetic), not image folders")
        for s, c in ckpts.items():
            check_same_data(self.runs[s], c, self.source)
        first = next((c for c in ckpts.values() if c is not None), None)
        self.normalizer = first.normalizer() if first is not None else self.source.preprocessing(cfg)[0]
        dev = self.rt.device
        x, y = (torch.from_numpy(a).to(dev) for a in (self.source.data.train_x, self.source.data.train_y))
        self.multi = MultiSeedTrainer(cfg, self.seeds, x, y, self.normalizer, self.rt, len(self.source.classes))
        self.records: dict[int, list[dict[str, Any]]] = {s: [] for s in self.seeds}
        self.seconds_before = 0.0
        for k, (s, c) in enumerate(ckpts.items()):
            if c is not None:
                where = str(self.runs[s].checkpoint)
                training = c.require_training(where)
                try:
                    self.multi.load_replica(k, c.state_dict, training)
                except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
                    raise UserError(
                        f"{where}: damaged checkpoint: its training state does not fit this run "
                        f"({type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}); restore the file "
                        "from a backup or train into a new --out"
                    ) from None
                self.records[s] = list(training["metrics"])
                self.seconds_before = max(self.seconds_before, float(training.get("train_seconds", 0.0)))
        self.multi.iteration = done[self.seeds[0]]
        self.total = total_iterations(cfg.schedule, self.multi.loaders[0].steps_per_epoch)
        self.argv, self.echo = argv, echo
        self.window: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.clock = StepClock()
        self.t0 = time.perf_counter()
        self.restore_window(
            [c.training.get("window") if c is not None and c.training else None for c in ckpts.values()]
        )

    def restore_window(self, saved: list[dict[str, Any] | None]) -> None:
        """Continue the loss window a stop saved between log points (every seed's, of the same length)."""
        if not all(saved):
            return
        rows = [w["rows"] for w in saved]  # type: ignore[index]
        if any(r.dim() != 3 or r.shape[0] != 1 or r.shape[1:] != rows[0].shape[1:] or r.shape[2] != 2 for r in rows):
            raise UserError("the seeds' checkpoints hold loss windows that do not fit together; restore them from "
                            "a backup or train into a new --out")  # fmt: skip
        per_seed = torch.stack([r[0] for r in rows], dim=1).to(self.rt.device, torch.float64)  # n x K x 2
        self.window = [(row[:, 0], row[:, 1]) for row in per_seed]
        self.clock.seconds += float(saved[0].get("seconds", 0.0))  # type: ignore[union-attr]

    @property
    def train_seconds(self) -> float:
        """Time in the training loop, over every invocation of these runs."""
        return self.seconds_before + time.perf_counter() - self.t0

    def open(self, held: contextlib.ExitStack) -> None:
        self.metrics, self.consoles = {}, {}
        for s, run in self.runs.items():  # each locked by fit_seeds (claim) before anything was read
            record_invocation(run, self.argv, self.rt.device, self.multi.iteration)
            write_output(run.config, dump(seed_config(self.cfg, s)), owned=True)
            if self.multi.iteration < self.total:
                run.summary.unlink(missing_ok=True)
            self.metrics[s] = MetricsLog(run.metrics, self.records[s])
            self.consoles[s] = Console(run.log, self.total, self.multi.iteration, progress=False,
                                       echo=self.echo and s == self.seeds[0])  # fmt: skip
        self.consoles[self.seeds[0]].log(
            f"training seeds {', '.join(map(str, self.seeds))} of {self.cfg.model.name} as one step on "
            f"{self.rt.device}{', ' + self.rt.threads if self.rt.threads else ''} from iteration "
            f"{self.multi.iteration}/{self.total} (lines below: seed {self.seeds[0]}); {describe_schedule(self.cfg)}"
        )

    def loop(self) -> None:
        every, multi = self.cfg.train, self.multi
        self.t0 = time.perf_counter()
        with StopSignals() as stop:
            while multi.iteration < self.total:
                self.window.append(multi.step())
                it, at_end = multi.iteration, multi.iteration == self.total
                if it % every.log_every == 0 or at_end:
                    self.log()
                if it % every.eval_every == 0 or at_end:
                    self.evaluate()
                if it % every.checkpoint_every == 0 or at_end:
                    self.checkpoint()
                if not at_end and stop.requested(1):
                    self.checkpoint(flush=False)  # the unlogged window travels in it: no record split by the stop
                    raise TrainingInterrupted(it, self.runs[self.seeds[0]].root, stop.name, stop.exit_code)

    def log(self) -> None:
        """One training record per seed for the iterations since the last one (NaN/Inf stops every seed)."""
        if not self.window:
            return
        losses = torch.stack([w[0] for w in self.window]).double()  # iterations x K
        wrong = torch.stack([w[1] for w in self.window]).double()
        seconds, n, b = self.clock.read_and_reset(), len(self.window), self.cfg.train.batch_size
        sums, bad = torch.cat([losses.sum(0), wrong.sum(0)]).tolist(), (~torch.isfinite(losses)).nonzero().tolist()
        self.window = []
        if bad:
            row, k = bad[0]
            at = self.multi.iteration - n + row + 1
            raise NonFiniteLoss(f"seed {self.seeds[k]}: loss became {losses[row, k].item()} at iteration {at}; "
                                "every seed stopped; their last good checkpoints stay. Lower optim.lr")  # fmt: skip
        for k, s in enumerate(self.seeds):
            ended = self.multi.schedules[k].warmup_ended_at
            if ended is not None and ended > self.multi.iteration - n:
                running = self.multi.schedules[k].last_running_error
                self.metrics[s].add({"iteration": ended, "event": "warmup_end", "running_error": running})
                self.consoles[s].log(
                    f"iter {ended:>6}  warm-up ends: running training error {running:.1f}% "
                    f"< {self.cfg.schedule.warmup_until_error:g}%; lr {self.cfg.optim.lr:g} from now on"
                )
            rec = {"iteration": self.multi.iteration, "split": "train", "loss": sums[k] / n,
                   "error": 100.0 * sums[len(self.seeds) + k] / (n * b),
                   "lr": self.multi.last_lrs[k], "img_per_s": n * b / max(seconds, 1e-9)}  # fmt: skip
            self.metrics[s].add(rec)
            self.consoles[s].train_line(rec)

    def evaluate(self) -> None:
        self.clock.pause()
        it = self.multi.iteration
        for k, s in enumerate(self.seeds):
            model, _ = self.multi.replica_model(k)
            for split in self.source.eval_splits():
                res = evaluate_split(self.source, split, model, self.normalizer, self.cfg, self.rt.device,
                                     autocast=self.rt.autocast(), channels_last=self.rt.channels_last)  # fmt: skip
                self.metrics[s].add({"iteration": it, "split": split, **res.as_record()})
                self.consoles[s].log(f"iter {it:>6}  {split:<5} error {res.error:6.2f}%  loss {res.loss:.4f}")
        self.clock.resume()

    def checkpoint(self, flush: bool = True) -> None:
        if flush:
            self.log()
        self.clock.pause()
        replicas = [self.multi.replica_model(k) for k in range(len(self.seeds))]
        for s, (model, _) in zip(self.seeds, replicas, strict=True):  # every seed checked before any is saved
            norms = torch.stack([p.detach().float().square().sum() for p in model.parameters()]).sum()
            if not math.isfinite(norms.item()):
                raise NonFiniteLoss(f"seed {s}: the weights became NaN/Inf by iteration {self.multi.iteration}; "
                                    "every seed stopped without saving them. Lower optim.lr")  # fmt: skip
        for k, (s, (model, opt)) in enumerate(zip(self.seeds, replicas, strict=True)):
            self.describe(k, s, model, opt).save(self.runs[s].checkpoint)
        self.clock.resume()

    def window_state(self, k: int) -> dict[str, Any] | None:
        """Seed ``k``'s unlogged loss window, as :meth:`resnet.train.meters.LossWindow.state_dict` saves it."""
        if not self.window:
            return None
        rows = torch.stack([torch.stack([w[0][k], w[1][k]]).double() for w in self.window]).cpu()
        return {"rows": rows[None], "per_rank": self.cfg.train.batch_size, "seconds": self.clock.seconds_so_far()}

    def describe(self, k: int, seed: int, model: torch.nn.Module, opt: torch.optim.Optimizer) -> Checkpoint:
        cuda = self.rt.device.type == "cuda"
        training = {
            "optimizer": opt.state_dict(),
            "schedule": self.multi.schedules[k].state_dict(),
            "loader": self.multi.loaders[k].state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(self.rt.device) if cuda else None},
            "metrics": self.metrics[seed].records,
            "train_seconds": self.train_seconds,
            "window": self.window_state(k),
        }
        src = self.source
        return Checkpoint(model_name=self.cfg.model.name, model_kwargs=self.multi.kwargs,
                          state_dict=model.state_dict(), preprocessing=self.normalizer.state_dict(),
                          classes=list(src.classes), input_size=list(src.input_size), dataset=src.name,
                          iteration=self.multi.iteration, config=seed_config(self.cfg, seed).to_dict(),
                          lighting=None, training=training, data=src.fingerprint())  # fmt: skip

    def finish(self) -> dict[int, dict[str, Any]]:
        out = {}
        for s, run in self.runs.items():
            summary = summarize(self.metrics[s].records, self.cfg.model.name, self.multi.iteration)
            data = {"dataset": self.source.name, **self.source.sizes}
            summary.update(train_seconds=self.train_seconds, target_iterations=self.total, data=data)
            summary["batched_seeds"] = self.seeds
            write_output(run.summary, json.dumps(summary, indent=2) + "\n", owned=True)
            self.consoles[s].log(f"done: {plural(self.multi.iteration, 'iteration')} (seed {s})")
            self.consoles[s].close()
            self.metrics[s].close()
            out[s] = summary
        return out


def fit_seeds(
    cfg: Config, outs: dict[int, str | Path], *, argv: list[str] | None = None, echo: bool = True
) -> dict[int, dict[str, Any]]:
    """Train ``cfg`` for every seed of ``outs`` ({seed: run directory}) as one step; returns {seed: summary}."""
    with contextlib.ExitStack() as held:
        for out in outs.values():
            claim(RunDir(Path(out)), held)  # every run directory locked before any is read
        runs = SeedRuns(cfg, {s: Path(o) for s, o in outs.items()}, argv, echo)
        runs.open(held)
        runs.loop()
        return runs.finish()
