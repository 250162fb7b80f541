"""Distributed training hygiene for ``torchrun``: environment detection, rank helpers, reductions.

``torchrun --nproc_per_node=N -m resnet train ...`` sets RANK, LOCAL_RANK and WORLD_SIZE; without them
everything here degrades to a single process. Only rank 0 logs, prints and writes files.
"""

from __future__ import annotations

import datetime
import os
import re

import torch
import torch.distributed as dist

from resnet.errors import UserError


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device) -> None:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU); a no-op otherwise."""
    if not launched_by_torchrun() or is_distributed():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))


#: The devices this project runs on (the paper's nets train on CUDA GPUs; the CPU for tests and small runs).
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d{1,4})?")


def local_device(requested: str) -> torch.device:
    """The device this process trains on: ``cuda:LOCAL_RANK`` under torchrun with CUDA, else ``requested``.

    Anything but auto, cpu, cuda and cuda:N, or a CUDA device this machine lacks, is a one-line ``UserError``.
    """
    if not isinstance(requested, str) or not DEVICE_PATTERN.fullmatch(requested):
        raise UserError(f"device {requested!r} is not supported; use auto, cpu, cuda or cuda:N")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {requested} was asked for but no CUDA device is available; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise UserError(f"device {device} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place) and return it; identity in a single process."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
