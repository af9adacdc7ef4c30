"""Per-parameter CMD: assign each trajectory to its best-correlated mode and fit θ_i(t) ≈ a_i·r_m(t) + b_i.

This is the part of CMD that touches all N parameters, so it works on one ``[T, n]`` block at a time; nothing
here needs more than the block and the M×T reference trajectories. Example::

    fit = fit_block(block, references)      # block: [T, n] float64, references: [M, T]
    fit.labels, fit.a, fit.b, fit.squared_error   # squared_error: [T] summed over the block
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hf_efftrain.cmd.modes import MIN_STD
from hf_efftrain.errors import CMDFitError


@dataclass
class BlockFit:
    """Mode label, affine coefficients and |ρ| to its reference for each of a block's n parameters."""

    labels: np.ndarray  # [n] int
    a: np.ndarray  # [n]
    b: np.ndarray  # [n]
    correlation: np.ndarray  # [n] |ρ| with the chosen reference (0 for a constant parameter)
    squared_error: np.ndarray  # [T] Σ_i (θ̂_i(t) − θ_i(t))²
    parameter_error: np.ndarray  # [n] Σ_t (θ̂_i(t) − θ_i(t))²
    squared_norm: np.ndarray  # [T] Σ_i θ_i(t)²
    displacement: np.ndarray  # [T] Σ_i (θ_i(t) − θ_i(0))²
    parameter_displacement: np.ndarray  # [n] Σ_t (θ_i(t) − θ_i(0))²


def fit_block(block: np.ndarray, references: np.ndarray, overwrite: bool = False) -> BlockFit:
    """Least-squares affine fit of every column of ``block`` ([T, n]) on its most correlated reference.

    Constant parameters get a = 0, b = θ (exact). Ties go to the lowest mode, i.e. the largest one.
    Errors and norms come from sums of products (BLAS), never from a second [T, n] array: with centred
    values c and residual e = c − a·r_c, Σ_i e_i(t)² = Σ c² − 2 Σ_m r_c,m(t)·(c·a_m)(t) + Σ_m r_c,m(t)² Σ a_m².
    ``overwrite=True`` centres ``block`` in place (its values are lost) so that a streaming fit allocates no
    [T, n] array per block.
    """
    ref_mean = references.mean(axis=1)
    ref_centered = references - ref_mean[:, None]
    ref_var = (ref_centered**2).sum(axis=1)
    mean = block.mean(axis=0)
    centered = np.subtract(block, mean, out=block if overwrite else None)
    per_step_squares = np.einsum("tn,tn->t", centered, centered)
    norms2 = np.einsum("tn,tn->n", centered, centered)
    cov = ref_centered @ centered  # [M, n]
    corr = np.abs(cov)
    corr /= np.sqrt(ref_var)[:, None]
    corr /= np.where(norms2 > MIN_STD**2, np.sqrt(norms2), np.inf)[None, :]
    labels = np.argmax(corr, axis=0)
    columns = np.arange(block.shape[1])
    a = cov[labels, columns] / ref_var[labels]
    b = mean - a * ref_mean[labels]
    weights = np.zeros((block.shape[1], len(references)))
    weights[columns, labels] = a
    cross = centered @ weights  # [T, M]: Σ_{i in m} a_i c_i(t)
    del weights
    a2 = np.bincount(labels, weights=a**2, minlength=len(references))
    step_error = per_step_squares - 2 * (ref_centered.T * cross).sum(axis=1) + (ref_centered.T**2) @ a2
    first = centered[0]
    return BlockFit(
        labels=labels,
        a=a,
        b=b,
        correlation=corr[labels, columns],
        squared_error=np.maximum(step_error, 0.0),
        parameter_error=np.maximum(norms2 - a * cov[labels, columns], 0.0),
        squared_norm=per_step_squares + 2 * centered @ mean + mean @ mean,
        displacement=np.maximum(per_step_squares - 2 * centered @ first + first @ first, 0.0),
        parameter_displacement=norms2 + block.shape[0] * first**2,
    )


def reference_at(references: np.ndarray, steps: list[int], step: float) -> np.ndarray:
    """r_m(step) for every mode: exact at a checkpoint's step, linear in the step between two checkpoints."""
    grid = np.asarray(steps, dtype=np.float64)
    if not grid[0] <= step <= grid[-1]:
        raise CMDFitError(
            f"step {step} is outside the fitted range {steps[0]}..{steps[-1]}; pick a step inside (no extrapolation)"
        )
    return np.array([np.interp(step, grid, row) for row in references])
