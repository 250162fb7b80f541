"""Train several runs of a recipe, in this process or in parallel worker processes, reusing finished ones.

Used by ``resnet demo`` and ``resnet reproduce``. A run that is already complete returns its summary at
once (``fit`` on a finished run directory trains nothing), an interrupted one resumes. On a CPU, several
one-thread processes beat one multi-thread process for the paper's small convolutions (1.7x on 2 cores
for ResNet-20 on 8x8 digits, measured); on a GPU, runs go one after another (``jobs=1``).

Stopping is graceful at every level: Ctrl-C reaches every worker (they share the terminal's process
group) and each one finishes its step, writes a checkpoint and reports back; a SIGTERM sent to this process
alone is forwarded to the workers. No new run starts once a stop was asked for, and the call then raises
:class:`~resnet.errors.TrainingInterrupted`, so running the same command again resumes everything.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet.config import Config, load_config, parse_override, set_key, validate
from resnet.errors import TrainingInterrupted, UserError
from resnet.logs import console_level
from resnet.train.signals import StopSignals


@dataclass(frozen=True)
class RunSpec:
    name: str  # e.g. "resnet56-s0"
    recipe: str  # config name or path, e.g. "cifar10/resnet56"
    out: Path  # run directory
    overrides: tuple[str, ...] = field(default_factory=tuple)  # --set style key=value


def select_only(specs: list[RunSpec], only: Sequence[str] | None, nets: Sequence[str]) -> list[RunSpec]:
    """The specs ``--only`` names (a net such as ``resnet56``, or one run such as ``resnet56-s1``); a name that
    is not in the experiment is refused in one line listing the valid ones, never silently dropped."""
    if not only:
        return specs
    valid = set(nets) | {s.name for s in specs}
    unknown = [n for n in only if n not in valid]
    if unknown:
        raise UserError(f"--only {', '.join(unknown)}: not a net of this experiment; choose from {', '.join(nets)}")
    wanted = set(only)
    return [s for s in specs if s.name in wanted or s.name.rsplit("-s", 1)[0] in wanted]


#: Recipes by name while a :func:`recipe_cache` block runs (None: no cache).
_recipes: dict[str, dict[str, Config] | None] = {"cache": None}


@contextlib.contextmanager
def recipe_cache() -> Iterator[None]:
    """Within the block :func:`load_recipe` reads each recipe file once: ``reproduce`` builds many runs and
    reports of few recipes. A nested block shares the outer one's cache."""
    outer = _recipes["cache"]
    _recipes["cache"] = {} if outer is None else outer
    try:
        yield
    finally:
        _recipes["cache"] = outer


def load_recipe(recipe: str, overrides: Sequence[str] = ()) -> Config:
    """:func:`resnet.config.load_config`, the file read once per :func:`recipe_cache` block; each caller gets
    its own copy with its overrides applied."""
    cache = _recipes["cache"]
    if cache is None:
        return load_config(recipe, list(overrides))
    if recipe not in cache:
        cache[recipe] = load_config(recipe)
    cfg = copy.deepcopy(cache[recipe])
    for text in overrides:
        set_key(cfg, *parse_override(text), where="--set: ")
    validate(cfg)
    return cfg


def _train(spec: RunSpec, threads: int, echo: bool) -> dict[str, Any]:
    from resnet.train.loop import fit  # here, not at the top: registering experiments needs no torch

    cfg = load_recipe(spec.recipe, spec.overrides)
    argv = ["resnet", "train", spec.recipe, *spec.overrides]
    # One process at a time: the free-cores policy of `resnet train`; parallel workers: their share of the cores.
    summary = fit(cfg, spec.out, argv=argv, progress=echo, echo=echo, threads=threads or "auto")
    return {"name": spec.name, **summary}


def _worker(spec: RunSpec, threads: int, results: mp.Queue, log_level: int | None = None) -> None:
    """Child process: train one run and report (name, "ok", summary), "stopped" or "error" (a message).
    ``log_level``: the parent's console logging (a spawned process starts without it), None for none."""
    try:
        from resnet.logs import log_to_console
        from resnet.plugins import load_plugins

        if log_level is not None:
            log_to_console(log_level)  # the warnings of its data loading show as the parent's would

        load_plugins()  # a spawned process starts bare: a user's model family or dataset must be registered again
        results.put((spec.name, "ok", _train(spec, threads, False)))
    except TrainingInterrupted as e:
        results.put((spec.name, "stopped", e))
    except KeyboardInterrupt:  # Ctrl-C before training started (loading data): nothing to save yet
        results.put((spec.name, "stopped", TrainingInterrupted(0, spec.out, "SIGINT", 130)))
    except UserError as e:
        results.put((spec.name, "error", f"{spec.name}: {e}"))
    except BaseException as e:  # a bug: report it with its type rather than dying silently
        results.put((spec.name, "error", f"{spec.name}: {type(e).__name__}: {e}"))


def train_runs(
    specs: Sequence[RunSpec],
    jobs: int = 1,
    echo: bool = False,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every spec (in the caller's order; longest first balances workers); returns {name: summary}."""
    cores = os.cpu_count() or 1
    jobs = max(1, min(jobs, len(specs) or 1, cores))
    results: dict[str, dict[str, Any]] = {}
    if jobs == 1:
        for spec in specs:
            r = _train(spec, 0, echo)
            results[r["name"]] = r
            if on_done:
                on_done(r)
        return results

    # spawn, not fork: a forked child of a process that already ran torch ops can deadlock in OpenMP.
    ctx = mp.get_context("spawn")
    inbox: mp.Queue = ctx.Queue()
    pending, running = list(specs), {}
    stopped: TrainingInterrupted | None = None
    errors: list[str] = []
    forwarded = False
    with StopSignals() as stop:

        def launching() -> bool:  # after a stop request or an error no new run starts
            return bool(pending) and stop.signum is None and not errors

        while running or launching():
            while launching() and len(running) < jobs:
                spec = pending.pop(0)
                work = (spec, max(1, cores // jobs), inbox, console_level())
                proc = ctx.Process(target=_worker, args=work, name=spec.name)
                proc.start()
                running[spec.name] = proc
            if stop.signum == signal.SIGTERM and not forwarded:  # Ctrl-C reaches the workers by itself
                for proc in running.values():
                    proc.terminate()  # SIGTERM: the worker finishes its step, checkpoints and stops
                forwarded = True
            try:
                name, kind, payload = inbox.get(timeout=0.5)
            except queue.Empty:
                for name, proc in list(running.items()):
                    if not proc.is_alive() and proc.exitcode not in (None, 0):  # exit 0: its report is queued
                        # Died without reporting (e.g. Ctrl-C while still importing torch: nothing to save).
                        running.pop(name)
                        if stop.signum is None:
                            errors.append(f"{name}: the worker process died (exit code {proc.exitcode})")
                continue
            proc = running.pop(name, None)
            if proc is not None:
                proc.join()
            if kind == "ok":
                results[name] = payload
                if on_done:
                    on_done(payload)
            elif kind == "stopped":
                stopped = payload
            else:
                errors.append(payload)
    if errors:
        raise UserError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    if stopped is not None:
        raise stopped
    if stop.signum is not None:
        raise TrainingInterrupted(len(results), Path("."), stop.name, stop.exit_code)
    return results
