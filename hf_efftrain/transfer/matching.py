"""Gradient matching: the permutation π maximizing Σ_t ⟨g'_t, π(g_t)⟩, by coordinate descent over groups.

``g_t`` is the loss gradient at the source point θ_t and ``g'_t`` at the transferred point θ'_t, both on the
same mini-batches. With all groups but one fixed, the objective is linear in that group's permutation, so each
step is a linear assignment (solved by the group itself, :mod:`hf_efftrain.transfer.groups`). Starting at the
identity, groups are re-solved in turn until none improves.

Memory: a parameter with a single permuted axis (embeddings, norms, biases, heads) contributes a similarity
matrix that does not depend on the other groups, so :class:`GradientPairs` adds it up once and drops the
gradients; only parameters with two permuted axes (the projections inside the layers) keep their gradients.
Example::

    pairs = GradientPairs(spec)
    pairs.add(source_grads, target_grads)      # once per trajectory step
    perm, info = match_permutation(spec, pairs)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from hf_efftrain.transfer.groups import tolerance
from hf_efftrain.transfer.spec import Axis, Permutation, PermutationSpec

RoleKey = tuple[str, str]  # (group, role)


def _rows_by_part(spec: PermutationSpec, axis: Axis, tensor: torch.Tensor, lead: int = 0):
    """Yield ``((group, role), rows)`` for each part of ``axis``, rows flattened to ``[units, -1]``.

    ``lead`` extra leading dimensions (stacked gradient pairs) come before the parameter's own axes."""
    moved = tensor.movedim(axis.dim + lead, 0)
    offset = 0
    for part in axis.parts:
        size = spec.size(part)
        units = size // part.inner
        block = moved[offset : offset + size].reshape(units, part.inner, -1)
        yield (part.group, part.role), block.reshape(units, -1)
        offset += size


class GradientPairs:
    """Gradient pairs reduced to what :func:`match_permutation` needs (see the module docstring)."""

    def __init__(self, spec: PermutationSpec) -> None:
        self.spec = spec
        self.constant: dict[RoleKey, torch.Tensor] = {}
        self.kept: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._stacked: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.count = 0
        # groups that permute two axes of one parameter (e.g. the residual stream on both sides of a pooler):
        # there the objective is not linear in the group's permutation, so steps are checked exactly
        self.self_coupled = {
            part.group
            for axes in spec.axes.values()
            for part in {p for axis in axes for p in axis.parts}
            if sum(any(q.group == part.group for q in axis.parts) for axis in axes) > 1
        }

    def add(self, source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> None:
        """Add one pair: gradients at the source point and at the transferred point (same batches)."""
        for name, axes in self.spec.axes.items():
            if name not in source or name not in target:
                continue
            g, g_prime = source[name].detach().double(), target[name].detach().double()
            if len(axes) > 1:
                self.kept.setdefault(name, []).append((g, g_prime))
                continue
            for (key, x), (_, y) in zip(
                _rows_by_part(self.spec, axes[0], g), _rows_by_part(self.spec, axes[0], g_prime), strict=True
            ):
                self.constant[key] = self.constant.get(key, 0) + y @ x.T
        self.count += 1
        self._stacked = {}

    def stacked(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All kept pairs of ``name`` as two ``[pairs, *shape]`` tensors (built once per ``add``)."""
        if name not in self._stacked:
            kept = self.kept[name]
            self._stacked[name] = (torch.stack([g for g, _ in kept]), torch.stack([gp for _, gp in kept]))
        return self._stacked[name]

    def permuted_source(self, name: str, perm: Permutation, skip: Axis | None = None) -> torch.Tensor:
        """The stacked source gradients of ``name`` with every axis but ``skip`` permuted."""
        tensor = self.stacked(name)[0]
        for axis in self.spec.axes[name]:
            if axis is not skip:
                tensor = tensor.index_select(axis.dim + 1, self.spec.index(axis, perm))
        return tensor

    def similarity(self, group: str, perm: Permutation) -> dict[str, torch.Tensor]:
        """``S[role][new, old]`` of ``group`` with every other axis permuted by ``perm``."""
        out = {role: s.clone() for (g, role), s in self.constant.items() if g == group}
        for name in self.kept:
            for axis in self.spec.axes[name]:
                if all(p.group != group for p in axis.parts):
                    continue
                x_all, y_all = self.permuted_source(name, perm, skip=axis), self.stacked(name)[1]
                for (key, x), (_, y) in zip(
                    _rows_by_part(self.spec, axis, x_all, 1), _rows_by_part(self.spec, axis, y_all, 1), strict=True
                ):
                    if key[0] == group:
                        out[key[1]] = out[key[1]] + y @ x.T if key[1] in out else y @ x.T
        return out

    def group_objective(self, group: str, perm: Permutation) -> float:
        """The part of Σ_t ⟨g'_t, π(g_t)⟩ that depends on ``group`` (exact, also for self-coupled groups)."""
        total = 0.0
        for (name, role), sim in self.constant.items():
            if name == group:
                index = self.spec.groups[group].composite(perm[group], role)
                total += float(sim[torch.arange(len(index)), index].sum())
        for name in self.kept:
            if any(p.group == group for axis in self.spec.axes[name] for p in axis.parts):
                total += float((self.stacked(name)[1] * self.permuted_source(name, perm)).sum())
        return total


@dataclass(frozen=True)
class MatchInfo:
    """How the coordinate descent went: sweeps over all groups, and the final objective."""

    sweeps: int
    objective: float
    converged: bool


def objective(spec: PermutationSpec, pairs: GradientPairs, perm: Permutation) -> float:
    """Σ_t ⟨g'_t, π(g_t)⟩ over the permuted parameters (unpermuted ones only add a constant)."""
    total = 0.0
    for (group, role), sim in pairs.constant.items():
        index = spec.groups[group].composite(perm[group], role)
        total += float(sim[torch.arange(len(index)), index].sum())
    for name in pairs.kept:
        total += float((pairs.stacked(name)[1] * pairs.permuted_source(name, perm)).sum())
    return total


def match_permutation(
    spec: PermutationSpec, pairs: GradientPairs, init: Permutation | None = None, max_sweeps: int = 100
) -> tuple[Permutation, MatchInfo]:
    """Coordinate descent of linear assignments over the groups, from ``init`` (default: identity)."""
    perm = dict(init) if init is not None else spec.identity()
    sweeps, converged = 0, False
    while sweeps < max_sweeps:
        sweeps += 1
        improved = False
        for name, group in spec.groups.items():
            sim = pairs.similarity(name, perm)
            if not sim:
                continue
            candidate = group.solve(sim, perm[name])
            if name in pairs.self_coupled:  # linearized step: keep it only if the true objective rises
                old, new = pairs.group_objective(name, perm), pairs.group_objective(name, {**perm, name: candidate})
            else:
                old, new = group.score(sim, perm[name]), group.score(sim, candidate)
            if new > old + tolerance(sim):
                perm[name] = candidate
                improved = True
        if not improved:
            converged = True
            break
    return perm, MatchInfo(sweeps, objective(spec, pairs, perm), converged)
