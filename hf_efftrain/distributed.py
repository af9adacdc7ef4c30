"""The few collective operations the methods need, each a no-op in a single process.

MAT, TWA and CMD all ask "how many processes are there?" and a few of them exchange one tensor or one object;
keeping these helpers here means every method answers that question the same way (no process group = one
process) and a method never needs ``torch.distributed`` set up to run alone. Example::

    rank, world = process_position()
    total = all_reduce_sum(partial)                          # same tensor back when world == 1
    shared = broadcast_from_main(choice if rank == 0 else None)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def process_position() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without an initialized process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def process_count() -> int:
    """Processes in the default group (1 without an initialized process group)."""
    return process_position()[1]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place; returns it."""
    if process_count() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    """Wait for all processes (a no-op in a single process)."""
    if process_count() > 1:
        dist.barrier()


def broadcast_from_main(value: Any) -> Any:
    """``value`` of process 0, returned on every process (pickled; tensors travel on the CPU).

    Used where a choice must be identical everywhere and recomputing it on each process could differ through
    float rounding (embedded CMD: a process that embedded other tensors than its peers would train another model).
    """
    if process_count() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
