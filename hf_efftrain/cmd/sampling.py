"""Choosing the K reference candidates of CMD and reading their trajectories in one streaming pass.

Clustering all N parameters is impossible (N×N); CMD clusters K ≈ 1000 sampled ones instead. Half of the
candidates are spread evenly over the tensors (so small tensors such as LayerNorm gains are represented), half
are drawn in proportion to tensor size (so big matrices get their share). Example::

    picks = sample_candidates(traj.shapes, k=1000, seed=0)      # {tensor name: sorted flat indices}
    ids, values = gather_candidates(traj, picks)                  # values: [T, K] float64
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hf_efftrain.trajectory import Trajectory


def sample_candidates(shapes: dict[str, tuple[int, ...]], k: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Flat indices of about ``k`` distinct scalars: half even over tensors, half proportional to size."""
    if k < 2:
        raise ValueError(f"CMD needs at least 2 candidates, got {k}")
    rng = np.random.default_rng(seed)
    names = list(shapes)
    sizes = np.array([math.prod(shapes[n]) for n in names], dtype=np.int64)
    picks: dict[str, set[int]] = {n: set() for n in names}
    even = k // 2
    per_tensor, extra = divmod(even, len(names))
    lucky = set(rng.choice(len(names), size=extra, replace=False).tolist()) if extra else set()
    for i, name in enumerate(names):
        count = min(int(sizes[i]), per_tensor + (i in lucky))
        picks[name].update(rng.choice(int(sizes[i]), size=count, replace=False).tolist())
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    wanted = min(k - even, int(offsets[-1]))
    for flat in rng.choice(int(offsets[-1]), size=wanted, replace=False):
        i = int(np.searchsorted(offsets, flat, side="right") - 1)
        picks[names[i]].add(int(flat - offsets[i]))
    return {n: np.array(sorted(p), dtype=np.int64) for n, p in picks.items() if p}


def gather_candidates(
    traj: Trajectory, picks: dict[str, np.ndarray], max_elements: int | None = 2**22
) -> tuple[list[tuple[str, int]], np.ndarray]:
    """The trajectories of the picked scalars, ``[T, K]`` float64, read chunk by chunk (one checkpoint's worth)."""
    ids: list[tuple[str, int]] = []
    columns: list[np.ndarray] = []
    for chunk in traj.iter_chunks(names=list(picks), max_elements=max_elements, reuse_buffer=True):
        traj.check_finite(chunk)  # NaN would poison the correlations; nothing is written yet
        shape = traj.shapes[chunk.name]
        row_size = math.prod(shape[1:]) if shape else 1
        start, stop = chunk.rows.start * row_size, chunk.rows.stop * row_size
        wanted = picks[chunk.name]
        inside = wanted[(wanted >= start) & (wanted < stop)]
        if inside.size:
            columns.append(chunk.values[:, torch.from_numpy(inside - start)].double().numpy())
            ids.extend((chunk.name, int(i)) for i in inside)
    return ids, np.concatenate(columns, axis=1)
