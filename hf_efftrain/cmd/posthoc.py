"""Post-hoc CMD over a saved trajectory, streaming over parameter blocks so memory does not grow with T·N.

Two passes over the checkpoints, each holding one ``[T, n]`` block at a time (``max_elements`` numbers, read
with ``Trajectory.iter_chunks``, which uses positional reads, not memory maps): the first gathers the K
candidates, the second assigns and fits every parameter and accumulates the reconstruction error.
Peak memory ≈ a few blocks + K×K correlation + the 2N coefficients being produced.
Example::

    result = fit_cmd(Trajectory("runs/demo/snapshots"), modes=5)
    result.save("runs/demo/cmd")
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import torch

from hf_efftrain.cmd.fit import BlockFit, fit_block
from hf_efftrain.cmd.modes import cluster_modes, moving_columns
from hf_efftrain.cmd.result import CMDResult
from hf_efftrain.cmd.sampling import gather_candidates, sample_candidates
from hf_efftrain.errors import CMDFitError
from hf_efftrain.trajectory import Trajectory


@dataclass
class _Totals:
    """Running sums of squared error / norm / displacement, per step, per mode and per tensor."""

    modes: int
    steps: int
    error: np.ndarray = field(init=False)
    norm: np.ndarray = field(init=False)
    displacement: np.ndarray = field(init=False)
    mode_count: np.ndarray = field(init=False)
    mode_moving: np.ndarray = field(init=False)
    mode_corr: np.ndarray = field(init=False)
    mode_error: np.ndarray = field(init=False)
    mode_displacement: np.ndarray = field(init=False)
    per_tensor: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.error, self.norm, self.displacement = (np.zeros(self.steps) for _ in range(3))
        self.mode_count, self.mode_moving = np.zeros(self.modes, np.int64), np.zeros(self.modes, np.int64)
        self.mode_corr, self.mode_error, self.mode_displacement = (np.zeros(self.modes) for _ in range(3))

    def add(self, name: str, fit: BlockFit) -> None:
        self.error += fit.squared_error
        self.norm += fit.squared_norm
        self.displacement += fit.displacement
        self.mode_count += np.bincount(fit.labels, minlength=self.modes)
        self.mode_moving += np.bincount(fit.labels, weights=fit.correlation > 0, minlength=self.modes).astype(np.int64)
        self.mode_corr += np.bincount(fit.labels, weights=fit.correlation, minlength=self.modes)
        self.mode_error += np.bincount(fit.labels, weights=fit.parameter_error, minlength=self.modes)
        self.mode_displacement += np.bincount(fit.labels, weights=fit.parameter_displacement, minlength=self.modes)
        entry = self.per_tensor.setdefault(
            name, {"mode_counts": np.zeros(self.modes, np.int64), "constant": 0, "e": 0.0, "d": 0.0}
        )
        entry["mode_counts"] += np.bincount(fit.labels, minlength=self.modes)
        entry["constant"] += int((fit.correlation == 0).sum())  # constant parameters carry label 0
        entry["e"] += float(fit.parameter_error.sum())
        entry["d"] += float(fit.parameter_displacement.sum())

    def as_stats(self) -> dict:
        ratio = _safe_ratio
        return {
            "num_parameters": int(self.mode_count.sum()),
            "moving_parameters": int(self.mode_moving.sum()),
            "relative_reconstruction_error": ratio(self.error.sum(), self.norm.sum()),
            "relative_displacement_error": ratio(self.error.sum(), self.displacement.sum()),
            "relative_error_per_step": [ratio(e, n) for e, n in zip(self.error, self.norm, strict=True)],
            "relative_displacement_error_per_step": [
                ratio(e, d) for e, d in zip(self.error, self.displacement, strict=True)
            ],
            "per_mode": [
                {
                    "parameters": int(self.mode_count[m]),
                    "moving": int(self.mode_moving[m]),
                    "mean_abs_corr": float(self.mode_corr[m] / max(1, self.mode_moving[m])),
                    "relative_displacement_error": ratio(self.mode_error[m], self.mode_displacement[m]),
                }
                for m in range(self.modes)
            ],
            "per_tensor": {
                name: {
                    "mode_counts": entry["mode_counts"].tolist(),
                    "constant": entry["constant"],
                    "relative_displacement_error": ratio(entry["e"], entry["d"]),
                }
                for name, entry in self.per_tensor.items()
            },
        }


def _safe_ratio(error: float, reference: float) -> float | None:
    """sqrt(error / reference), or None where the reference is 0 (e.g. displacement at the first step)."""
    return float(math.sqrt(error / reference)) if reference > 0 else None


def choose_modes(
    traj: Trajectory,
    modes: int,
    candidates: int,
    seed: int,
    max_elements: int | None,
    reference_tensors: Collection[str] | None = None,
):
    """Pass 1: sample candidates, drop the constant ones, cluster; returns (Modes, ids, [T, K] values).

    With ``reference_tensors``, references are taken from those tensors where a mode has members there."""
    picks = sample_candidates(traj.shapes, candidates, seed)
    ids, values = gather_candidates(traj, picks, max_elements)
    keep = moving_columns(values)
    if keep.size < max(2, modes):
        raise CMDFitError(
            f"only {keep.size} of {len(ids)} sampled parameters change over the {len(traj)} checkpoints; "
            "CMD needs moving parameters: use more --candidates or a trajectory with training in it"
        )
    values, ids = values[:, keep], [ids[i] for i in keep]
    allowed = None if reference_tensors is None else np.array([name in reference_tensors for name, _ in ids])
    return cluster_modes(values, modes, allowed), ids, values


def fit_cmd(
    traj: Trajectory,
    modes: int = 5,
    candidates: int = 1000,
    seed: int = 0,
    max_elements: int | None = 2**22,
    base_model: str | None = None,
    reference_tensors: Collection[str] | None = None,
) -> CMDResult:
    """Post-hoc CMD of a trajectory; memory independent of the number of checkpoints (beyond one block).

    ``reference_tensors``: where the modes' reference parameters may come from (default: anywhere)."""
    if not 1 <= modes <= 255:
        raise CMDFitError(f"--modes must be in 1..255, got {modes}")
    if candidates < 2:
        raise CMDFitError(f"--candidates must be at least 2 (CMD clusters them into modes), got {candidates}")
    if max_elements is not None and max_elements < 1:
        raise CMDFitError(f"--chunk-elements must be a positive number of values per block, got {max_elements}")
    clusters, ids, values = choose_modes(traj, modes, candidates, seed, max_elements, reference_tensors)
    references = values[:, clusters.references].T.copy()  # [M, T]
    totals = _Totals(clusters.count, len(traj))
    a = {n: torch.empty(math.prod(s), dtype=torch.float32) for n, s in traj.shapes.items()}
    b = {n: torch.empty_like(t) for n, t in a.items()}
    labels = {n: torch.empty(t.numel(), dtype=torch.uint8) for n, t in a.items()}
    workspace = np.empty(0)  # one float64 block buffer for the whole pass: see Trajectory.iter_chunks
    for chunk in traj.iter_chunks(max_elements=max_elements, reuse_buffer=True):
        traj.check_finite(chunk)  # tensors without candidates were not checked in pass 1
        shape = traj.shapes[chunk.name]
        row_size = math.prod(shape[1:]) if shape else 1
        window = slice(chunk.rows.start * row_size, chunk.rows.stop * row_size)
        if chunk.values.numel() > workspace.size:
            workspace = np.empty(chunk.values.numel())
        block = workspace[: chunk.values.numel()].reshape(chunk.values.shape)
        torch.from_numpy(block).copy_(chunk.values)  # any stored float dtype, bf16 included, to float64
        fit = fit_block(block, references, overwrite=True)
        a[chunk.name][window] = torch.from_numpy(fit.a)
        b[chunk.name][window] = torch.from_numpy(fit.b)
        labels[chunk.name][window] = torch.from_numpy(fit.labels.astype(np.uint8))
        totals.add(chunk.name, fit)
    order = np.argsort(clusters.labels, kind="stable")
    return CMDResult(
        steps=traj.steps,
        references=references,
        reference_ids=[ids[i] for i in clusters.references],
        a={n: t.reshape(traj.shapes[n]) for n, t in a.items()},
        b={n: t.reshape(traj.shapes[n]) for n, t in b.items()},
        labels={n: t.reshape(traj.shapes[n]) for n, t in labels.items()},
        dtypes=dict(traj.dtypes),
        candidate_correlation=clusters.correlation[np.ix_(order, order)],
        candidate_labels=clusters.labels[order],
        stats={**totals.as_stats(), "candidates_used": len(ids), "modes_requested": modes},
        meta={"candidates": candidates, "seed": seed, "base_model": base_model},
    )
