"""Gradient matching: the permutation π maximizing Σ_t ⟨g'_t, π(g_t)⟩, by coordinate descent over groups.

``g_t`` is the loss gradient at the source point θ_t and ``g'_t`` at the transferred point θ'_t, both on the
same mini-batches. With all groups but one fixed, the objective is linear in that group's permutation, so each
step is a linear assignment (solved by the group itself, :mod:`hf_efftrain.transfer.groups`). From ``init``
(the previous step's permutation, or the identity), groups are re-solved until none improves.

Only what changed is re-solved: a group's similarity depends only on the groups that permute another axis of
the same parameters (an MLP or attention group only on the residual stream), so a group is solved again only
after one of those changed, and the descent stops as soon as no group can change — without a final sweep that
re-solves everything to find nothing. Similarities are not rebuilt either: each parameter's term is kept and
updated by what changed since it was computed (a new pair, the entries of its other axis that moved).

Memory: a parameter with a single permuted axis (embeddings, norms, biases, heads) contributes a similarity
matrix that does not depend on the other groups, so :class:`GradientPairs` adds it up once and drops the
gradients; only parameters with two permuted axes (the projections inside the layers) keep their gradients,
once, stacked over pairs in float32 (similarities are float32 matmuls; objectives are summed in float64), in
buffers sized for the pairs to come (``capacity``), so that memory grows by one pair per step and no more.
Example::

    pairs = GradientPairs(spec)
    pairs.add(source_grads, target_grads)      # once per trajectory step
    perm, info = match_permutation(spec, pairs)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from hf_efftrain.transfer.groups import Group, tolerance
from hf_efftrain.transfer.spec import Axis, Permutation, PermutationSpec

RoleKey = tuple[str, str]  # (group, role)
Progress = Callable[[int, int, int], None]
"""``progress(sweep, solved, planned)`` after each group solve: solves so far, and those plus the ones left in
the current sweep (a change can add more)."""


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


def _gram(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y @ x.T``; columns where either side is zero (embedding rows no batch token used) are skipped."""
    if x.shape[1] > 4 * x.shape[0]:
        used = (x != 0).any(0) & (y != 0).any(0)
        if int(used.sum()) < x.shape[1] // 2:
            x, y = x[:, used], y[:, used]
    return y @ x.T


@dataclass(frozen=True)
class _Term:
    """A cached similarity term: the other axis's states and gather index it was computed under, pairs summed."""

    states: tuple
    gather: torch.Tensor | None
    pairs: int
    value: dict[str, torch.Tensor]
    updates: int = 0  # moved-entry updates since the last rebuild (each adds float32 rounding)


MAX_UPDATES = 16
"""Moved-entry updates of a kept similarity term before it is rebuilt, which bounds its float32 drift."""


