"""The one collective embedded CMD needs: the main process's choice handed to every process.

Why a broadcast and not the same computation everywhere: the online CMD state (8 bytes per parameter) lives on
the main process only, and a choice recomputed on each process could differ through float rounding in the
post-hoc fit; a process that embedded other tensors than its peers would train a different model. Example::

    shared = broadcast_from_main(choice if rank == 0 else None)   # the main process's object, on every process
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from hf_efftrain.twa.distributed import process_position


def process_count() -> int:
    """Processes in the default group (1 without an initialized process group)."""
    return process_position()[1]


def broadcast_from_main(value: Any) -> Any:
    """``value`` of process 0, returned on every process (pickled; tensors travel on the CPU)."""
    if process_count() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
