"""The GPU half of the project in one command: the gpu tests, then every GPU benchmark beside its baseline.

    PYTHONPATH=src python benchmarks/gpu_check.py               # on a CUDA machine; about 7 minutes
    PYTHONPATH=src python benchmarks/gpu_check.py --cpu-smoke   # tiny sizes on the CPU: exercises the code

Steps, each with a time budget (the whole run stays under 9 minutes; a step that would overrun is skipped
and says so):

1. ``pytest -m gpu tests/test_gpu.py`` (through ``benchmarks/minitest.py`` where pytest is not installed):
   CUDA vs CPU numerics, bf16 training, resume, graph replay, compile modes, torchrun with NCCL, several
   seeds on CUDA.
2. CIFAR ResNet-20/56/110 at batch 128 on the device-resident loader with bf16 autocast + channels_last:
   the eager step (``train_one_step``, the baseline) against the captured step (``train.cuda_graph=true``),
   as iterations/s and the projected time of the paper's 64k iterations (goals: ResNet-20 <= 45 s,
   ResNet-110 <= 3 min). Both loops do what ``fit`` does between log points (a loss window flushed every
   100 iterations).
3. Five seeds of ResNet-110 as one step (``resnet.train.multiseed``) against five sequential runs (goal:
   five seeds <= 2x one run).
4. ResNet-50 v1.5 training on synthetic 224x224 batches of 256, bf16 autocast + channels_last (goal >= 5,000
   img/s), and inference at batch 256 in bf16 (goal >= 13,500 img/s); torchvision's and timm's ResNet-50 in
   the same loop where they are importable.

Prints one table at the end (Markdown, ready for docs/benchmarks.md) and writes it with the raw numbers to
``--out`` (JSON). Only torch, numpy and pyyaml are needed (torchvision and timm are optional).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from resnet.config import load_config
from resnet.data.loader import DeviceLoader
from resnet.data.preprocess import Normalizer
from resnet.interop.inference import optimize_for_inference
from resnet.models import build_network
from resnet.train.graphed import GraphedStep
from resnet.train.meters import LossWindow
from resnet.train.multiseed import MultiSeedTrainer
from resnet.train.runtime import Runtime
from resnet.train.schedule import LRSchedule
from resnet.train.step import train_one_step

ROOT = Path(__file__).resolve().parents[1]
PAPER_ITERATIONS = 64_000
GOAL_SECONDS = {"resnet20": 45.0, "resnet110": 180.0}


@dataclass
class Row:
    what: str
    variant: str
    value: float | None
    unit: str
    vs_baseline: str = ""
    goal: str = ""
    note: str = ""


@dataclass
class Sizes:
    """What one check measures: the real sizes on a GPU, tiny ones for --cpu-smoke."""

    cifar_models: list[str] = field(default_factory=lambda: ["resnet20", "resnet56", "resnet110"])
    cifar_images: int = 50_000
    cifar_batch: int = 128
    seeds_model: str = "resnet110"
    seeds: int = 5
    r50_batch: int = 256
    r50_size: int = 224
    seconds: float = 8.0  # timed seconds per variant
    warmup: int = 20  # untimed iterations per variant (the captured step needs 3 + capture)
    log_every: int = 100


SMOKE = Sizes(["resnet8"], 256, 16, "resnet8", 2, 2, 32, 0.3, 4, 3)


class Clock:
    """The whole check's time budget."""

    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.perf_counter(), budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(step: Callable[[], object], device: torch.device, warmup: int, seconds: float) -> float:
    """Calls per second of ``step`` over at least ``seconds`` (and 3 calls), after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    sync(device)
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        step()
        n += 1
        if n % 10 == 0:
            sync(device)
    sync(device)
    return n / (time.perf_counter() - start)


def runtime(device: torch.device) -> Runtime:
    """The project's fast path: bf16 autocast + channels_last on CUDA; fp32 NCHW on the CPU."""
    cuda = device.type == "cuda"
    return Runtime(device, torch.bfloat16 if cuda else None, cuda)


def cifar_data(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Normalizer]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return images.to(device), labels.to(device), Normalizer.fit("pixel_mean", images.numpy())


def recipe(name: str, *sets: str):
    """The paper's CIFAR recipe of ``name`` (the smoke test's ResNet-8 has none: the defaults), in its steady
    state: without ResNet-110's warm-up, which covers about 400 of 64k iterations (and never ends on the
    random labels here)."""
    known = name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202")
    return load_config(f"cifar10/{name}" if known else None, [f"model.name={name}", "schedule.warmup_lr=null", *sets])


def sgd(model: torch.nn.Module, device: torch.device) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=device.type == "cuda")


