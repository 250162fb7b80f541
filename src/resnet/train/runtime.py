"""How the math runs on a device: the fast path on CUDA (bf16 autocast, channels_last), fp32 NCHW on CPU.

``train.precision`` and ``train.channels_last`` choose explicitly; "auto" means the fast path on CUDA only
(bf16 keeps BN and the loss in fp32 under autocast; on CPU, fp32 keeps runs bit-reproducible and exact to
the paper's recipe).

The CPU fast path is opt-in: ``train.precision=bf16`` (with ``train.compile=default`` for the compiled
step) on CPUs that compute bf16 natively (AVX512_BF16 or AMX; oneDNN emulates it elsewhere, slower than
fp32, so a warning says so). There ``train.channels_last=auto`` follows :data:`CPU_BF16_CHANNELS_LAST`,
chosen by benchmarks/train_throughput.py (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from resnet.config import Config
from resnet.data.datasets import is_folder_dataset

#: channels_last under bf16 on CPU: measured with benchmarks/train_throughput.py --bf16 (docs/benchmarks.md).
CPU_BF16_CHANNELS_LAST = False


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX), which oneDNN needs to gain from it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: do not guess
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


@dataclass
class Runtime:
    """How the math runs on this device: the fast path on CUDA, fp32 NCHW eager on CPU by default."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    threads: str = ""  # "2 threads (auto: ...)": the intra-op threads and why, for the run's first log line

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


#: ``fit(threads=...)``: an int sets that many, "auto" applies :func:`choose_threads`, None leaves torch alone.
Threads = int | str | None


def choose_threads(
    requested: int | None = None, *, workers: int = 0, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Intra-op threads for one training process, and why: ``requested`` (``--threads``) if given, else
    ``OMP_NUM_THREADS`` if set, else the cores this process may use minus the 1-minute load average and the
    decode workers (at least 1).

    torch's own default is every physical core, which on busy shared cores oversubscribes them: a CIFAR
    ResNet-20 trained at 20 img/s with the default and at 119 img/s with one thread on two cores that five
    other jobs kept busy. On an idle machine the rule keeps every core.
    """
    env = dict(os.environ if env is None else env)
    if requested is not None:
        if requested < 1:
            from resnet.errors import UserError

            raise UserError(f"--threads must be a positive whole number, got {requested}")
        return requested, "requested"
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp), "OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    n = max(1, min(cores, int(cores - load - workers + 0.5)))
    return n, f"auto: {cores} cores, load {load:.1f}, {workers} decode workers; set with --threads or OMP_NUM_THREADS"


def apply_threads(threads: Threads, *, workers: int = 0) -> str:
    """Set torch's intra-op threads as ``threads`` asks (see :data:`Threads`); returns ``"N threads (why)"``."""
    if threads is None:
        n, why = torch.get_num_threads(), "this process's setting"
    else:
        n, why = choose_threads(None if threads == "auto" else int(threads), workers=workers)
        torch.set_num_threads(n)
    return f"{n} thread{'s' if n != 1 else ''} ({why})"


def resolve_runtime(cfg: Config, device: torch.device, threads: Threads = None) -> Runtime:
    cuda = device.type == "cuda"
    precision = cfg.train.precision if cfg.train.precision != "auto" else ("bf16" if cuda else "fp32")
    cpu_bf16 = device.type == "cpu" and precision == "bf16"
    if cpu_bf16 and not cpu_has_bf16():
        warnings.warn(
            "train.precision=bf16 on a CPU without AVX512_BF16/AMX: bf16 is emulated there and slower than fp32",
            stacklevel=2,
        )
    auto_layout = cuda or (cpu_bf16 and CPU_BF16_CHANNELS_LAST)
    channels_last = cfg.train.channels_last == "true" or (cfg.train.channels_last == "auto" and auto_layout)
    workers = cfg.data.workers if is_folder_dataset(cfg.data.dataset) else 0  # folders decode in workers
    chosen = apply_threads(threads, workers=workers)
    return Runtime(device, torch.bfloat16 if precision == "bf16" else None, channels_last, chosen)
