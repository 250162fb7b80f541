"""Evaluation split over the ranks of a process group (``torchrun``): each image counted exactly once.

A ``DistributedSampler`` pads the last shard with repeated images so that every rank has as many; averaged
as they come, those repeats would count twice. Here nothing is padded: each rank evaluates its own share of
the *same batches* one process would run (batch ``b`` on rank ``b % world``), writes its per-image results
into zero-filled vectors the size of the whole split, and one sum over the ranks fills every entry from the
one rank that saw it. The results are then the one-process results bit for bit (same batches, same order of
summation), and a count vector proves that every image was seen once.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the process group, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def mine(batch: int) -> bool:
    """Whether this rank evaluates batch number ``batch`` (round robin over the ranks)."""
    rank, world = rank_and_world()
    return batch % world == rank


def merge(parts: dict[str, torch.Tensor], seen: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sum zero-filled per-image tensors over the ranks (in place; all on one device) after which every image
    must have been evaluated by exactly one rank; identity in one process."""
    if rank_and_world()[1] > 1:
        nccl = dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
        for t in (seen, *parts.values()):
            moved = t.to(torch.device("cuda", torch.cuda.current_device())) if nccl and not t.is_cuda else t
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            if moved is not t:
                t.copy_(moved)
    if not bool((seen == 1).all()):
        missing, twice = int((seen == 0).sum()), int((seen > 1).sum())
        raise RuntimeError(f"sharded evaluation saw {missing} image(s) never and {twice} more than once")
    return parts


def gather_lists(items: list) -> list:
    """Every rank's list, concatenated (rank 0's first); the list itself in one process."""
    rank, world = rank_and_world()
    if world == 1:
        return items
    everything: list[list] = [[] for _ in range(world)]
    dist.all_gather_object(everything, items)
    return [x for part in everything for x in part]
