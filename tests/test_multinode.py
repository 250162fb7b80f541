"""Several machines, proven on one: two ``torchrun`` launchers as two nodes (c10d rendezvous on 127.0.0.1, one
gloo process each) train a CIFAR net and an image-folder net into one run directory, bit-identical to one
node with the same number of ranks; with the run directory on node 0 alone, node 1 writes nothing and gets
what it needs (the resume state) through the process group.

What stays unproven without separate machines: another host's clock, filesystem and network (a node that
vanishes without closing its connections is bounded by the process group's timeout, not by a closed socket).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from launch import STANDALONE, finish, free_port, sets, torchrun, two_nodes
from resnet.checkpoint import load_checkpoint
from resnet.config import load_config
from resnet.data.sources import open_source
from resnet.eval.sources import evaluate_split
from resnet.rundir_format import read_metrics

from conftest import tiny_overrides
from folders import build_folder


def cifar_overrides(subset: Path) -> list[str]:
    return tiny_overrides(**{
        "data.dataset": "cifar10", "data.data_dir": str(subset), "data.pad": 4, "data.flip": True,
        "data.val_fraction": 0.0, "schedule.iterations": 6, "schedule.milestones": [4],
        "train.eval_every": 6, "train.checkpoint_every": 3, "train.eval_batch_size": 512,
    })  # fmt: skip


def folder_overrides(root: Path, iterations: int = 6) -> list[str]:
    return tiny_overrides(**{
        "data.dataset": "imagefolder", "data.data_dir": str(root), "data.val_fraction": 0.0,
        "data.scale_min": 36, "data.scale_max": 48, "data.crop": 32, "data.eval_resize": 36,
        "data.mean_samples": 50, "data.workers": 0, "data.flip": True, "schedule.iterations": iterations,
        "schedule.milestones": [4], "train.batch_size": 4, "train.eval_every": 3, "train.checkpoint_every": 3,
    })  # fmt: skip


def train_args(recipe: Path, out: str | Path, overrides: list[str]) -> list[str]:
    return [str(recipe), "--out", str(out), *sets(overrides)]


def same_weights(a: Path, b: Path) -> None:
    ca, cb = (torch.load(r / "checkpoint.pt", weights_only=True) for r in (a, b))
    assert ca["iteration"] == cb["iteration"]
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k


def timeless(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in read_metrics(run / "metrics.jsonl")]


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text("description: multi-node test\n")
    return path


def test_two_nodes_train_a_cifar_net_as_one_node_does(cifar_subset: Path, recipe: Path, tmp_path: Path):
    args = train_args(recipe, tmp_path / "nodes", cifar_overrides(cifar_subset))
    port = free_port()
    nodes = [torchrun(two_nodes(port, k), args) for k in (0, 1)]
    one = torchrun(STANDALONE, train_args(recipe, tmp_path / "one", cifar_overrides(cifar_subset)))
    for status, _, err in finish(*nodes, one):
        assert status == 0, err[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes", "one", "tiny.yaml"]  # one run directory each
    assert "x 2 ranks" in (tmp_path / "nodes" / "train.log").read_text()
    same_weights(tmp_path / "nodes", tmp_path / "one")
    assert timeless(tmp_path / "nodes") == timeless(tmp_path / "one")
    # The final test error, evaluated by both ranks on their share of the images, is one process's on the
    # same weights: all 1017 images, each counted once.
    final = [r for r in timeless(tmp_path / "nodes") if r.get("split") == "test"][-1]
    ckpt = load_checkpoint(tmp_path / "nodes" / "checkpoint.pt")
    cfg = load_config(None, cifar_overrides(cifar_subset))
    res = evaluate_split(open_source(cfg), "test", ckpt.build_model(), ckpt.normalizer(), cfg, torch.device("cpu"))
    assert final == {"iteration": 6, "split": "test", **res.as_record()} and res.n == 1017


@pytest.mark.slow  # three pairs of launchers: about 80 s on 2 busy cores
def test_two_nodes_with_the_run_directory_on_node_0_only(recipe: Path, tmp_path: Path):
    # Each node runs in its own folder with the same relative --out: node 1's never appears. The run is
    # trained in two invocations, so the second one's node 1 gets the resume state through the process group.
    data = build_folder(tmp_path / "images")
    node_dirs = [tmp_path / "node0", tmp_path / "node1"]
    for d in node_dirs:
        d.mkdir()
    for iterations in (3, 6):
        args = train_args(recipe, "run", folder_overrides(data, iterations))
        port = free_port()
        nodes = [torchrun(two_nodes(port, k), args, cwd=node_dirs[k]) for k in (0, 1)]
        for status, _, err in finish(*nodes):
            assert status == 0, err[-3000:]
        assert list(node_dirs[1].iterdir()) == []  # node 1 wrote nothing
    assert "resuming" in (node_dirs[0] / "run" / "train.log").read_text()
    one = torchrun(STANDALONE, train_args(recipe, tmp_path / "one", folder_overrides(data)))
    (status, _, err), = finish(one)  # fmt: skip
    assert status == 0, err[-3000:]
    same_weights(node_dirs[0] / "run", tmp_path / "one")
    # The split run also ended at 3, where the whole one evaluates and checkpoints: the same records, but its
    # end logs the training record before the evaluation rather than after it.
    assert sorted(map(str, timeless(node_dirs[0] / "run"))) == sorted(map(str, timeless(tmp_path / "one")))
