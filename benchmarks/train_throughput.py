"""Training throughput of the CIFAR ResNets at the paper's batch of 128, with ratios from one run.

Variants, all running the project's own ``train_one_step`` (SGD, momentum 0.9, wd 1e-4):

- ``baseline``: eager fp32, NCHW, a torch ``DataLoader`` doing the augmentation per sample in Python (the
  usual shape of CIFAR reproductions; the "naive eager baseline").
- ``resident``: eager fp32, NCHW, our device-resident loader (batched pad/crop/flip on the device).
- ``fast``: the resident loader plus the fast path of the device: bf16 autocast + channels_last on CUDA,
  channels_last on CPU.
- ``compiled`` (with ``--compile``): ``fast`` plus ``torch.compile`` (compile time excluded, reported).
- ``bf16`` and ``bf16-compiled`` (``--bf16``, CPUs with AVX512_BF16/AMX): the CPU training fast path that
  ``train.precision=bf16`` (+ ``train.compile=default``) selects: the resident loader, bf16 autocast
  (BN, loss and the SGD update stay fp32), channels_last where ``resolve_runtime`` chooses it.

Prints img/s, the ratio to ``baseline`` measured in the same run, and the projected wall time of the full
64k-iteration schedule (64,000 x 128 images). ``--full-run DATA_DIR`` also times a real ``resnet train`` of
ResNet-20 over the full schedule (meant for a GPU).

    PYTHONPATH=src python benchmarks/train_throughput.py --models resnet20 resnet56 resnet110
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from resnet.data.datasets import synthetic_arrays
from resnet.data.loader import DeviceLoader
from resnet.data.preprocess import Normalizer
from resnet.models import build_network
from resnet.train.step import train_one_step

SCHEDULE_IMAGES = 64_000 * 128


class PerSampleCifar(torch.utils.data.Dataset):
    """The conventional pipeline: one image at a time, pad 4, random crop, random flip, in Python."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, norm: Normalizer) -> None:
        self.images, self.labels, self.norm = images, labels, norm

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(self.images[i : i + 1])[0]
        x = F.pad(x, (4, 4, 4, 4))
        oy, ox = torch.randint(0, 9, (2,)).tolist()
        x = x[:, oy : oy + 32, ox : ox + 32]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.labels[i]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step, batches, device: torch.device, warmup: int, iters: int) -> float:
    """img/s over ``iters`` steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step(*next(batches))
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step(*next(batches))
    sync(device)
    return iters * 128 / (time.perf_counter() - start)


def run_variant(name: str, model_name: str, device: torch.device, args: argparse.Namespace, data) -> float:
    images, labels, norm = data
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    bf16 = name.startswith("bf16")
    fast = name in ("fast", "compiled") or (bf16 and cpu_bf16_channels_last())
    compiled = name.endswith("compiled")
    model = build_network(model_name).to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=cuda)
    if bf16 or (fast and cuda):
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        autocast = contextlib.nullcontext

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if fast:
            x = x.contiguous(memory_format=torch.channels_last)
        train_one_step(net, opt, x.to(device, non_blocking=True), y.to(device, non_blocking=True), 0.1, autocast())

    if name == "baseline":
        ds = PerSampleCifar(images, labels, norm)
        dl = torch.utils.data.DataLoader(
            ds, batch_size=128, shuffle=True, drop_last=True, num_workers=args.workers, pin_memory=cuda
        )

        def endless():
            while True:
                yield from dl

        batches = endless()
    else:
        loader = DeviceLoader(images.to(device), labels.to(device), 128, norm, seed=0)
        batches = iter(lambda: loader.next(), None)
    warmup = args.warmup + (20 if compiled else 0)
    t0 = time.perf_counter()
    rate = measure(step, batches, device, warmup, args.iters)
    if compiled:
        print(f"  ({model_name} compiled: {time.perf_counter() - t0:.0f} s including compilation)")
    return rate


def cpu_bf16_channels_last() -> bool:
    from resnet.train.runtime import CPU_BF16_CHANNELS_LAST

    return CPU_BF16_CHANNELS_LAST


def full_run(data_dir: str, device: torch.device) -> None:
    """Time a real `resnet train` of the full ResNet-20 schedule, end to end."""
    from resnet.config import load_config
    from resnet.train.loop import fit

    cfg = load_config("cifar10/resnet20", [f"data.data_dir={data_dir}", f"train.device={device}"])
    start = time.perf_counter()
    summary = fit(cfg, "runs/bench-full-resnet20", progress=False)
    print(
        f"full 64k-iteration ResNet-20 run: {time.perf_counter() - start:.1f} s wall, "
        f"{summary['train_seconds']:.1f} s in the loop; test error {summary['test_error']:.2f}%"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet56", "resnet110"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--iters", type=int, default=None, help="timed steps per variant (default 200 GPU / 10 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 30 GPU / 2 CPU)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers for the baseline")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--bf16", action="store_true", help="also the CPU bf16 fast path (AVX512_BF16/AMX CPUs)")
    p.add_argument("--variants", nargs="+", default=None, help="only these variants (ratios vs the first)")
    p.add_argument("--full-run", metavar="DATA_DIR", default=None, help="also time a full ResNet-20 schedule")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.iters = args.iters or (200 if cuda else 10)
    args.warmup = args.warmup if args.warmup is not None else (30 if cuda else 2)
    args.workers = args.workers if args.workers is not None else (4 if cuda else 0)
    if cuda:
        torch.backends.cudnn.benchmark = True
    x, y, *_ = synthetic_arrays(5_120)
    images, labels = torch.from_numpy(x), torch.from_numpy(y)
    data = (images, labels, Normalizer.fit("pixel_mean", x))
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; batch 128; {args.iters} timed steps per variant")
    variants = ["baseline", "resident", "fast"] + (["compiled"] if args.compile else [])
    if args.bf16:
        variants += ["bf16", "bf16-compiled"]
    variants = args.variants or variants
    rows = []
    for model_name in args.models:
        base = None
        for v in variants:
            rate = run_variant(v, model_name, device, args, data)
            base = base or rate
            rows.append((model_name, v, rate, rate / base, SCHEDULE_IMAGES / rate))
            print(f"  {model_name:<10} {v:<9} {rate:>9,.0f} img/s", flush=True)
    print()
    print("| model | variant | img/s | vs baseline | projected 64k iterations |")
    print("|---|---|---|---|---|")
    for m, v, rate, ratio, secs in rows:
        span = f"{secs / 3600:.1f} h" if secs >= 3600 else f"{secs:.0f} s"
        print(f"| {m} | {v} | {rate:,.0f} | {ratio:.2f}x | {span} |")
    if args.full_run:
        full_run(args.full_run, device)


if __name__ == "__main__":
    main()
