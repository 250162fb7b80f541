"""Evaluation split over ranks counts every test image exactly once (no padded last shard) and equals one
process's result bit for bit, for the CIFAR single view and the folder protocols centre, 10-crop and
multi-scale. Two gloo processes, spawned here; uneven shards on purpose (the last batch is short, and one
rank gets fewer batches than the other)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from launch import free_port
from resnet.config import load_config
from resnet.data.sources import open_source
from resnet.eval.arrays import evaluate
from resnet.eval.folders import evaluate_folder
from resnet.models import build_network

from conftest import tiny_overrides
from folders import build_folder

PROTOCOLS = ("center", "10crop", "multiscale")


def folder_cfg(root: Path):
    return load_config(None, tiny_overrides(**{
        "data.dataset": "imagefolder", "data.data_dir": str(root), "data.val_fraction": 0.0, "data.crop": 32,
        "data.eval_resize": 36, "data.mean_samples": 20, "data.workers": 0,
    }))  # fmt: skip


def results(folder: Path) -> dict[str, tuple]:
    """Every protocol's folder result and the digits test result, in this process (sharded under a group)."""
    shard = dist.is_initialized()
    out = {}
    cfg = folder_cfg(folder)
    source = open_source(cfg)
    normalizer, _ = source.preprocessing(cfg)
    torch.manual_seed(0)
    model = build_network("resnet8", num_classes=2, in_channels=3)
    for protocol in PROTOCOLS:
        r = evaluate_folder(model, source.val, normalizer, protocol=protocol, device=torch.device("cpu"),
                            workers=0, batch_images=4, resize=36, size=32, scales=(32, 40), shard=shard)  # fmt: skip
        out[protocol] = (r.n, r.loss, r.error, r.top5_error, r.per_class, r.predictions.tolist(), r.labels.tolist())
    digits = load_config(None, tiny_overrides())
    src = open_source(digits)
    norm, _ = src.preprocessing(digits)
    torch.manual_seed(1)
    net = build_network("resnet8", num_classes=10, in_channels=1)
    x, y = src.device_split("test", torch.device("cpu"))
    r = evaluate(net, x, y, norm, batch_size=100, num_classes=10, shard=shard)  # 360 images: 100+100+100+60
    out["digits"] = (r.n, r.loss, r.error, r.top5_error, r.per_class, r.predictions.tolist(), r.labels.tolist())
    return out


def _rank(rank: int, world: int, port: int, folder: Path, out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        (out / f"rank{rank}.pkl").write_bytes(pickle.dumps(results(folder)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # about 40 s on 2 busy cores; tests/test_multinode.py holds sharded CIFAR evaluation in CI
def test_sharded_evaluation_equals_one_process_for_every_protocol(tmp_path: Path):
    folder = build_folder(tmp_path / "images", per_class=4, val_per_class=3)  # 6 val images: batches 4 + 2
    alone = results(folder)
    assert alone["digits"][0] == 360 and alone["center"][0] == 6
    mp.spawn(_rank, args=(2, free_port(), folder, tmp_path), nprocs=2, join=True)
    for rank in (0, 1):
        sharded = pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes())
        for name, expected in alone.items():
            assert sharded[name] == pytest.approx(expected, nan_ok=True), (rank, name)
            assert sharded[name][1] == expected[1], (rank, name, "loss must be bit-identical")


def test_an_image_evaluated_twice_or_never_is_an_error():
    from resnet.eval.shards import merge

    with pytest.raises(RuntimeError, match="saw 1 image\\(s\\) never and 1 more than once"):
        merge({}, torch.tensor([1, 0, 2]))
