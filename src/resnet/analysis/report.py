"""Report building blocks: what a run directory says about itself, tables in markdown and CSV, metadata.

Everything here reads run directories only (``config.yaml``, ``metrics.jsonl``, ``run.json``,
``summary.json``), so a report can be re-made at any time without training, including for a partially
finished experiment.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resnet.config import from_dict
from resnet.errors import UserError
from resnet.io import shown, write_output
from resnet.rundir_format import RunDir, read_invocations, read_metrics, read_run_config, summarize
from resnet.safe_json import read_json


@dataclass
class RunRecord:
    name: str
    root: Path
    status: str  # "finished" | "partial" (stopped before its target iteration: incomplete) | "missing" | "damaged"
    iteration: int = 0
    target: int | None = None  # schedule.iterations of the run
    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    invocations: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # damaged files, named (what was skipped and why)

    @property
    def done(self) -> bool:
        return self.status == "finished"

    def label(self) -> str:
        if self.status == "missing":
            return "not run"
        if self.status == "damaged":
            return f"damaged ({'; '.join(self.problems)})"
        if self.status == "partial":
            return f"incomplete ({self.iteration}/{self.target} it.)"
        return ""


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    """A JSON object file, or {} with a problem named when it is missing its object (torn, a list, ...)."""
    if not path.is_file():
        return {}
    try:
        data = read_json(path, max_bytes=1 << 20)  # summary.json: a few hundred bytes
    except UserError as e:
        problems.append(f"{path.name} unreadable ({str(e).rsplit('(', 1)[-1].split(')')[0]})")
        return {}
    except OSError as e:
        problems.append(f"{path.name} unreadable ({type(e).__name__})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name} holds a {type(data).__name__}, not an object")
        return {}
    return data


def _clean_summary(stored: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """summary.json's values of the types that train writes; a mistyped one is dropped and named."""

    def fits(key: str, v: Any) -> bool:
        if key.endswith("_error") or key == "train_seconds":
            return v is None or (type(v) in (int, float))
        if key.endswith("iterations") or key.endswith("_iteration") or key == "skipped_images":
            return v is None or type(v) is int
        if key == "data":
            return isinstance(v, dict) and all(type(v.get(k, 0)) is int for k in ("train", "val", "test"))
        return True

    bad = [k for k, v in stored.items() if not fits(k, v)]
    if bad:
        problems.append(f"summary.json: mistyped {', '.join(bad[:3])} ignored")
    return {k: v for k, v in stored.items() if k not in bad}