def _add(value: dict[str, torch.Tensor], more: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``value + more`` per role, as new tensors (a cached term handed out earlier is never changed in place)."""
    return {**value, **{role: value[role] + term if role in value else term for role, term in more.items()}}


def kept_pair_bytes(spec: PermutationSpec, shapes: Mapping[str, torch.Size], pairs: int) -> int:
    """Bytes :class:`GradientPairs` keeps for ``pairs`` pairs: source and target gradients in float32 of every
    parameter with two permuted axes (``shapes``: parameter name -> shape)."""
    numel = sum(shapes[name].numel() for name, axes in spec.axes.items() if len(axes) > 1 and name in shapes)
    return 2 * pairs * numel * 4


class GradientPairs:
    """Gradient pairs reduced to what :func:`match_permutation` needs (see the module docstring)."""

    def __init__(self, spec: PermutationSpec, capacity: int = 1) -> None:
        """``capacity``: the pairs expected (T for FGMT). Kept gradients live in buffers of that many slots, grown
        by doubling when more come: adding a pair writes one slot instead of copying every earlier pair, and slots
        not yet written take no memory."""
        self.spec = spec
        self.constant: dict[RoleKey, torch.Tensor] = {}
        self.kept: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> [pairs, *shape] source, target
        self._buffers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # kept[name] are views of their front
        self._capacity = max(1, capacity)
        self.count = 0
        # per-parameter similarity terms and objectives, with the group states they were computed under:
        # re-used while those states are the same objects (states are replaced, never changed in place), and
        # brought up to date by what changed since (new pairs, moved entries of the other axis)
        self._terms: dict[tuple[str, str, int], _Term] = {}
        self._inners: dict[str, list[tuple[tuple, float]]] = {}
        axes_of = {name: [{p.group for p in axis.parts} for axis in axes] for name, axes in spec.axes.items()}
        # groups that permute two axes of one parameter (e.g. the residual stream on both sides of a pooler):
        # there the objective is not linear in the group's permutation, so steps are checked exactly
        self.self_coupled = {
            group
            for groups in axes_of.values()
            for group in set().union(*groups)
            if sum(group in g for g in groups) > 1
        }
        # depends[g]: the groups whose permutation enters g's similarity (other axes of parameters g permutes)
        self.depends: dict[str, set[str]] = {name: set() for name in spec.groups}
        for groups in axes_of.values():
            if len(groups) > 1:
                for i, mine in enumerate(groups):
                    others = set().union(*(g for j, g in enumerate(groups) if j != i))
                    for group in mine:
                        self.depends[group] |= others

    def add(self, source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> None:
        """Add one pair: gradients at the source point and at the transferred point (same batches)."""
        for name, axes in self.spec.axes.items():
            if name not in source or name not in target:
                continue
            g, g_prime = source[name].detach().float(), target[name].detach().float()
            if len(axes) > 1:
                self.kept[name] = self._keep(name, g, g_prime)
                continue
            for (key, x), (_, y) in zip(
                _rows_by_part(self.spec, axes[0], g), _rows_by_part(self.spec, axes[0], g_prime), strict=True
            ):
                self.constant[key] = self.constant.get(key, 0) + _gram(y, x)
        self.count += 1
        self._inners = {}

    def _keep(self, name: str, g: torch.Tensor, g_prime: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write pair ``self.count`` of ``name`` into its buffers; the views of every pair so far."""
        buffers = self._buffers.get(name)
        if buffers is None or buffers[0].shape[0] == self.count:
            slots = self._capacity if buffers is None else 2 * self.count
            grown = tuple(torch.empty((slots, *g.shape), dtype=torch.float32) for _ in range(2))
            if buffers is not None:
                grown[0][: self.count], grown[1][: self.count] = buffers
            self._buffers[name] = buffers = grown
        buffers[0][self.count], buffers[1][self.count] = g, g_prime
        return buffers[0][: self.count + 1], buffers[1][: self.count + 1]

    def stacked(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All kept pairs of ``name`` as two ``[pairs, *shape]`` float32 tensors (source, target)."""
        return self.kept[name]

    def permuted_source(self, name: str, perm: Permutation, skip: Axis | None = None) -> torch.Tensor:
        """The stacked source gradients of ``name`` with every axis but ``skip`` permuted."""
        tensor = self.kept[name][0]
        for axis in self.spec.axes[name]:
            if axis is not skip:
                tensor = tensor.index_select(axis.dim + 1, self.spec.index(axis, perm))
        return tensor

    def has_data(self, group: str) -> bool:
        """Whether any pair gives ``group`` a similarity (groups of parameters without gradients are skipped)."""
        if any(g == group for g, _ in self.constant):
            return True
        return any(p.group == group for name in self.kept for axis in self.spec.axes[name] for p in axis.parts)

    def similarity(self, group: str, perm: Permutation) -> dict[str, torch.Tensor]:
        """``S[role][new, old]`` of ``group`` with every other axis permuted by ``perm`` (float32)."""
        linear, coupled = self.similarity_parts(group, perm)
        for role, term in coupled.items():
            linear[role] = linear[role] + term if role in linear else term
        return linear

    def similarity_parts(
        self, group: str, perm: Permutation
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """:meth:`similarity` split into the part that is exact and the linearization of self-coupled parameters.

        For a parameter ``group`` permutes on one axis only, ``score(S, state)`` is that parameter's exact share
        of the objective; for one it permutes on two axes (a pooler on the residual stream) it is not, so
        :meth:`group_objective` scores those few parameters exactly and the rest from the first part."""
        linear = {role: s.clone() for (g, role), s in self.constant.items() if g == group}
        coupled: dict[str, torch.Tensor] = {}
        for name in self.kept:
            axes = self.spec.axes[name]
            mine = [i for i, axis in enumerate(axes) if any(p.group == group for p in axis.parts)]
            out = coupled if len(mine) > 1 else linear
            for index in mine:
                for role, term in self._term(group, name, index, perm).items():
                    out[role] = out[role] + term if role in out else term
        return linear, coupled

    def _term(self, group: str, name: str, index: int, perm: Permutation) -> dict[str, torch.Tensor]:
        """What parameter ``name`` adds to ``group``'s similarity through its axis ``index``.

        The term depends only on the states of the parameter's other axis, so it is kept, and brought up to date
        instead of rebuilt: a pair added since (FGMT adds one per step) adds its own product, and entries of the
        other axis that moved add ``y[:, moved] @ (x[:, new] − x[:, old])ᵀ``. On MiniLM-L6 the residual stream
        moves a quarter to half of its entries per step, so an MLP's 1536×1536 term costs that share of a
        rebuild over every pair. More than half moved, :data:`MAX_UPDATES` updates since the last rebuild, or a
        parameter with more than two permuted axes rebuild it."""
        axes = self.spec.axes[name]
        others = [axis for i, axis in enumerate(axes) if i != index]
        states = tuple(perm[p.group] for axis in others for p in axis.parts)
        key = (group, name, index)
        cached = self._terms.get(key)
        same = cached is not None and all(a is b for a, b in zip(cached.states, states, strict=True))
        if same and cached.pairs == self.count:
            return cached.value
        source, target = self.kept[name]
        if len(others) != 1:
            value = self._product(group, axes[index], self.permuted_source(name, perm, skip=axes[index]), target)
            self._terms[key] = _Term(states, None, self.count, value)
            return value
        dim = others[0].dim + 1  # stacked pairs lead
        gather = self.spec.index(others[0], perm)
        value, done, updates = {}, 0, 0
        if cached is not None and cached.gather is not None:
            moved = (gather != cached.gather).nonzero().squeeze(1)
            if 2 * len(moved) <= len(gather) and cached.updates < MAX_UPDATES:
                value, done, updates = cached.value, cached.pairs, cached.updates + bool(len(moved))
                if len(moved):
                    old = source[:done]
                    x = old.index_select(dim, gather[moved]) - old.index_select(dim, cached.gather[moved])
                    y = target[:done].index_select(dim, moved)
                    value = _add(value, self._product(group, axes[index], x, y))
        if done < self.count:
            x = source[done:].index_select(dim, gather)
            value = _add(value, self._product(group, axes[index], x, target[done:]))
        self._terms[key] = _Term(states, gather, self.count, value, updates)
        return value

    def _product(self, group: str, axis: Axis, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``Σ y_rows @ x_rowsᵀ`` per role of ``group`` along ``axis``, for stacked ``[pairs, *shape]`` tensors."""
        out: dict[str, torch.Tensor] = {}
        for (key, rows_x), (_, rows_y) in zip(
            _rows_by_part(self.spec, axis, x, 1), _rows_by_part(self.spec, axis, y, 1), strict=True
        ):
            if key[0] == group:
                out[key[1]] = out[key[1]] + rows_y @ rows_x.T if key[1] in out else rows_y @ rows_x.T
        return out

    def inner(self, name: str, perm: Permutation) -> float:
        """⟨g', π(g)⟩ of parameter ``name`` summed over the pairs (the last two permutations asked are kept)."""
        states = tuple(perm[p.group] for axis in self.spec.axes[name] for p in axis.parts)
        seen = self._inners.setdefault(name, [])
        for old, value in seen:
            if all(a is b for a, b in zip(old, states, strict=True)):
                return value
        value = _inner(self.kept[name][1], self.permuted_source(name, perm))
        seen[:] = [*seen[-1:], (states, value)]
        return value

    def group_objective(self, group: str, perm: Permutation, linear: dict[str, torch.Tensor] | None = None) -> float:
        """The part of Σ_t ⟨g'_t, π(g_t)⟩ that depends on ``group`` (exact, also for self-coupled groups).

        ``linear`` (the first part of :meth:`similarity_parts` under ``perm``'s other groups) scores every
        parameter permuted by ``group`` on one axis in O(units); only the self-coupled ones are multiplied out."""
        if linear is None:
            linear = self.similarity_parts(group, perm)[0]
        total = self.spec.groups[group].score(linear, perm[group])
        for name in self.kept:
            axes = self.spec.axes[name]
            if sum(any(p.group == group for p in axis.parts) for axis in axes) > 1:
                total += self.inner(name, perm)
        return total


def _diagonal(sim: torch.Tensor, index: torch.Tensor) -> float:
    return float(sim[torch.arange(len(index)), index].double().sum())


def _inner(a: torch.Tensor, b: torch.Tensor) -> float:
    """⟨a, b⟩ of stacked pairs with exact float32 products summed in float64 (a float32 sum would drift between
    permutations); one pair at a time, which keeps the float64 products in cache (~6× faster on MiniLM-L6)."""
    return sum(float((a[p].double() * b[p]).sum()) for p in range(len(a)))


@dataclass(frozen=True)
class MatchInfo:
    """How the coordinate descent went: sweeps, group solves, the final objective, whether it converged."""

    sweeps: int
    objective: float
    converged: bool
    solves: int = 0


def objective(spec: PermutationSpec, pairs: GradientPairs, perm: Permutation) -> float:
    """Σ_t ⟨g'_t, π(g_t)⟩ over the permuted parameters (unpermuted ones only add a constant)."""
    total = 0.0
    for (group, role), sim in pairs.constant.items():
        total += _diagonal(sim, spec.groups[group].composite(perm[group], role))
    for name in pairs.kept:
        total += pairs.inner(name, perm)
    return total


def match_permutation(
    spec: PermutationSpec,
    pairs: GradientPairs,
    init: Permutation | None = None,
    max_sweeps: int = 100,
    progress: Progress | None = None,
    workers: int | None = None,
    stay: float = 0.0,
    fixed: frozenset[str] = frozenset(),
    anchor: Permutation | None = None,
) -> tuple[Permutation, MatchInfo]:
    """Coordinate descent of linear assignments over the groups, from ``init`` (default: identity).

    ``stay`` > 0 maximizes the objective plus a bonus for every unit left where ``init`` put it: ``stay``
    standard deviations of that unit's similarity row, so a unit moves only for a clear gain. With few gradient
    batches much of the similarity is noise (on MiniLM-L6 an exact matching moves ~1520 of 1536 MLP units, and
    re-solving after the residual stream changed moves ~1500 again); the prior keeps the permutation where the
    evidence does not point elsewhere. It is a trade-off, not a free speed-up: on MiniLM-L6's MLP similarities
    stay=1 makes an assignment 1.4–4.4× faster for 92–71 % of the exact gain (``docs/transfer.md``), and on tiny
    test models stay=0.1 already keeps some planted units in place. ``stay=0`` is the plain objective; the
    reported objective never includes the bonus. ``anchor`` moves the bonus to another permutation than ``init``
    (the identity: a prior that source and target units already correspond). Groups in ``fixed`` keep their
    ``init`` state.

    A sweep visits the groups in spec order and solves those marked *dirty*: all at first, then only the
    ones whose similarity changed because a group they depend on changed (see the module docstring). This
    gives the permutation that re-solving every group every sweep would give, with far fewer solves.
    Consecutive groups that do not depend on each other (the layers' groups, once the residual stream is
    fixed) are solved together on ``workers`` threads (default: torch's thread count, at most 4); the
    assignment solver releases the GIL, and the result is the same as solving them one after another.
    """
    perm = dict(init) if init is not None else spec.identity()
    anchor = (dict(anchor) if anchor is not None else dict(perm)) if stay > 0 else None
    order = [name for name in spec.groups if name not in fixed and pairs.has_data(name)]
    dependents = {name: {g for g in order if name in pairs.depends[g]} for name in order}
    workers = workers or max(1, min(4, torch.get_num_threads()))
    dirty, sweeps, solves = set(order), 0, 0
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        while dirty and sweeps < max_sweeps:
            sweeps += 1
            solved, position = 0, 0
            while True:
                batch, position = _independent_batch(pairs, order, position, dirty)
                if not batch:
                    break
                dirty -= set(batch)
                run = pool.map if pool is not None and len(batch) > 1 else map
                results = run(lambda n: _improve(spec, pairs, perm, n, anchor, stay), batch)
                for name, candidate in zip(batch, results, strict=True):
                    if candidate is not None:
                        perm[name] = candidate
                        dirty |= dependents[name]
                    solved += 1
                    if progress is not None:
                        left = sum(1 for g in order[position:] if g in dirty)
                        progress(sweeps, solves + solved, solves + solved + left)
            solves += solved
    return perm, MatchInfo(sweeps, objective(spec, pairs, perm), not dirty, solves)


def _independent_batch(pairs: GradientPairs, order: list[str], start: int, dirty: set[str]) -> tuple[list[str], int]:
    """The next dirty groups from ``order[start:]`` that can be solved at once, and where the next batch starts.

    A batch stops before a group linked (either way) to one already in it, dirty or not — a clean group could
    become dirty and must then be solved in this sweep, in order — and self-coupled groups are solved alone."""
    batch: list[str] = []
    for position in range(start, len(order)):
        name = order[position]
        linked = any(name in pairs.depends[b] or b in pairs.depends[name] for b in batch)
        if name not in dirty:
            if linked:
                return batch, position
            continue
        if batch and (linked or name in pairs.self_coupled):
            return batch, position
        batch.append(name)
        if name in pairs.self_coupled:
            return batch, position + 1
    return batch, len(order)


def _improve(
    spec: PermutationSpec,
    pairs: GradientPairs,
    perm: Permutation,
    name: str,
    anchor: Permutation | None = None,
    stay: float = 0.0,
) -> object | None:
    """Group ``name`` solved with the others fixed: its new state, or None when that does not improve."""
    group = spec.groups[name]
    linear, coupled = pairs.similarity_parts(name, perm)
    if anchor is not None:
        linear = _with_stay_bonus(group, linear, anchor[name], stay)
    sim = {r: linear[r] + coupled[r] if r in coupled else linear[r] for r in linear} | {
        r: t for r, t in coupled.items() if r not in linear
    }
    candidate = group.solve(sim, perm[name])
    if coupled:  # linearized step: keep it only if the true objective rises
        old = pairs.group_objective(name, perm, linear)
        new = pairs.group_objective(name, {**perm, name: candidate}, linear)
    else:
        old, new = group.score(sim, perm[name]), group.score(sim, candidate)
    return candidate if new > old + tolerance(sim) else None


def _with_stay_bonus(
    group: Group, similarity: dict[str, torch.Tensor], anchor: object, stay: float
) -> dict[str, torch.Tensor]:
    """``similarity`` plus ``stay`` row standard deviations on the entries that keep each unit at ``anchor``."""
    out = {}
    for role, sim in similarity.items():
        rows = torch.arange(sim.shape[0])
        bonus = stay * sim.float().std(dim=1, correction=0) if sim.shape[1] > 1 else torch.zeros(sim.shape[0])
        out[role] = sim.clone()
        out[role][rows, group.composite(anchor, role)] += bonus.to(sim.dtype)
    return out
