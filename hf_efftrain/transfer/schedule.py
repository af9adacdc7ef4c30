"""Where the source points lie: the saved checkpoints, or interpolations between the first and the last.

The paper transfers a trajectory given only θ_0 and θ_T, through θ_0 + λ_k(θ_T − θ_0). A cosine spacing puts
more points near the end, where the permutation matters most. Example::

    path = InterpolatedPath(theta_0, theta_T, spacing("cosine", 10))
    path[3]                                     # θ_0 + λ_3 (θ_T − θ_0), a state dict
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from hf_efftrain.errors import TransferError
from hf_efftrain.trajectory import Trajectory


def spacing(kind: str, steps: int) -> list[float]:
    """λ_0 = 0 < … < λ_T = 1: ``linear`` (k/T) or ``cosine`` (sin(πk/2T), dense near the end)."""
    if steps < 1:
        raise TransferError(f"a transfer needs at least one step, got {steps}")
    if kind == "linear":
        return [k / steps for k in range(steps + 1)]
    if kind == "cosine":
        return [1.0 if k == steps else math.sin(math.pi * k / (2 * steps)) for k in range(steps + 1)]
    raise TransferError(f"unknown spacing {kind!r}; choose linear or cosine")


class InterpolatedPath:
    """Source points ``θ_0 + λ_k (θ_T − θ_0)``, built on demand."""

    def __init__(self, start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor], lambdas: list[float]):
        self.start, self.lambdas = dict(start), list(lambdas)
        self.delta = {n: end[n].float() - start[n].float() for n in start}

    def __len__(self) -> int:
        return len(self.lambdas)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        lam = self.lambdas[k]
        return {n: (self.start[n].float() + lam * self.delta[n]).to(self.start[n].dtype) for n in self.start}


class CheckpointPath:
    """The saved checkpoints of a :class:`~hf_efftrain.trajectory.Trajectory`, read one at a time."""

    def __init__(self, trajectory: Trajectory) -> None:
        if len(trajectory) < 2:
            raise TransferError(f"a trajectory to transfer needs at least 2 checkpoints, found {len(trajectory)}")
        self.trajectory = trajectory
        first, last = trajectory.steps[0], trajectory.steps[-1]
        self.lambdas = [(s - first) / max(1, last - first) for s in trajectory.steps]  # fraction of the run

    def __len__(self) -> int:
        return len(self.trajectory)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.trajectory.load(k)


def source_path(trajectory: Trajectory, kind: str, steps: int) -> InterpolatedPath | CheckpointPath:
    """The source points a transfer walks along, for a spacing ``kind`` (see :class:`TransferConfig`)."""
    if kind == "checkpoints":
        return CheckpointPath(trajectory)
    if len(trajectory) < 2:
        raise TransferError(f"a trajectory to transfer needs at least 2 checkpoints, found {len(trajectory)}")
    return InterpolatedPath(trajectory.load(0), trajectory.load(-1), spacing(kind, steps))
