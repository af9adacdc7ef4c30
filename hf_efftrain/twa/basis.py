"""An orthonormal basis P (k×D) of the span of checkpoints, built one checkpoint at a time, split by rows.

Why not Gram–Schmidt on the raw checkpoints directly: fine-tuning moves the weights by a tiny fraction of
their norm, so raw checkpoints are nearly parallel and classical Gram–Schmidt loses most of its digits.
We use the same span written better: the first checkpoint w₁, then the differences wᵢ − w₁, each
orthogonalized twice against the rows so far ("twice is enough", Giraud et al. 2005). A checkpoint whose
residual is below ``rank_tol`` × ‖wᵢ − w₁‖ adds no direction and is dropped with a warning.

Rows are stored round-robin over processes (row i on process i mod W); a projection is a local partial
sum Σ_{i on r} pᵢ (pᵢ·v) and one all-reduce of a D-vector. Example::

    basis = SubspaceBasis(dim=view.dim)
    for theta in checkpoints:
        basis.add(theta)
    g_in_span = basis.project(g)                 # Pᵀ(P g)
"""

from __future__ import annotations

from typing import Any

import torch

from hf_efftrain.distributed import all_reduce_sum, process_position
from hf_efftrain.errors import TWAError
from hf_efftrain.log import get_logger
from hf_efftrain.twa.distributed import owner_of
from hf_efftrain.twa.memory import tensor_mb

logger = get_logger("hf_efftrain.twa")


class SubspaceBasis:
    """Orthonormal rows spanning the checkpoints added so far; this process keeps only its share."""

    def __init__(self, dim: int, device: torch.device | str = "cpu", rank_tol: float = 1e-4) -> None:
        self.dim = dim
        self.device = torch.device(device)
        self.rank_tol = rank_tol
        self.rank, self.world = process_position()
        self.rows: list[torch.Tensor] = []
        self.size = 0  # rows over all processes
        self.dropped = 0
        self.anchor: torch.Tensor | None = None  # w₁; Collector.first reads it there (one copy per process)
        self.sealed = False

    def project(self, vector: torch.Tensor) -> torch.Tensor:
        """Pᵀ(P v): the component of ``vector`` in the span (one all-reduce, no host sync).

        The coefficients P v stay on the device: reading each one back (``float(dot)``) would stall an
        accelerator once per row and step.
        """
        out = torch.zeros(self.dim, device=vector.device, dtype=torch.float32)
        if self.rows:
            coefficients = torch.stack([torch.dot(row, vector) for row in self.rows])
            for row, coefficient in zip(self.rows, coefficients, strict=True):
                out.addcmul_(row, coefficient)
        return all_reduce_sum(out)

    def seal(self) -> None:
        """End collection: the anchor w₁ (a whole parameter vector) is only needed to add checkpoints; free it."""
        self.anchor = None
        self.sealed = True

    def add(self, vector: torch.Tensor) -> bool:
        """Orthogonalize a checkpoint against the basis; keep it (True) or drop it as dependent (False)."""
        if self.sealed:
            raise TWAError("the TWA basis is sealed (the TWA phase has begun): no checkpoint can be added now")
        vector = vector.to(self.device, torch.float32)
        if self.anchor is None:
            self.anchor = vector.clone()
            direction = vector.clone()
        else:
            direction = vector - self.anchor
        reference = float(direction.norm())
        if reference > 0:
            for _ in range(2):  # re-orthogonalization: the second pass removes what rounding left behind
                direction -= self.project(direction)
        residual = float(direction.norm())
        if reference == 0 or residual <= self.rank_tol * reference:
            self.dropped += 1
            logger.warning(
                "TWA: checkpoint %d is (nearly) in the span of the previous ones (residual %.2e of %.2e); dropped",
                self.size + self.dropped,
                residual,
                reference,
            )
            return False
        if owner_of(self.size, self.world) == self.rank:
            self.rows.append(direction / residual)
        self.size += 1
        return True

    @property
    def memory_mb(self) -> float:
        """Storage of this process's rows, in MiB."""
        return tensor_mb(*self.rows)

    def state_dict(self) -> dict[str, Any]:
        """This process's basis rows and bookkeeping, for the TWA state file of a checkpoint."""
        rows = torch.stack(self.rows) if self.rows else torch.zeros(0, self.dim)
        return {"rows": rows, "size": self.size, "dropped": self.dropped, "anchor": self.anchor, "sealed": self.sealed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output onto this basis's device (resume)."""
        self.rows = [row.to(self.device).clone() for row in state["rows"]]
        self.size, self.dropped = int(state["size"]), int(state["dropped"])
        anchor = state["anchor"]
        self.anchor = anchor.to(self.device).clone() if anchor is not None else None
        self.sealed = bool(state.get("sealed", False))
