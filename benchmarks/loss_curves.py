"""Training-loss curves of several runs on one plot, e.g. fp32 vs bf16 seeds (the CPU bf16 fast path's check).

    # 2 seeds x {fp32, bf16}, 400 iterations of ResNet-20 on the CIFAR-10 subset, logging every 10
    for p in fp32 bf16; do for s in 0 1; do
      resnet train cifar10/resnet20 --data-dir DATA --out runs/curves/$p-s$s --iterations 400 --seed $s \\
        --set schedule.milestones=[300,350] --set train.precision=$p --set train.log_every=10
    done; done
    PYTHONPATH=src python benchmarks/loss_curves.py runs/curves/* --out docs/bf16_loss_curves.png

Prints, per run, the mean training loss over the last quarter of the logged iterations, and the spread
(max - min) between the runs of each group (the group is the run name before ``-s``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from resnet.analysis.plots import pyplot, save


def train_losses(run: Path) -> tuple[list[int], list[float]]:
    its, losses = [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("split") == "train" and "loss" in row:
            its.append(int(row["iteration"]))
            losses.append(float(row["loss"]))
    return its, losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    tails: dict[str, list[float]] = {}
    for run in sorted(args.runs):
        its, losses = train_losses(run)
        group = run.name.split("-s")[0]
        style = "-" if group == "fp32" else "--"
        ax.plot(its, losses, style, label=f"{run.name} ({len(its)} points)")
        tail = losses[len(losses) * 3 // 4 :] or losses
        tails.setdefault(group, []).append(sum(tail) / len(tail))
        print(
            f"{run.name}: last logged iteration {its[-1] if its else 0}, "
            f"mean loss over the last quarter {tails[group][-1]:.4f}"
        )
    for group, values in tails.items():
        print(
            f"{group}: last-quarter mean losses {', '.join(f'{v:.4f}' for v in values)} "
            f"(spread {max(values) - min(values):.4f})"
        )
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (running, per logging window)")
    ax.set_title("ResNet-20 on the CIFAR-10 subset: fp32 vs bf16 autocast, 2 seeds each")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