def cifar_step(name: str, graph: bool, data, sizes: Sizes, rt: Runtime) -> Callable[[], None]:
    """One iteration of ``fit``'s loop (eager or captured), with its loss window flushed every log_every."""
    images, labels, norm = data
    dev = rt.device
    torch.manual_seed(0)
    model = build_network(name).to(dev)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, b = sgd(model, dev), sizes.cifar_batch
    loader = DeviceLoader(images, labels, b, norm, seed=0)
    window = LossWindow(sizes.log_every, dev, b, 1)
    schedule = LRSchedule(recipe(name).schedule, 0.1, dev, loader.steps_per_epoch)
    state = {"it": 0}
    graphed = GraphedStep(model, opt, schedule, loader, rt, window, capture=dev.type == "cuda") if graph else None

    def step() -> None:
        if graphed is not None:
            graphed.run(state["it"])
            window.filled += 1
        else:
            x, y = loader.next()
            x = x.contiguous(memory_format=torch.channels_last) if rt.channels_last else x.contiguous()
            window.add(*train_one_step(model, opt, x, y, schedule.lr(state["it"]), rt.autocast()))
        state["it"] += 1
        if window.filled == sizes.log_every:
            window.record(state["it"], 0.1)  # the host read of a log point

    return step


def bench_cifar(sizes: Sizes, device: torch.device, clock: Clock) -> tuple[list[Row], dict[str, float]]:
    rows, rates, rt = [], {}, runtime(device)
    data = cifar_data(sizes.cifar_images, device)
    for name in sizes.cifar_models:
        base = None
        for graph in (False, True):
            captured = "captured step (CUDA graph)" if device.type == "cuda" else "capturable step (uncaptured)"
            variant = captured if graph else "eager step (baseline)"
            if clock.left() < 4 * sizes.seconds:
                rows.append(
                    Row(f"CIFAR {name}, batch {sizes.cifar_batch}", variant, None, "it/s", note="skipped: time")
                )
                continue
            its = rate(cifar_step(name, graph, data, sizes, rt), device, sizes.warmup, sizes.seconds)
            rates[f"{name}/{'graph' if graph else 'eager'}"] = its
            base = base or its
            projected = PAPER_ITERATIONS / its
            goal = GOAL_SECONDS.get(name)
            note = f"64k iterations: {projected:,.0f} s" + (" (met)" if goal and projected <= goal else "")
            rows.append(Row(f"CIFAR {name}, batch {sizes.cifar_batch}", variant, its, "it/s", f"{its / base:.2f}x",
                            f"64k in <= {goal:.0f} s" if goal else "", note))  # fmt: skip
    return rows, rates


