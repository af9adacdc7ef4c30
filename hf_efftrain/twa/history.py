"""The trained TWA coefficients, step by step, in a form a person can plot (``twa_history.json``).

Why: the solver's state is written for resuming (per-process shares of the basis, optimizer moments), not
for reading. What a user wants to see is where TWA moved in the span of the checkpoints:

* subspace form: the coordinates of θ − (plain average) along each orthonormal basis direction (0 at the start);
* layer-wise form: the coefficients X (one per checkpoint and per tensor; X = 0 is the plain average, Xᵢ = 1 is
  checkpoint i). Each step keeps the per-checkpoint mean over tensors; the final step keeps the full matrix.

Rows are split over processes, so gathering is one all-reduce of a small vector: call it on every process.
Example::

    history.append({"twa_step": solver.steps_done, "coefficients": step_coefficients(solver, rows=8)})
"""

from __future__ import annotations

import torch

from hf_efftrain.distributed import all_reduce_sum
from hf_efftrain.twa.optimize import LayerwiseTWA, SubspaceTWA


def coefficient_matrix(solver: SubspaceTWA | LayerwiseTWA, rows: int) -> torch.Tensor:
    """All processes' coefficients: ``[rows]`` (subspace) or ``[rows, tensors]`` (layer-wise), on the CPU."""
    if isinstance(solver, SubspaceTWA):
        basis = solver.basis
        theta = solver.view.vector()
        offset = theta - solver.centre if solver.centre is not None else theta
        out = torch.zeros(basis.size, device=offset.device)
        for position, row in enumerate(basis.rows):  # local row p is global row rank + p·world
            out[basis.rank + position * basis.world] = torch.dot(row, offset)
        return all_reduce_sum(out).cpu()
    out = torch.zeros(rows, solver.basis.blocks, device=solver.coefficients.device)
    for position, index in enumerate(solver.basis.indices):
        out[index] = solver.coefficients.detach()[position]
    return all_reduce_sum(out).cpu()


def step_coefficients(solver: SubspaceTWA | LayerwiseTWA, rows: int) -> list[float]:
    """One number per basis vector (subspace) or per checkpoint (layer-wise: mean over tensors)."""
    matrix = coefficient_matrix(solver, rows)
    return (matrix if matrix.dim() == 1 else matrix.mean(dim=1)).tolist()
