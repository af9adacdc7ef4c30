"""Grouping candidate trajectories into modes: |correlation| matrix, complete linkage, one reference per mode.

Two trajectories with |ρ| = 1 are affine images of each other, so a mode is a set of candidates that are
pairwise highly correlated; complete linkage on the distance 1 − |ρ| makes every pair inside a cluster close.
The reference of a mode is its most "central" member (highest mean |ρ| to the others). Example::

    modes = cluster_modes(values, m=5)      # values: [T, K] candidate trajectories
    modes.references                         # indices into the K candidates, one per mode
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from hf_efftrain.errors import CMDFitError

MIN_STD = 1e-12


@dataclass(frozen=True)
class Modes:
    """Clustering of K candidates: ``labels[k]`` in 0..M-1 (mode 0 is the largest), ``references[m]`` in 0..K-1."""

    labels: np.ndarray
    references: np.ndarray
    correlation: np.ndarray  # |corr|, K×K, in candidate order

    @property
    def count(self) -> int:
        """The number of modes M (one reference candidate each)."""
        return len(self.references)


def abs_correlation(values: np.ndarray) -> np.ndarray:
    """|Pearson correlation| between the columns of ``values`` ([T, K]); constant columns correlate 0."""
    centered = values - values.mean(axis=0)
    norms = np.linalg.norm(centered, axis=0)
    unit = centered / np.where(norms > MIN_STD, norms, np.inf)
    corr = np.abs(unit.T @ unit)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, 0.0, 1.0)


def moving_columns(values: np.ndarray) -> np.ndarray:
    """Indices of candidates whose trajectory is not constant (constant ones carry no correlation)."""
    return np.flatnonzero(values.std(axis=0) > MIN_STD * np.maximum(1.0, np.abs(values).max(axis=0)))


def cluster_modes(values: np.ndarray, m: int, may_reference: np.ndarray | None = None) -> Modes:
    """Complete-linkage clustering of ``values``' columns into at most ``m`` modes by 1 − |corr|.

    ``may_reference`` (bool per column) limits which candidates may be a mode's reference: the most central of
    them, or of all members when a mode has none (embedded CMD keeps references out of the tensors it freezes)."""
    if values.shape[0] < 3:
        raise CMDFitError(f"CMD needs at least 3 checkpoints to correlate trajectories, got {values.shape[0]}")
    if values.shape[1] < m:
        raise CMDFitError(
            f"only {values.shape[1]} candidate parameters move during training, fewer than {m} modes; "
            "use fewer modes or more candidates"
        )
    corr = abs_correlation(values)
    if m == 1:
        raw = np.ones(len(corr), dtype=np.int64)
    else:
        distance = squareform(1.0 - corr, checks=False)
        raw = fcluster(linkage(distance, method="complete"), t=m, criterion="maxclust")
    clusters, sizes = np.unique(raw, return_counts=True)
    order = clusters[np.argsort(-sizes, kind="stable")]
    labels = np.empty(len(raw), dtype=np.int64)
    references = []
    for mode, cluster in enumerate(order):
        members = np.flatnonzero(raw == cluster)
        labels[members] = mode
        centrality = corr[np.ix_(members, members)].mean(axis=1)
        if may_reference is not None and may_reference[members].any():
            centrality = np.where(may_reference[members], centrality, -np.inf)
        references.append(members[int(np.argmax(centrality))])
    return Modes(labels, np.array(references, dtype=np.int64), corr)