def bench_seeds(sizes: Sizes, device: torch.device, clock: Clock, rates: dict[str, float]) -> list[Row]:
    name, k = sizes.seeds_model, sizes.seeds
    what = f"{k} seeds of {name} as one step"
    if clock.left() < 4 * sizes.seconds:
        return [Row(what, "batched", None, "it/s", note="skipped: time")]
    rt = runtime(device)
    images, labels, norm = cifar_data(sizes.cifar_images, device)
    cfg = recipe(name, f"train.batch_size={sizes.cifar_batch}")
    multi = MultiSeedTrainer(cfg, list(range(k)), images, labels, norm, rt, 10)
    its = rate(multi.step, device, max(2, sizes.warmup // 4), sizes.seconds)
    rows = [Row(what, "batched (all seeds per step)", its, "it/s", "", "<= 2x one run",
                f"64k iterations: {PAPER_ITERATIONS / its:,.0f} s")]  # fmt: skip
    for single in ("eager", "graph"):
        one = rates.get(f"{name}/{single}")
        if one:
            ratio = one / its  # time of the K-seed step in units of one run's step
            rows.append(Row(what, f"vs {k} sequential {single} runs", k * PAPER_ITERATIONS / one, "s per 64k x k",
                            f"{k / ratio:.2f}x faster", "", f"batched costs {ratio:.2f}x one {single} run"
                            + (" (met)" if ratio <= 2 else "")))  # fmt: skip
    return rows


def resnet50_variants(device: torch.device) -> dict[str, Callable[[], torch.nn.Module]]:
    variants: dict[str, Callable[[], torch.nn.Module]] = {
        "ours (resnet50, v1.5)": lambda: build_network("resnet50", bottleneck_stride="3x3")
    }
    try:
        import torchvision

        variants["torchvision resnet50"] = lambda: torchvision.models.resnet50()
    except ImportError:
        pass
    try:
        import timm

        variants["timm resnet50"] = lambda: timm.create_model("resnet50", pretrained=False)
    except ImportError:
        pass
    return variants


def bench_resnet50(sizes: Sizes, device: torch.device, clock: Clock) -> list[Row]:
    """Training (bf16 autocast, channels_last) and inference (bf16 weights) img/s; the first model is the baseline."""
    rows, rt, b, s = [], runtime(device), sizes.r50_batch, sizes.r50_size
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    x = torch.randn(b, 3, s, s, device=device)
    y = torch.randint(0, 1000, (b,), device=device)
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    train_what = f"ResNet-50 training, batch {b}, {'bf16 autocast' if rt.autocast_dtype else 'fp32'}"
    infer_what = f"ResNet-50 inference, batch {b}, {str(dtype).replace('torch.', '')}"
    base: dict[str, float] = {}

    def add(what: str, label: str, value: float, goal: float) -> None:
        first = base.setdefault(what, value)
        rows.append(Row(what, label, value, "img/s", f"{value / first:.2f}x", f">= {goal:,.0f} img/s",
                        "(met)" if value >= goal else ""))  # fmt: skip

    warm = max(2, sizes.warmup // 4)
    for label, make in resnet50_variants(device).items():
        if clock.left() < 5 * sizes.seconds:
            rows.append(Row(train_what, label, None, "img/s", note="skipped: time"))
            continue
        torch.manual_seed(0)
        model = make().to(device)
        if rt.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = sgd(model, device)
        model.train()
        train = rate(lambda m=model, o=opt: train_one_step(m, o, x, y, 0.1, rt.autocast()), device, warm, sizes.seconds)
        add(train_what, label, train * b, 5000)
        nets = {f"{label}, eager": model.eval().to(dtype=dtype)}
        if label.startswith("ours"):  # the project's inference path: BN folded, bf16 weights, NHWC
            nets[f"{label}, optimize_for_inference"] = optimize_for_inference(
                model, dtype=dtype, channels_last=rt.channels_last
            )
        xi = x.to(dtype)
        for name, net in nets.items():
            with torch.inference_mode():
                add(infer_what, name, rate(lambda n=net, v=xi: n(v), device, warm, sizes.seconds) * b, 13500)
        del model, opt, nets
    return rows


def run_gpu_tests(timeout: float) -> Row:
    subset = Path(os.environ.get("RESNET_CIFAR_SUBSET", ROOT.parent / "shared/data/cifar10-subset/cifar-10-batches-py"))
    missing = (
        "" if (subset / "test_batch").is_file() else "; CIFAR subset not found (RESNET_CIFAR_SUBSET): its tests skip"
    )
    if missing:
        print(f"warning: no CIFAR-10 subset at {subset}; set RESNET_CIFAR_SUBSET, or the tests on real data skip")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if importlib.util.find_spec("pytest") is not None:
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"]
    else:  # the GPU machine may have torch but no pytest: benchmarks/minitest.py runs the same file
        cmd = [sys.executable, str(ROOT / "benchmarks" / "minitest.py"), "tests/test_gpu.py"]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Row("gpu tests (pytest -m gpu)", "tests/test_gpu.py", None, "", note=f"timed out after {timeout:.0f} s")
    tail = (done.stdout.strip().splitlines() or ["no output"])[-1]
    if done.returncode != 0:
        print(done.stdout[-6000:], done.stderr[-3000:], sep="\n")
    return Row("gpu tests (pytest -m gpu)", "tests/test_gpu.py", None, "", note=tail.strip("= ") + missing)


def table(rows: list[Row]) -> str:
    lines = ["| measurement | variant | value | vs baseline | goal | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        value = "" if r.value is None else f"{r.value:,.1f} {r.unit}"
        lines.append(f"| {r.what} | {r.variant} | {value} | {r.vs_baseline} | {r.goal} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--cpu-smoke", action="store_true", help="tiny sizes on the CPU (tests the script, measures nothing)"
    )
    p.add_argument("--skip-tests", action="store_true", help="benchmarks only")
    p.add_argument("--budget", type=float, default=520.0, help="seconds for the whole check (default 520)")
    p.add_argument("--tests-timeout", type=float, default=300.0, help="seconds for the gpu tests (default 300)")
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="where to write the results")
    args = p.parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; this check measures a GPU (use --cpu-smoke to exercise it on the CPU)")
        return 1
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    sizes = SMOKE if args.cpu_smoke else Sizes()
    clock = Clock(args.budget)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as fit does
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"gpu_check on {name}, torch {torch.__version__}{' (CPU smoke: no figures)' if args.cpu_smoke else ''}")
    rows: list[Row] = []
    if not args.skip_tests:
        print("gpu tests ...", flush=True)
        rows.append(run_gpu_tests(min(args.tests_timeout, max(30.0, clock.left() - 200))))
    print("CIFAR steps ...", flush=True)
    cifar_rows, rates = bench_cifar(sizes, device, clock)
    rows += cifar_rows
    print("several seeds ...", flush=True)
    rows += bench_seeds(sizes, device, clock, rates)
    print("ResNet-50 ...", flush=True)
    rows += bench_resnet50(sizes, device, clock)
    text = table(rows)
    elapsed = args.budget - clock.left()
    print(f"\n{name}, torch {torch.__version__}, {elapsed:.0f} s\n\n{text}")
    record = {"device": name, "torch": torch.__version__, "seconds": elapsed, "smoke": args.cpu_smoke,
              "rows": [asdict(r) for r in rows], "table": text}  # fmt: skip
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    tests = rows[0] if rows and rows[0].what.startswith("gpu tests") else None
    return (
        1 if tests is not None and ("failed" in tests.note or "error" in tests.note or "timed out" in tests.note) else 0
    )


if __name__ == "__main__":
    sys.exit(main())
