"""Distributed training hygiene for ``torchrun``: environment detection, rank helpers, reductions.

``torchrun --nproc_per_node=N -m resnet train ...`` sets RANK, LOCAL_RANK and WORLD_SIZE; without them
everything here degrades to a single process. Only rank 0 logs, prints and writes files.
"""

from __future__ import annotations

import datetime
import gc
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

from resnet.errors import UserError

T = TypeVar("T")


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


class RankError(UserError):
    """A ``UserError`` every rank raises together because one of them hit it (the message names that rank).

    Every rank ends; the command line prints it once per node (on local rank 0), not once per process.
    """


#: Seconds a rank waits for the others, in the rendezvous and in any collective, before it gives up with one
#: line (``RESNET_DIST_TIMEOUT``). Long enough for rank 0 to write a ResNet-152 checkpoint on a slow disk while
#: the others wait at the barrier behind it; a dead peer usually shows much sooner (its connection closes).
DEFAULT_TIMEOUT_S = 1800


def timeout_seconds() -> float:
    """The process group's timeout: ``RESNET_DIST_TIMEOUT`` seconds (a positive number), else 30 minutes."""
    text = os.environ.get("RESNET_DIST_TIMEOUT", "").strip()
    if not text:
        return float(DEFAULT_TIMEOUT_S)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 7 * 24 * 3600:  # the same setting on every rank of a node: one line per node
        raise RankError(f"RESNET_DIST_TIMEOUT is {text!r}; set it to a number of seconds (e.g. 600), or unset it")
    return value


def env_rank() -> str:
    """This process's rank as its launcher set it (before the process group exists)."""
    return os.environ.get("RANK", "?")


def world_size_env() -> int:
    """The number of ranks as the launcher set it (before the process group exists)."""
    return int(os.environ["WORLD_SIZE"])


def setup(device: torch.device) -> None:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU); a no-op otherwise.

    Ranks that do not all arrive within :func:`timeout_seconds` end with one line naming this rank and the
    rendezvous address, instead of waiting forever.
    """
    if not launched_by_torchrun() or is_distributed():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    seconds = timeout_seconds()
    timeout = datetime.timedelta(seconds=seconds)
    try:
        store = _round_store(timeout)
        if store is None:
            dist.init_process_group(backend=backend, timeout=timeout)
        else:
            rank_ = int(env_rank())
            dist.init_process_group(backend, timeout=timeout, store=store, rank=rank_, world_size=world_size_env())
    except (RuntimeError, ValueError) as e:  # torch's DistStoreError/DistNetworkError are RuntimeErrors
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise UserError(
            f"rank {env_rank()} of {os.environ.get('WORLD_SIZE')}: the process group could not be formed at {where} "
            f"within {seconds:g} s ({_first_line(e)}); start the same command on every node, check "
            "the address and port, or raise RESNET_DIST_TIMEOUT"
        ) from None


def _round_store(timeout: datetime.timedelta) -> dist.Store | None:
    """The store this round of torchrun's workers forms its process group in: a namespace of the launcher's
    store that no earlier round wrote to; None where torchrun's workers do not share the launcher's store.

    torchrun's c10d rendezvous hands every round of workers the same TCPStore (its agent outlives them), while
    torch's own setup assumes a fresh store per round. After an elastic restart the new ranks then read the
    dead ranks' gloo addresses from the round before: a connection refused (the restart wasted), or, where
    the old port was taken again meanwhile, pairs that wait for each other up to five times the timeout.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent = dist.TCPStore(host, port, is_master=False, timeout=timeout)
    token = _round_token(agent, int(env_rank()), world_size_env(), timeout)
    return dist.PrefixStore(f"resnet/round/{token}/", agent)


