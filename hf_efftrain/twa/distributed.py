"""How TWA lays its basis out across processes: process ``r`` owns rows ``r, r + W, r + 2W, ...``.

Anything that needs all rows (a projection Pᵀ(Pg), a combination Σ xᵢ pᵢ) is a local partial sum followed by one
all-reduce of a parameter-sized vector (:func:`hf_efftrain.distributed.all_reduce_sum`). Example::

    rank, world = process_position()
    mine = [i for i in range(total) if owner_of(i, world) == rank]     # len(mine) == rows_on(rank, total, world)
"""

from __future__ import annotations


def owner_of(index: int, world: int) -> int:
    """The process that stores basis row ``index`` (round-robin)."""
    return index % world


def rows_on(rank: int, total: int, world: int) -> int:
    """How many of ``total`` rows process ``rank`` stores."""
    return len(range(rank, total, world))
