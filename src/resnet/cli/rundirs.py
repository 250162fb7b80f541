"""What ``resnet train`` trains and where: a recipe or a run directory, and the command that resumes it.

A run directory records its resolved recipe (``config.yaml``, data folder and overrides included), so
``resnet train RUN_DIR`` continues it with nothing repeated, and the original command (``resnet train
cifar10/resnet20 --out RUN_DIR``) finds the data folder there when the command does not name one.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Any

from resnet.config import Config, load_config, parse_override, shortened_schedule
from resnet.errors import UserError
from resnet.rundir_format import CONFIG, RUN_RECORDS, read_run_config

#: Shortcut flags of ``resnet train`` and the config keys they set.
FLAG_KEYS = (
    ("data_dir", "data.data_dir"),
    ("seed", "train.seed"),
    ("device", "train.device"),
    ("checkpoint_every", "train.checkpoint_every"),
)


def is_run_dir(path: str | Path) -> bool:
    """A folder that a ``resnet train`` wrote (it holds ``config.yaml``)."""
    return (Path(path) / CONFIG).is_file()


def overrides_of(args: argparse.Namespace) -> list[str]:
    """``--set`` values, then the shortcut flags as ``key=value`` (a data folder made absolute, so the run
    directory's record still finds it from another working directory)."""
    overrides = list(args.set or [])
    for flag, key in FLAG_KEYS:
        value = getattr(args, flag, None)
        if value is None:
            continue
        if flag == "data_dir":
            value = os.path.abspath(os.path.expanduser(value))
        overrides.append(f"{key}={value}")
    return overrides


def shortened(recipe: str | None, overrides: list[str], iterations: int) -> list[str]:
    """``--iterations N``: the recipe's schedule scaled to N (milestones, eval/log/checkpoint intervals, as
    ``reproduce --iterations`` does), under the keys the user set explicitly, which win."""
    if iterations < 1:
        raise UserError(f"--iterations must be positive, got {iterations}")
    given = {parse_override(o)[0] for o in overrides}
    scaled = shortened_schedule(load_config(recipe, overrides), iterations)
    keep = [f"{k}={v}" for k, v in scaled.items() if k not in given and k != "schedule.iterations"]
    return [*keep, *overrides, f"schedule.iterations={iterations}"]


def recorded_config(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's ``config.yaml`` as a dict, or None when it has none (or an unreadable one)."""
    if not (Path(run_dir) / CONFIG).is_file():
        return None
    try:
        data = read_run_config(run_dir)
    except (OSError, UserError):
        return None
    return data if isinstance(data, dict) else None


def resolve_target(args: argparse.Namespace) -> tuple[Config, Path, bool]:
    """The recipe to train, its run directory, and whether the recipe was read from a run directory.

    ``resnet train RUN_DIR`` reads ``RUN_DIR/config.yaml`` and trains into RUN_DIR (or into ``--out``, a new
    run with the same recipe). With a recipe name, a data folder recorded in ``--out``'s ``config.yaml`` is
    used when neither the command nor the recipe names one.
    """
    source = run_of_recipe(args.config)
    from_run = Path(source).is_dir()
    if from_run and not is_run_dir(source):
        raise UserError(
            f"{source} is a folder without config.yaml, so neither a recipe nor a run directory; "
            "pass a recipe (`resnet recipes` lists them) or the run directory `resnet train` wrote"
        )
    recipe = str(Path(source) / CONFIG) if from_run else source
    overrides = overrides_of(args)
    if getattr(args, "iterations", None) is not None:
        overrides = shortened(recipe, overrides, args.iterations)
    cfg = load_config(recipe, overrides)
    out = Path(args.out) if args.out else (Path(source) if from_run else default_run_dir(source, cfg))
    given = args.data_dir is not None or any(s.strip().startswith("data.data_dir=") for s in args.set or [])
    recorded_in = Path(source) / CONFIG if from_run and not given else None
    if cfg.data.data_dir is None:
        recorded = (recorded_config(out) or {}).get("data") or {}
        if isinstance(recorded, dict) and recorded.get("data_dir"):
            cfg.data.data_dir, recorded_in = str(recorded["data_dir"]), out / CONFIG
    if recorded_in and cfg.data.data_dir and not Path(cfg.data.data_dir).expanduser().exists():
        raise UserError(
            f"the data folder {cfg.data.data_dir} recorded in {recorded_in} does not exist (any more); "
            "pass --data-dir with its new place"
        )
    return cfg, out, from_run


def run_of_recipe(source: str) -> str:
    """A run's own ``RUN/config.yaml`` stands for the run (``resnet train RUN``); anything else is itself."""
    path = Path(source)
    # Only `resnet train` writes RUN_RECORDS: a recipe beside a checkpoint is no run (a fine-tuning project).
    if path.name == CONFIG and path.is_file() and any((path.parent / m).is_file() for m in RUN_RECORDS):
        return str(path.parent)
    return source


def default_run_dir(config: str | None, cfg: object) -> Path:
    """``runs/<recipe>`` for ``configs/cifar10/resnet56.yaml`` (or a file elsewhere): runs/cifar10-resnet56."""
    if not config:
        return Path("runs") / "default"
    path = Path(config)
    stem = path.stem if path.suffix else path.name
    parent = path.parent.name if path.parent.name not in ("", ".", "configs") else ""
    return Path("runs") / (f"{parent}-{stem}" if parent else stem)


def torchrun_prefix(env: dict[str, str] | None = None) -> list[str] | None:
    """The ``torchrun ... -m resnet`` that launched this process, rebuilt from what torchrun puts in the
    environment (LOCAL_WORLD_SIZE processes per node, GROUP_WORLD_SIZE nodes); None outside torchrun."""
    env = dict(os.environ if env is None else env)
    if "LOCAL_WORLD_SIZE" not in env or "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    per_node = int(env["LOCAL_WORLD_SIZE"])
    nodes = int(env.get("GROUP_WORLD_SIZE") or max(1, int(env["WORLD_SIZE"]) // max(1, per_node)))
    if nodes <= 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={per_node}", "-m", "resnet"]
    run_id = env.get("TORCHELASTIC_RUN_ID") or "ID"
    return ["torchrun", f"--nnodes={nodes}", f"--nproc_per_node={per_node}", "--rdzv_backend=c10d",
            "--rdzv_endpoint=HOST:PORT", f"--rdzv_id={run_id}", "-m", "resnet"]  # fmt: skip


def resume_command(out: Path, env: dict[str, str] | None = None) -> str:
    """The command that continues the run in ``out``: everything else is recorded there."""
    prefix = torchrun_prefix(env)
    line = shlex.join([*(prefix or ["resnet"]), "train", str(out)])
    if prefix and prefix[1].startswith("--nnodes"):
        return f"{line} (on every node; HOST:PORT is your rendezvous endpoint)"
    return line
