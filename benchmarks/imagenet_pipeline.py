"""ImageNet pipeline throughput: decode + augment per CPU core, and ResNet-50 training img/s, from one run.

1. Decode + augment: JPEGs of typical ImageNet size (500x375, quality 90, made from scikit-learn's real
   sample photos) through the training path of a DataLoader worker (Pillow decode, shorter side random in
   [256, 480], 224 crop, flip), in the main process: img/s per core, for the reference path (full decode,
   float resize of the whole image, then crop: ``TrainImages.reference_item``) and the fast path the
   workers run (the kept window resized on 8-bit pixels, ``resnet.data.fast_augment``), measured
   interleaved in the same run, with their largest pixel difference. ``--large`` adds 2000x1500 photos,
   where the fast path also decodes the JPEG reduced (``draft``). A node needs about (training img/s) /
   (the fast rate) cores to keep the GPU fed.
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
from resnet.models import build_network
from resnet.train.step import train_one_step


def make_jpegs(root: Path, n: int, size: tuple[int, int] = (500, 375)) -> Path:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    folder = root / "train" / "photos"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = photos[i % len(photos)]
        top, left = int(rng.integers(0, 60)), int(rng.integers(0, 100))
        crop = Image.fromarray(img[top : top + 360, left : left + 530]).resize(size, Image.BICUBIC)
        crop.save(folder / f"{i:04d}.jpg", quality=90)
    return root


def decode_rates(n: int, size: tuple[int, int] = (500, 375), rounds: int = 5) -> tuple[float, float, int]:
    """(reference img/s, fast img/s, largest |fast - reference| in grey levels) on one core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker (torch sets one thread there)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ds = TrainImages(scan(make_jpegs(Path(tmp), n, size) / "train", use_cache=False), (256, 480), 224)
            worst = 0
            for i in range(n):  # also warms the decoder and the file cache for both paths
                a, b = ds[(i, 1000 + i)][0], ds.reference_item((i, 1000 + i))[0]
                assert a is not None and b is not None and a.shape == b.shape == (3, 224, 224)
                worst = max(worst, int((a.int() - b.int()).abs().max()))
            seconds = {"reference": 0.0, "fast": 0.0}
            for _ in range(rounds):  # interleaved, so a change in the machine's load hits both alike
                for name, get in (("reference", ds.reference_item), ("fast", ds.__getitem__)):
                    start = time.perf_counter()
                    for i in range(n):
                        get((i, 2000 + i))
                    seconds[name] += time.perf_counter() - start
            return rounds * n / seconds["reference"], rounds * n / seconds["fast"], worst
    finally:
        torch.set_num_threads(threads)


def train_rate(variant: str, device: torch.device, batch: int, iters: int, warmup: int, v15: bool) -> float:
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    fast = variant in ("fast", "compiled")
    model = build_network("resnet50", bottleneck_stride="3x3" if v15 else "1x1").to(device)
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
    p.add_argument("--large", action="store_true", help="also 2000x1500 JPEGs (the reduced-decode path)")
    p.add_argument("--decode-only", action="store_true", help="skip the ResNet-50 training part")
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

    sizes = [(500, 375)] + ([(2000, 1500)] if args.large else [])
    rate = 0.0
    for k, size in enumerate(sizes):
        ref, fast, worst = decode_rates(args.images if k == 0 else max(8, args.images // 4), size)
        if k == 0:
            rate = fast  # what the workers run on typical ImageNet JPEGs
        print(
            f"decode + augment ({size[0]}x{size[1]} JPEG -> 224 crop), one core: reference {ref:,.1f} img/s, "
            f"fast {fast:,.1f} img/s ({fast / ref:.2f}x), largest difference {worst} grey level(s)",
            flush=True,
        )
    if args.decode_only:
        return

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
