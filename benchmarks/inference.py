"""Inference throughput of ResNet-18/50 at 224x224: our fast path vs eager fp32 vs onnxruntime, from one run.

Variants, all on the same weights (random, with randomised BN statistics so folding has work to do):

- ``eager``: the model in eval mode, fp32, NCHW: the baseline every ratio is taken against.
- ``folded``: BN folded into the convs (resnet.interop.inference), still NCHW: what folding alone buys.
- ``fast``: folded + channels_last (``optimize_for_inference``), the fast path ``resnet predict`` uses.
- ``compiled`` (``--compile``): fast + ``torch.compile`` (compilation time excluded, printed).
- ``onnxruntime`` (CPU): the model exported by ``resnet export`` (opset 18), run by onnxruntime's CPU
  provider with all graph optimisations, at the same thread count.
- On CUDA (``--device cuda``): ``fast-bf16`` (bf16 weights and activations) and, with ``--compile``,
  ``compiled-bf16`` (``max-autotune`` at large batch, ``reduce-overhead`` = CUDA graphs at batch 1).

Timing: each variant runs in turn for ``--rounds`` rounds (interleaved, so a slow spell on a shared machine
hits all of them), each for at least ``--seconds`` and ``--min-iters`` iterations. img/s = batch / median
time per batch; "vs eager" = that over eager's img/s from the same run; "best" = batch / fastest iteration
(what the machine does when nothing else runs on it).

    PYTHONPATH=src python benchmarks/inference.py --threads 2 --compile
    PYTHONPATH=src python benchmarks/inference.py --device cuda --batches 1 256 --compile

``--checkpoint RUN --data-dir CIFAR`` measures the engines of ``resnet predict/eval --backend/--precision``
instead (resnet.interop.backends) on a trained run's own weights, against onnxruntime fp32 at the same
threads: ``default`` (what ``--backend auto`` runs at fp32), ``torch-fp32``, ``torch-bf16`` (CPUs with
AVX512_BF16/AMX), ``onnxruntime-int8`` (static quantisation calibrated on 1024 training images), and with
``--compile`` ``torch-fp32-compiled`` / ``torch-bf16-compiled`` (``--compile`` of predict/eval), each with
its top-1 agreement with fp32 and its test error on the run's test split (real images):

    PYTHONPATH=src python benchmarks/inference.py --checkpoint runs/r20 --data-dir DATA --batches 128 --compile
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import torch

from resnet.errors import UserError
from resnet.interop.inference import optimize_for_inference
from resnet.models import build_network, model_info

Runner = Callable[[], object]


def randomized(name: str) -> torch.nn.Module:
    """The model with torchvision's layout (stride on the 3x3 of bottlenecks) and non-trivial BN statistics."""
    info = model_info(name)
    torch.manual_seed(0)
    model = build_network(name, **({"bottleneck_stride": "3x3"} if "bottleneck_stride" in info.kwargs else {}))
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def onnx_runner(model: torch.nn.Module, x: torch.Tensor, threads: int, folder: str) -> Runner:
    import onnxruntime as ort

    from resnet.interop.export import export_onnx
    from resnet.interop.inference import fold_batchnorm

    path = os.path.join(folder, "model.onnx")
    export_onnx(fold_batchnorm(model), path, x[:1], dynamic_batch=True, meta={})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def variants(
    name: str, batch: int, device: torch.device, args: argparse.Namespace, folder: str
) -> dict[str, tuple[Runner, int]]:
    """Variant name -> (one forward pass on the fixed batch, untimed warm-up iterations)."""
    model = randomized(name).to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    out: dict[str, tuple[Runner, int]] = {}
    folded = optimize_for_inference(model, channels_last=False)
    fast = optimize_for_inference(model)
    out["eager"] = (lambda: model(x), 2)
    out["folded"] = (lambda: folded(x), 2)
    out["fast"] = (lambda: fast(x), 2)
    cuda = device.type == "cuda"
    if cuda:
        fast16 = optimize_for_inference(model, dtype=torch.bfloat16)
        out["fast-bf16"] = (lambda: fast16(x), 10)
    if args.compile:
        if cuda:
            mode = "reduce-overhead" if batch == 1 else "max-autotune"
            compiled = optimize_for_inference(model, dtype=torch.bfloat16, compile=mode)
            out["compiled-bf16"] = (lambda: compiled(x), 30)
        else:
            compiled = optimize_for_inference(model, compile=True)
            out["compiled"] = (lambda: compiled(x), 3)
    if not cuda and not args.no_onnx:
        try:
            out["onnxruntime"] = (onnx_runner(model, x.cpu(), args.threads, folder), 2)
        except (ImportError, UserError):
            print("(onnxruntime / onnx / onnxscript not installed: no onnxruntime row)", file=sys.stderr)
    return out


