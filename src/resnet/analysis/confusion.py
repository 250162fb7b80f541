"""Confusion matrices of an evaluation (``resnet eval --confusion``): a CSV of counts and a PNG heat map.

Rows are true classes, columns predicted ones, so row i's off-diagonal cells say what class i's errors were
(the per-class errors of ``resnet eval`` are 100 - the diagonal share of each row). The PNG colours each
row by its share of that class's images, so classes of different sizes compare; counts are written into
the cells when there are few enough classes to read them (CIFAR-10, digits).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import torch

from resnet.analysis.plots import pyplot, save
from resnet.io import atomic_write_text

#: Above this many classes the cells are too small for numbers and class names (ImageNet's 1000).
ANNOTATE_MAX = 20


def write_confusion_csv(matrix: torch.Tensor, classes: Sequence[str], out: str | Path) -> Path:
    """One row per true class: its name, then the count predicted as each class (header: the class names)."""

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, matrix.tolist(), strict=True):
        writer.writerow([name, *row])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, buf.getvalue())
    return out


def plot_confusion(matrix: torch.Tensor, classes: Sequence[str], out: str | Path, *, title: str = "") -> Path:
    """The matrix as a heat map of row shares (%), with counts in the cells for up to ANNOTATE_MAX classes."""
    k = len(classes)
    counts = matrix.double()
    share = 100.0 * counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    plt = pyplot()
    size = min(12.0, max(5.0, 0.55 * k + 2.5)) if k <= ANNOTATE_MAX else 9.0
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of the true class")
    if k <= ANNOTATE_MAX:
        ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels=list(classes), fontsize=8)
        for i in range(k):
            for j in range(k):
                n = int(matrix[i, j])
                if n:
                    light = share[i, j] > 55
                    ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color="white" if light else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=10)
    return save(fig, out)