def _round_token(store: dist.Store, me: int, world: int, timeout: datetime.timedelta) -> str:
    """A name every rank of this round agrees on and none of an earlier round used.

    Rank 0 draws it. Every other rank posts a fresh nonce under its rank and waits for the name under that
    nonce (a key no earlier round can have written); rank 0 answers whatever nonce each rank's key holds until
    every rank has confirmed the name, so a nonce left by a dead rank of an earlier round only costs an answer.
    """
    if me != 0:
        nonce = uuid.uuid4().hex
        store.set(f"resnet/hello/{me}", nonce)
        store.wait([f"resnet/name/{nonce}"], timeout)
        token = store.get(f"resnet/name/{nonce}").decode()
        store.set(f"resnet/ack/{token}/{me}", "1")
        return token
    token, waiting = uuid.uuid4().hex, set(range(1, world))
    deadline = time.monotonic() + timeout.total_seconds()
    while waiting:
        for r in sorted(waiting):
            if store.check([f"resnet/ack/{token}/{r}"]):
                waiting.discard(r)
            elif store.check([f"resnet/hello/{r}"]):
                store.set(f"resnet/name/{store.get(f'resnet/hello/{r}').decode()}", token)
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"rank(s) {', '.join(map(str, sorted(waiting)))} did not join")
        if waiting:
            time.sleep(0.02)
    return token


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def agree(fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank; if it fails with a ``UserError`` on any rank, every rank raises
    :class:`RankError` naming the first failing rank and its message, so that no rank goes on into a
    collective that the failed one never joins (where it would wait until the timeout).

    One process: ``fn``'s own result or exception, unchanged.
    """
    if world_size() == 1:
        return fn()
    result, error = None, None
    try:
        result = fn()
    except UserError as e:
        error = str(e)
    errors: list[str | None] = [None] * world_size()
    dist.all_gather_object(errors, error)
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if failed:
        r, message = failed[0]
        raise RankError(message if message.startswith(f"rank {r}") else f"rank {r}: {message}")
    return result  # type: ignore[return-value]  # fn returned here: no rank failed


def lost_peer_line(e: RuntimeError) -> str | None:
    """One line for a collective that failed because another rank died or went silent (its own line says
    why), or None when ``e`` is no error of the process group."""
    # gloo reports a closed peer as a plain RuntimeError ("... Connection reset by peer"), NCCL and the store
    # as torch's DistError subclasses.
    markers = ("gloo", "NCCL", "Connection reset", "Connection closed", "timed out", "Timed out")
    if not launched_by_torchrun():
        return None
    if not isinstance(e, getattr(dist, "DistError", ())) and not any(m in str(e) for m in markers):
        return None
    return (
        f"rank {env_rank()}: another rank stopped or lost contact during training ({_first_line(e)}); "
        "the failing rank's own line (or its node's log) says why"
    )


def check_divides(batch_size: int) -> None:
    """The global batch must split evenly over the ranks (every rank trains on the same number of images)."""
    n = world_size()
    if batch_size % n:
        raise RankError(
            f"rank {rank()}: train.batch_size {batch_size} does not divide evenly over {n} ranks; "
            f"choose a multiple of {n} (e.g. --set train.batch_size={max(n, batch_size // n * n)}) or another number "
            "of processes"
        )


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


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BN running statistics) on every rank. DDP broadcasts them at the start of every
    forward, so after a training step each rank holds its own batch's update; an evaluation split over the
    ranks must use one model: rank 0's, the one its checkpoint holds."""
    if is_distributed():
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group while Python is fully alive.

    DDP keeps its own reference to the group, often inside reference cycles that only the garbage collector
    frees; left to interpreter shutdown, gloo's threads are torn down half-way and the process dies of
    SIGABRT ("terminate called without an active exception") after a finished run, which torchrun counts as
    a failure (seen once in 13 restarted runs on 2 loaded cores). Not while an error propagates (a lost peer):
    collecting then can end the process before its one line is printed.
    """
    if is_distributed():
        if sys.exc_info()[0] is None:
            gc.collect()
        dist.destroy_process_group()