def measure(runners: dict[str, tuple[Runner, int]], device: torch.device, args: argparse.Namespace) -> dict:
    """Per-iteration seconds of each runner: ``args.rounds`` interleaved rounds, each running every variant for
    at least ``args.seconds`` and ``args.min_iters`` iterations."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    with torch.inference_mode():
        for key, (run, warmup) in runners.items():
            start = time.perf_counter()
            for _ in range(warmup):
                run()
            sync(device)
            if "compiled" in key:
                print(f"({key}: {time.perf_counter() - start:.0f} s warm-up including compilation)", file=sys.stderr)
        for _ in range(args.rounds):
            for key, (run, _) in runners.items():
                round_start, n = time.perf_counter(), 0
                while n < args.min_iters or time.perf_counter() - round_start < args.seconds:
                    start = time.perf_counter()
                    run()
                    sync(device)
                    times[key].append(time.perf_counter() - start)
                    n += 1
    return times


def engine_runners(args: argparse.Namespace, batch: int) -> tuple[dict, dict]:
    """(variant -> (runner, warm-up), variant -> (test logits, labels)) for the engines of a trained run."""
    from resnet.checkpoint import load_checkpoint
    from resnet.data.datasets import load_dataset
    from resnet.interop import backends

    ckpt = load_checkpoint(args.checkpoint)
    cfg = ckpt.recipe(args.checkpoint)
    if args.data_dir:
        cfg.data.data_dir = args.data_dir
    data = load_dataset(cfg.data)
    norm = ckpt.normalizer()
    model = ckpt.build_model(args.checkpoint)
    c, h, w = ckpt.input_size
    calib = norm(torch.from_numpy(data.train_x[:1024]))
    engines = {
        "onnxruntime-fp32": backends.onnx_engine("fp32", model=model, input_size=(c, h, w), threads=args.threads),
        "default": backends.make_default_engine(model, (c, h, w), threads=args.threads),
        "torch-fp32": backends.torch_engine(model, "fp32", torch.device("cpu")),
    }
    cpu = torch.device("cpu")
    if args.compile:
        engines["torch-fp32-compiled"] = backends.torch_engine(model, "fp32", cpu, compile=True)
    if backends.cpu_has_bf16():
        engines["torch-bf16"] = backends.torch_engine(model, "bf16", cpu)
        if args.compile:
            engines["torch-bf16-compiled"] = backends.torch_engine(model, "bf16", cpu, compile=True)
    engines["onnxruntime-int8"] = backends.onnx_engine(
        "int8", model=model, input_size=(c, h, w), calibration=calib, threads=args.threads
    )
    test_x = norm(torch.from_numpy(data.test_x))
    x = test_x[:batch].contiguous()
    if len(x) < batch:
        x = x.repeat((batch + len(x) - 1) // len(x), 1, 1, 1)[:batch]
    runners = {k: ((lambda e=e: e(x)), 2) for k, e in engines.items()}
    with torch.inference_mode():
        scores = {
            k: (torch.cat([e(b) for b in test_x.split(256)]), torch.from_numpy(data.test_y)) for k, e in engines.items()
        }
    return runners, scores


def engines_main(args: argparse.Namespace) -> None:
    print(
        f"# torch {torch.__version__}, CPU, {args.threads} threads; {args.checkpoint}; {args.rounds} interleaved rounds"
    )
    print("| batch | engine | img/s (median) | vs onnxruntime fp32 | top-1 agreement with fp32 | test error | change |")
    print("|---|---|---|---|---|---|---|")
    for batch in args.batches:
        runners, scores = engine_runners(args, batch)
        times = measure(runners, torch.device("cpu"), args)
        base = batch / statistics.median(times["onnxruntime-fp32"])
        ref_logits, labels = scores["onnxruntime-fp32"]
        ref_err = 100.0 * float((ref_logits.argmax(1) != labels).float().mean())
        for key, t in times.items():
            rate = batch / statistics.median(t)
            logits = scores[key][0]
            agree = 100.0 * float((logits.argmax(1) == ref_logits.argmax(1)).float().mean())
            err = 100.0 * float((logits.argmax(1) != labels).float().mean())
            cells = [str(batch), key, f"{rate:,.1f}", f"{rate / base:.2f}x", f"{agree:.2f}% of {len(labels)}"]
            print("| " + " | ".join([*cells, f"{err:.2f}%", f"{err - ref_err:+.2f}"]) + " |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--batches", nargs="+", type=int, default=None, help="default 1 32 (CPU), 1 256 (CUDA)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for PyTorch and onnxruntime")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant")
    p.add_argument("--seconds", type=float, default=2.0, help="least time per variant and round")
    p.add_argument("--min-iters", type=int, default=3, help="least iterations per variant and round")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--no-onnx", action="store_true", help="skip onnxruntime")
    p.add_argument("--checkpoint", default=None, help="a trained run: measure the predict/eval engines on it")
    p.add_argument("--data-dir", default=None, help="its dataset (for --checkpoint)")
    args = p.parse_args()
    if args.checkpoint:
        torch.set_num_threads(args.threads)
        args.batches = args.batches or [1, 128]
        engines_main(args)
        return
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.batches = args.batches or ([1, 256] if cuda else [1, 32])
    torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} threads"
    print(f"# torch {torch.__version__}, {where}; {args.rounds} interleaved rounds of >= {args.seconds:g} s each")
    print("| model | batch | variant | img/s (median) | ms/batch (median) | vs eager | img/s (best) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            for batch in args.batches:
                runners = variants(name, batch, device, args, folder)
                times = measure(runners, device, args)
                base = batch / statistics.median(times["eager"])
                for key, t in times.items():
                    med = statistics.median(t)
                    rate = batch / med
                    cells = [name, str(batch), key, f"{rate:,.1f}", f"{1e3 * med:.1f}", f"{rate / base:.2f}x"]
                    print("| " + " | ".join([*cells, f"{batch / min(t):,.1f}"]) + " |", flush=True)


if __name__ == "__main__":
    main()
