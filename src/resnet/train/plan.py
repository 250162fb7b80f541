"""``resnet train --dry-run``: what a command would train, resolved without training or writing a run directory.

It opens the data (so a wrong ``--data-dir`` fails here, in a second, rather than after minutes), builds the
model on the meta device (no memory), and lays the schedule out in iterations: the milestones of section 4.2
(32k and 48k of 64k) or the epochs they stand for, the first lr (0.01 during the ResNet-110 warm-up), and
where an existing run directory would be resumed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from resnet.config import Config
from resnet.data.loader import check_batch_fits
from resnet.data.sources import open_source
from resnet.models import build_network
from resnet.models.complexity import count_macs, count_params
from resnet.rundir_format import RunDir
from resnet.train.bn_average import check_supported
from resnet.train.loop import read_resume_point
from resnet.train.resume import check_same_data
from resnet.train.rundir import check_out_dir
from resnet.train.schedule import LRSchedule, format_drops, lr_drops, plural, total_iterations
from resnet.train.state import model_kwargs


@dataclass
class Plan:
    """A resolved training command, as ``--dry-run`` prints it."""

    recipe: str
    run_dir: Path
    dataset: str
    sizes: dict[str, int]
    input_size: tuple[int, ...]
    classes: int
    model: str
    model_kwargs: dict[str, object]
    params: int
    macs: int
    batch_size: int
    steps_per_epoch: int
    iterations: int
    first_lr: float
    drops: list[tuple[int, int, float]]  # (iteration, milestones falling there, lr after): lr_drops
    gamma: float
    warmup: str | None
    plateau: bool = False
    resume_at: int | None = None
    notes: list[str] = field(default_factory=list)


def plan_run(cfg: Config, out: str | Path) -> Plan:
    """Resolve data, model and schedule of ``cfg`` trained into ``out``; reads files, writes no run directory."""
    run = RunDir(Path(out))
    check_out_dir(run.root)  # the checks the real run makes, from the same functions
    ckpt = read_resume_point(run, cfg)
    resume_at = None if ckpt is None else ckpt.iteration or 0
    source = open_source(cfg)
    check_same_data(run, ckpt, source)
    check_supported(cfg, source)
    kwargs = model_kwargs(cfg, len(source.classes), source.input_size[0])
    with torch.device("meta"):
        model = build_network(cfg.model.name, **kwargs)
    check_batch_fits(source.sizes["train"], cfg.train.batch_size, int(os.environ.get("WORLD_SIZE", "1")))
    steps = max(1, source.sizes["train"] // cfg.train.batch_size)
    schedule = LRSchedule(cfg.schedule, cfg.optim.lr, torch.device("cpu"), steps)
    total = total_iterations(cfg.schedule, steps)
    sc = cfg.schedule
    drops = [] if sc.kind == "plateau" else lr_drops(schedule.milestones, cfg.optim.lr, sc.gamma, total)
    warmup = None
    if sc.warmup_lr is not None:
        warmup = f"lr {sc.warmup_lr:g} until the running training error is below {sc.warmup_until_error:g}%"
    notes = []
    beyond = [m for m in schedule.milestones if m >= total] if sc.kind == "steps" else []
    if beyond:
        notes.append(f"milestones at {', '.join(f'{m:,}' for m in beyond)} lie beyond the last iteration ({total:,})")
    return Plan(
        recipe=cfg.description,
        run_dir=run.root,
        dataset=source.name,
        sizes=dict(source.sizes),
        input_size=tuple(source.input_size),
        classes=len(source.classes),
        model=cfg.model.name,
        model_kwargs=kwargs,
        params=count_params(model),
        macs=count_macs(model, tuple(source.input_size)),
        batch_size=cfg.train.batch_size,
        steps_per_epoch=steps,
        iterations=total,
        first_lr=cfg.optim.lr,
        drops=drops,
        gamma=sc.gamma,
        warmup=warmup,
        plateau=sc.kind == "plateau",
        resume_at=resume_at,
        notes=notes,
    )


def format_plan(p: Plan) -> str:
    """The plan as the few lines ``--dry-run`` prints."""
    sizes = ", ".join(f"{n:,} {split}" for split, n in p.sizes.items() if n)
    kwargs = ", ".join(f"{k}={v}" for k, v in p.model_kwargs.items())
    epochs = p.iterations / p.steps_per_epoch
    if p.drops:
        schedule = f"{p.first_lr:g}; {format_drops(p.drops, p.gamma, at='iteration ')}"
    elif p.plateau:
        schedule = f"{p.first_lr:g}, divided whenever the validation error plateaus"
    else:
        schedule = f"{p.first_lr:g} throughout"
    where = f"resumes at iteration {p.resume_at:,}" if p.resume_at is not None else "starts a new run"
    lines = [
        f"recipe:     {p.recipe or '(no description)'}",
        f"data:       {p.dataset}, {sizes}; input {'x'.join(map(str, p.input_size))}, {p.classes} classes",
        f"model:      {p.model}({kwargs}): {p.params:,} parameters, {p.macs / 1e6:,.1f}M multiply-adds per image",
        f"schedule:   {plural(p.iterations, 'iteration')} of batch {p.batch_size} = {epochs:.1f} epochs "
        f"({p.steps_per_epoch:,} iterations each)",
        f"lr:         {schedule}",
    ]
    if p.warmup:
        lines.append(f"warm-up:    {p.warmup}")
    lines.append(f"run dir:    {p.run_dir} ({where})")
    lines += [f"note:       {n}" for n in p.notes]
    lines.append("dry run: nothing was trained or written")
    return "\n".join(lines)
