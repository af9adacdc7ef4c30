"""The two collective operations TWA needs, which are no-ops in a single process.

The basis is split by rows across processes: process ``r`` owns rows ``r, r + W, r + 2W, ...``. Anything
that needs all rows (a projection Pᵀ(Pg), a combination Σ xᵢ pᵢ) is a local partial sum followed by one
all-reduce of a parameter-sized vector. Example::

    rank, world = process_position()
    total = all_reduce_sum(partial)        # same tensor back when world == 1
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def process_position() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without an initialized process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place; returns it."""
    if process_position()[1] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    """Wait for all processes (a no-op in a single process)."""
    if process_position()[1] > 1:
        dist.barrier()


def owner_of(index: int, world: int) -> int:
    """The process that stores basis row ``index`` (round-robin)."""
    return index % world


def rows_on(rank: int, total: int, world: int) -> int:
    """How many of ``total`` rows process ``rank`` stores."""
    return len(range(rank, total, world))
