"""ImageNet pipeline throughput: decode + augment per CPU core, and ResNet-50 training img/s, from one run.

1. Decode + augment: JPEGs of typical ImageNet size (500x375, quality 90, made from scikit-learn's real
   sample photos) through the training path of a DataLoader worker (Pillow decode, shorter side random in
   [256, 480], 224 crop, flip), in the main process: img/s per core. A node needs about (training img/s) /
   (this rate) cores to keep the GPU fed.
2. ResNet-50 training on synthetic 224x224 batches, eager fp32 NCHW (baseline) vs the fast path of the
   device (bf16 autocast + channels_last on CUDA; channels_last on CPU), as ratios; ``--compile`` adds
   torch.compile. ``--v15`` uses torchvision's stride placement (the usual benchmark model).

    PYTHONPATH=src python benchmarks/imagenet_pipeline.py [--batch 256 --iters 50]   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from resnet.data.folder_loader import TrainImages
from resnet.data.imagefolder import scan
from resnet.models import create_model
from resnet.train.step import train_one_step


def make_jpegs(root: Path, n: int) -> Path:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    folder = root / "train" / "photos"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = photos[i % len(photos)]
        top, left = int(rng.integers(0, 60)), int(rng.integers(0, 100))
        crop = Image.fromarray(img[top : top + 360, left : left + 530]).resize((500, 375))
        crop.save(folder / f"{i:04d}.jpg", quality=90)
    return root


def decode_rate(n: int) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker (torch sets one thread there)
    try:
        return _decode_rate(n)
    finally:
        torch.set_num_threads(threads)


def _decode_rate(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        index = scan(make_jpegs(Path(tmp), n) / "train", use_cache=False)
        ds = TrainImages(index, (256, 480), 224)
        for i in range(4):
            ds[(i, i)]  # warm the decoder
        start = time.perf_counter()
        for i in range(n):
            x, _ = ds[(i, 1000 + i)]
            assert x is not None and x.shape == (3, 224, 224)
        return n / (time.perf_counter() - start)


def train_rate(variant: str, device: torch.device, batch: int, iters: int, warmup: int, v15: bool) -> float:
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    fast = variant in ("fast", "compiled")
    model = create_model("resnet50", bottleneck_stride="3x3" if v15 else "1x1").to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if variant == "compiled" else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=cuda)
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    if fast:
        x = x.contiguous(memory_format=torch.channels_last)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.bfloat16) if (fast and cuda) else contextlib.nullcontext()

    for _ in range(warmup):
        train_one_step(net, opt, x, y, 0.1, autocast())
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        train_one_step(net, opt, x, y, 0.1, autocast())
    if cuda:
        torch.cuda.synchronize(device)
    return iters * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=64, help="JPEGs decoded for the per-core rate")
    p.add_argument("--batch", type=int, default=None, help="default 256 on GPU, 16 on CPU")
    p.add_argument("--iters", type=int, default=None, help="timed steps (default 50 GPU / 3 CPU)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--v15", action="store_true", help="stride on the 3x3 conv (torchvision's ResNet-50)")
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    batch = args.batch or (256 if cuda else 16)
    iters = args.iters or (50 if cuda else 3)
    warmup = 10 if cuda else 1
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")

    rate = decode_rate(args.images)
    print(f"decode + augment (500x375 JPEG -> 224 crop): {rate:,.1f} img/s on one core")

    variants = ["eager", "fast"] + (["compiled"] if args.compile else [])
    rows, base = [], None
    for v in variants:
        r = train_rate(v, device, batch, iters, warmup + (5 if v == "compiled" else 0), args.v15)
        base = base or r
        rows.append((v, r, r / base))
        print(f"  resnet50 {'v1.5' if args.v15 else 'v1'} {v:<9} {r:,.1f} img/s", flush=True)
    print()
    print(f"| ResNet-50 training, batch {batch} | img/s | vs eager fp32 | cores to feed it at {rate:.0f} img/s/core |")
    print("|---|---|---|---|")
    for v, r, ratio in rows:
        print(f"| {v} | {r:,.1f} | {ratio:.2f}x | {r / rate:.1f} |")


if __name__ == "__main__":
    main()
