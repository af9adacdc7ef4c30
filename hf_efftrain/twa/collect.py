"""Gathering checkpoints for TWA: in memory as they come, or from a folder of saved checkpoints.

A :class:`Collector` receives θ at each collection step and keeps only what the chosen form needs, split
over processes: the subspace form orthogonalizes on arrival (raw checkpoints are never kept), the
layer-wise form keeps each raw checkpoint on its owning process until the centre is known. Both keep the
running average, where TWA starts by default (``twa_init="last"``: the last checkpoint, kept by reference).
``build()`` turns what was gathered into a solver placed at its start point. Example::

    collector = Collector(view, config)
    collector.add(view.vector())                     # at each collection step, on every process
    solver = collector.build(total_steps=config.steps)   # the model now holds the start point

:func:`add_from_folder` feeds a collector from ``checkpoint-N``/``snapshot-N`` folders (Trainer, PEFT
adapter or our snapshots), one checkpoint in memory at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch

from hf_efftrain.distributed import process_position
from hf_efftrain.errors import TWAError
from hf_efftrain.trajectory import Trajectory
from hf_efftrain.twa.basis import SubspaceBasis
from hf_efftrain.twa.config import TWAConfig
from hf_efftrain.twa.distributed import owner_of
from hf_efftrain.twa.flat import TrainableView
from hf_efftrain.twa.layerwise import LayerwiseBasis
from hf_efftrain.twa.optimize import LayerwiseTWA, SubspaceTWA

Solver = SubspaceTWA | LayerwiseTWA


class Collector:
    """What TWA keeps of the checkpoints seen so far (this process's share), and their running average."""

    def __init__(self, view: TrainableView, config: TWAConfig) -> None:
        self.view, self.config = view, config
        self.rank, self.world = process_position()
        self.count = 0
        self.total = torch.zeros(view.dim, device=view.device)
        self.basis = SubspaceBasis(view.dim, view.device, config.rank_tol) if config.form == "subspace" else None
        self.raw_rows: dict[int, torch.Tensor] = {}
        self._first: torch.Tensor | None = None  # layer-wise form only: the subspace basis holds w₁ as its anchor
        self.sq_offsets = 0.0  # Σᵢ ‖wᵢ − w₁‖² in float64
        self.latest: torch.Tensor | None = None  # twa_init="last", subspace form: the last checkpoint added

    @property
    def first(self) -> torch.Tensor | None:
        """The first checkpoint w₁, origin of the spread: one copy per process, shared with the basis or raw rows."""
        return self.basis.anchor if self.basis is not None else self._first

    @property
    def spread(self) -> float:
        """RMS distance of the checkpoints from their average: the unit of the trust region.

        Computed from offsets to the first checkpoint (small numbers), not from ‖wᵢ‖² (huge and nearly equal),
        so float32 weights lose nothing to cancellation: (1/n) Σ ‖wᵢ − w̄‖² = (1/n) Σ ‖wᵢ − w₁‖² − ‖w̄ − w₁‖².
        """
        mean_offset = float((self.average - self.first).double().norm()) ** 2
        return max(self.sq_offsets / self.count - mean_offset, 0.0) ** 0.5

    def trust_radius(self) -> float | None:
        """``trust`` × spread, or None (unconstrained) when ``trust`` is 0 or the checkpoints do not differ."""
        radius = self.config.trust * self.spread
        return radius if radius > 0 else None

    @property
    def average(self) -> torch.Tensor:
        """The plain (SWA) average of the checkpoints added."""
        if self.count == 0:
            raise TWAError("no checkpoint was collected: TWA needs at least one (check twa_start and twa_every)")
        return self.total / self.count

    def add(self, theta: torch.Tensor) -> None:
        """Take in one checkpoint (call it on every process with the same θ)."""
        theta = theta.to(self.view.device, torch.float32)
        self.total += theta
        if self.count > 0:
            self.sq_offsets += float((theta - self.first).double().norm()) ** 2
        if self.config.keeps_last:
            self.latest = theta  # nothing writes into θ afterwards: a reference, not a copy
        if self.basis is not None:
            self.basis.add(theta)  # the first becomes the basis anchor, which ``first`` returns
        else:
            if self.count == 0:
                self._first = theta.clone()
            if owner_of(self.count, self.world) == self.rank:  # w₁'s raw row is ``first`` itself, not a copy
                self.raw_rows[self.count] = self._first if self.count == 0 else theta.clone()
        self.count += 1

    def build(self, total_steps: int) -> Solver:
        """The solver of the configured form over what was collected, started at ``twa_init``'s point (the model
        holds it afterwards); releases the raw checkpoints."""
        c, radius = self.config, self.trust_radius()
        last = c.init == "last"
        if self.basis is not None:
            self.basis.seal()  # collection is over: w₁ is not needed in the TWA phase
            knobs = (c.lr, c.momentum, c.weight_decay, c.schedule, total_steps, radius)
            solver = SubspaceTWA(self.view, self.basis, *knobs)
            solver.start(self.latest if last else self.average)
        else:
            raw_rows, self.raw_rows = self.raw_rows, {}  # handed over: the basis frees them as it encodes
            basis = LayerwiseBasis(self.average, raw_rows, self.view.sizes, c.bits)
            solver = LayerwiseTWA(self.view, basis, c.lr, c.weight_decay, c.schedule, total_steps, radius)
            solver.start(checkpoint=self.count - 1 if last else None)
        self.latest = None
        return solver

    def state_dict(self) -> dict[str, Any]:
        """What was collected so far (basis, raw rows, running sums), for a checkpoint; w₁ stored once."""
        return {
            "count": self.count,
            "total": self.total,
            "basis": self.basis.state_dict() if self.basis is not None else None,
            "raw_rows": self.raw_rows,  # w₁'s row shares ``first``'s storage: torch.save writes it once
            "first": self._first,
            "sq_offsets": self.sq_offsets,
            "latest": self.latest,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output onto this collector's device (resume)."""
        self.count = int(state["count"])
        self.total = state["total"].to(self.view.device)
        if self.basis is not None:
            self.basis.load_state_dict(state["basis"])
        self.raw_rows = {int(k): v.to(self.view.device) for k, v in state["raw_rows"].items()}
        first = state.get("first") if self.basis is None else None  # the subspace form reads w₁ from its basis
        self._first = first.to(self.view.device).clone() if first is not None else None
        if self._first is not None and 0 in self.raw_rows:
            self.raw_rows[0] = self._first  # one copy again, as before the save
        self.sq_offsets = float(state.get("sq_offsets", 0.0))
        latest = state.get("latest")
        self.latest = latest.to(self.view.device).clone() if latest is not None else None


def solver_from_state(view: TrainableView, config: TWAConfig, state: dict[str, Any], total_steps: int) -> Solver:
    """Rebuild a solver saved with ``solver.state_dict()`` (used when a run resumes inside the TWA phase)."""
    c = config
    if state["form"] == "subspace":
        basis = SubspaceBasis(view.dim, view.device, c.rank_tol)
        solver: Solver = SubspaceTWA(view, basis, c.lr, c.momentum, c.weight_decay, c.schedule, total_steps)
    else:
        basis = LayerwiseBasis.from_state(state["basis"], view.sizes)
        solver = LayerwiseTWA(view, basis, c.lr, c.weight_decay, c.schedule, total_steps)
    solver.load_state_dict(state)
    return solver


def add_from_folder(collector: Collector, source: str | os.PathLike | Iterable[str | os.PathLike]) -> int:
    """Feed every checkpoint of a trajectory folder (or list of folders) to ``collector``; returns how many."""
    trajectory = Trajectory(source)
    for index in range(len(trajectory)):
        collector.add(collector.view.vector_from_state(trajectory.load(index)))
    return len(trajectory)


def count_checkpoints(source: str | os.PathLike) -> int:
    """Number of checkpoints in a trajectory folder (headers only)."""
    return len(Trajectory(source))