def read_run(name: str, root: Path) -> RunRecord:
    """The state of one run directory, from its files alone. A damaged file never stops a report: what
    cannot be read is left out and named in ``problems`` (and the run shown as damaged if it was its recipe)."""
    run = RunDir(root)
    if not run.config.is_file():
        return RunRecord(name, root, "missing")
    problems: list[str] = []
    try:
        config = read_run_config(root)
        cfg = from_dict(config) if isinstance(config, dict) else None
    except (OSError, ValueError, yaml.YAMLError) as e:  # UserError is a ValueError
        config, cfg = None, None
        reason = str(e).splitlines()[0].removeprefix(f"{shown(run.config)}: ") if str(e) else ""
        problems.append(f"config.yaml unreadable ({reason[:80] or type(e).__name__})")  # the path is the run's
    if cfg is None:
        if not problems:
            problems.append("config.yaml is empty or not a mapping")
        return RunRecord(name, root, "damaged", problems=problems)
    skipped: list[str] = []
    records = read_metrics(run.metrics, skipped) if run.metrics.is_file() else []
    if skipped:
        problems.append(f"metrics.jsonl: {len(skipped)} damaged line(s) skipped ({', '.join(skipped[:3])})")
    iteration = max((r.get("iteration", 0) for r in records), default=0)
    invocations = read_invocations(root)
    summary: dict[str, Any] = summarize(records, cfg.model.name, iteration)
    stored = _clean_summary(_read_json(run.summary, problems), problems)
    summary.update(stored)
    target = summary.get("target_iterations") or cfg.schedule.iterations
    done = isinstance(summary.get("iterations"), int) and isinstance(target, int) and summary["iterations"] >= target
    return RunRecord(
        name,
        root,
        "finished" if stored and done else "partial",
        iteration=iteration,
        target=target,
        records=records,
        summary=summary,
        invocations=invocations,
        config=config,
        problems=problems,
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(headers)
    w.writerows([["" if v is None else v for v in row] for row in rows])
    return write_output(path, buf.getvalue())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (0 for a single value), as the paper's "6.61±0.16 over 5 runs"."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def metadata(runs: Sequence[RunRecord]) -> str:
    """Commits, devices, versions and training time of the runs a report is made from."""
    invs = [i for r in runs for i in r.invocations]
    seconds = sum(float(r.summary.get("train_seconds") or 0.0) for r in runs)
    read = [r for r in runs if r.status != "missing"]  # what existed and was read, not what was planned
    unplanned = len(runs) - len(read)
    source = f"{len(read)} run director{'y' if len(read) == 1 else 'ies'}" + (
        f" ({unplanned} more planned, not run)" if unplanned else ""
    )

    def uniq(key: str) -> str:
        values = sorted({str(i.get(key)) for i in invs if i.get(key)})
        return ", ".join(values) if values else "-"

    return "\n".join(
        [
            f"- report generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {source}",
            f"- git commit(s): {uniq('git_commit')}",
            f"- device(s): {uniq('device')}",
            f"- torch: {uniq('torch')}; python: {uniq('python')}",
            f"- training time (sum over runs, inside the training loop): {seconds / 60:.1f} min",
        ]
    )


def training_set_note(runs: Sequence[RunRecord]) -> str:
    """Which images the runs trained on: all of the training set, or with a validation hold-out."""
    sizes = sorted(
        {
            (r.summary["data"]["train"], r.summary["data"].get("val", 0))
            for r in runs
            if isinstance(r.summary.get("data"), dict)
        }
    )
    if not sizes:
        return ""
    parts = [
        f"{t:,} training images, {v:,} held out for validation (`data.val_fraction`)"
        if v
        else f"all {t:,} training images, no validation split (section 4.2's protocol)"
        for t, v in sizes
    ]
    return "Trained on " + "; ".join(parts) + ".\n\n"


def has_validation(runs: Sequence[RunRecord]) -> bool:
    """Whether any run held out a validation split (otherwise "best validation" columns are left out)."""
    return any(r.summary.get("best_val_error") is not None for r in runs)


def _scope(runs: Sequence[RunRecord], full_iterations: int, full_train: int) -> tuple[list[int], list[str]]:
    """The shortened lengths, and how the runs' training sets differ from the paper's (one phrase each).

    The images a run trained on are ``data.train`` (after any validation hold-out, which is named beside
    them); an image folder's ``val`` is its test set, never training data."""
    from resnet.data.datasets import is_folder_dataset  # numpy: loaded when a report is made, not when listed

    short = sorted({r.target for r in runs if r.target and r.target < full_iterations})
    sizes = set()
    for r in runs:
        data = r.summary.get("data")
        if not isinstance(data, dict):
            continue
        train, val = int(data.get("train", 0)), int(data.get("val", 0))
        held_out = val if not is_folder_dataset(str(data.get("dataset"))) else 0
        if train + held_out < full_train:
            sizes.add((train, held_out))
    phrases = [f"{t:,} training images" + (f" (+{v:,} held out for validation)" if v else "") for t, v in sorted(sizes)]
    return short, phrases


def scope_caveat(runs: Sequence[RunRecord], full_iterations: int, full_train: int) -> str | None:
    """A plain statement when the runs are shortened or on a subset: they are then not a reproduction."""
    short, sizes = _scope(runs, full_iterations, full_train)
    notes = []
    if short:
        notes.append(
            f"shortened to {', '.join(f'{n:,}' for n in short)} iteration{'s' if short != [1] else ''} "
            f"(the paper: {full_iterations:,})"
        )
    if sizes:
        notes.append(f"trained on a subset: {'; '.join(sizes)} (the paper: {full_train:,})")
    if not notes:
        return None
    return (
        "> **Not a reproduction.** These runs were "
        + " and ".join(notes)
        + ". The numbers show the method at work on a smaller budget; they are not comparable to the paper's."
    )


def scope_note(runs: Sequence[RunRecord], full_iterations: int, full_train: int) -> str | None:
    """The caveat in one short line for a figure: "not a reproduction: 20 of 64,000 iterations, 5,085 ..."."""
    short, sizes = _scope(runs, full_iterations, full_train)
    parts = [f"{'/'.join(f'{n:,}' for n in short)} of {full_iterations:,} iterations"] if short else []
    parts += [f"{s} of {full_train:,}" for s in sizes]
    return f"Not a reproduction: {', '.join(parts)}" if parts else None


#: Keys that only mean something for image folders (section 3.4's pipeline).
FOLDER_ONLY = ("scale_min", "scale_max", "crop", "eval_resize", "lighting", "lighting_axes", "mean_samples",
               "workers", "strict_decode")  # fmt: skip


def applicable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The dotted keys of a run's config that apply to it: no image-folder keys on an array dataset, no
    warm-up thresholds without a warm-up, no plateau settings on a step schedule, and so on."""
    from resnet.data.datasets import is_folder_dataset, reader_keys  # numpy: loaded on use, not when listed

    cfg = from_dict(config)
    d, sc, tr = cfg.data, cfg.schedule, cfg.train
    skip = {"description"}
    if not is_folder_dataset(d.dataset):
        skip |= {f"data.{k}" for k in FOLDER_ONLY} | {"train.eval_limit", "model.bottleneck_stride"}
    used = reader_keys(d.dataset)  # what locates or sizes this dataset's data, from its description
    if used is not None:
        skip |= {f"data.{k}" for k in ("data_dir", "synthetic_size") if k not in used}
    if not d.augment:
        skip |= {"data.pad", "data.flip", "data.lighting", "data.lighting_axes"}
    if sc.warmup_lr is None:
        skip |= {"schedule.warmup_until_error", "schedule.warmup_window"}
    if sc.kind == "steps":
        skip |= {"schedule.plateau_patience", "schedule.plateau_min_delta"}
    else:
        skip |= {"schedule.milestones", "schedule.milestone_unit"}
    if sc.epochs is None:
        skip.add("schedule.epochs")
    if not tr.recompute_bn:
        skip.add("train.recompute_bn")
    skip |= {"train.sync_bn", "train.tensorboard"} if not (tr.sync_bn or tr.tensorboard) else set()
    flat = {f"{section}.{k}": v for section, keys in cfg.to_dict().items() if isinstance(keys, dict)
            for k, v in keys.items()}  # fmt: skip
    flat.update(_model_defaults(cfg.model.name, flat, skip))
    return {k: v for k, v in flat.items() if k not in skip}


def _model_defaults(name: str, flat: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    """``model.shortcut: None`` means the model's default: name it (A on CIFAR nets, B on ImageNet ones); a
    plain net has no shortcut at all, so the key is left out (it adds to ``skip``)."""
    from resnet.models.registry import model_info  # torch-free

    try:
        info = model_info(name)
    except ValueError:
        return {}
    if not info.residual:
        skip |= {"model.shortcut", "model.zero_init_residual"}
        return {}
    if flat.get("model.shortcut") is None and info.architecture is not None:
        return {"model.shortcut": info.architecture().shortcut}
    return {}


def applicable_nested(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`applicable_config` as sections of keys again (what ``train --print-config`` prints)."""
    nested: dict[str, Any] = {}
    for key, value in applicable_config(config).items():
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    return {**({"description": config["description"]} if config.get("description") else {}), **nested}
