"""Permutation groups: the independent symmetries of a network, and how to solve each one.

A network is unchanged when the hidden units of one layer are permuted consistently everywhere they are read
and written. Each such family of units is a *group*; a parameter axis names the group (and the *role*) that
permutes it. What the rest of the package asks of a group is the :class:`PermutationGroup` protocol; two kinds
implement it and cover MLPs, CNNs and transformers:

* :class:`FreeGroup` — any permutation of ``size`` units (MLP hidden units, CNN channels, the residual stream).
* :class:`AttentionGroup` — the block structure of multi-head attention. Whole heads move together (κ over
  k/v heads and ρ over the query heads inside each k/v group, so GQA groups stay intact); inside a head one
  permutation τ is shared by q and k rows (it cancels in q·k) and another, υ, by v rows and output columns.
  Under RoPE dimensions are tied to frequencies, so τ is the identity.

Every group *solves* its own step of the coordinate descent: given similarity matrices
``S[role][new, old] = Σ ⟨g'_new, g_old⟩`` it returns the permutation that maximizes ``Σ_r S[r, P[r]]``
(a linear assignment, :func:`scipy.optimize.linear_sum_assignment`). Example::

    group = FreeGroup(4)
    perm = group.solve({"": torch.eye(4)[[2, 0, 1, 3]]}, group.identity())
    group.composite(perm, "")          # tensor([2, 0, 1, 3])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def assignment(similarity: torch.Tensor) -> torch.Tensor:
    """The permutation ``P`` maximizing ``Σ_r similarity[r, P[r]]``."""
    rows, cols = linear_sum_assignment(similarity.detach().double().cpu().numpy(), maximize=True)
    perm = np.empty_like(cols)
    perm[rows] = cols
    return torch.as_tensor(perm, dtype=torch.long)


def tolerance(similarity: dict[str, torch.Tensor]) -> float:
    """A gain below this is rounding noise: relative to the size of the matrices (gradients can be ~1e-9)."""
    return 1e-10 * sum(float(s.abs().max()) * s.shape[0] for s in similarity.values() if s.numel())


def _diagonal_sum(similarity: torch.Tensor, perm: torch.Tensor) -> float:
    return float(similarity.double()[torch.arange(len(perm)), perm].sum())


@runtime_checkable
class PermutationGroup(Protocol):
    """What a spec, the matching and the engine need from a symmetry; implement it to add a new kind.

    A group has *roles*: the kinds of axis it permutes (a free group has one, ``""``; attention has q, k, v, o,
    which move differently under one state). Its *state* is any immutable value (a new state replaces the old
    one: the matching caches work by identity). Everything else is expressed through :meth:`composite`, the
    index each role's axis is gathered with, so specs can apply a state without knowing the group's kind.
    """

    def roles(self) -> dict[str, int]:
        """Role name → number of entries it permutes (the length of :meth:`composite` for that role)."""
        ...

    def identity(self) -> Any:
        """The state that moves nothing; the matching starts there unless warm-started."""
        ...

    def random(self, generator: torch.Generator) -> Any:
        """A uniformly drawn state among the allowed ones (tests plant it and check it is recovered)."""
        ...

    def composite(self, state: Any, role: str) -> torch.Tensor:
        """Index of the old entry that each new entry of ``role``'s axis reads (``new = old[index]``)."""
        ...

    def score(self, similarity: dict[str, torch.Tensor], state: Any) -> float:
        """``Σ_role Σ_r similarity[role][r, composite(state, role)[r]]``, in float64 (roles absent count 0)."""
        ...

    def solve(self, similarity: dict[str, torch.Tensor], state: Any) -> Any:
        """The state maximizing :meth:`score` for these similarities (``state``: the current one, a fallback)."""
        ...

    def equal(self, a: Any, b: Any) -> bool:
        """Whether two states permute every role the same way."""
        ...

    def to_json(self, state: Any) -> object:
        """A JSON-serializable form of ``state`` for reports."""
        ...


@dataclass(frozen=True)
class FreeGroup:
    """Any permutation of ``size`` units; its state is one index tensor (new unit r reads old unit P[r])."""

    size: int

    def roles(self) -> dict[str, int]:
        """One unnamed role covering all ``size`` units."""
        return {"": self.size}

    def identity(self) -> torch.Tensor:
        """``arange(size)``: every unit stays."""
        return torch.arange(self.size)

    def random(self, generator: torch.Generator) -> torch.Tensor:
        """A uniform random permutation of the units."""
        return torch.randperm(self.size, generator=generator)

    def composite(self, state: torch.Tensor, role: str) -> torch.Tensor:
        """The state itself: there is only one role."""
        return state

    def score(self, similarity: dict[str, torch.Tensor], state: torch.Tensor) -> float:
        """Sum of the similarity entries the permutation picks (0 without a similarity)."""
        return _diagonal_sum(similarity[""], state) if "" in similarity else 0.0

    def solve(self, similarity: dict[str, torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """One exact linear assignment; ``state`` is kept when no parameter gave this group a similarity."""
        return assignment(similarity[""]) if "" in similarity else state

    def equal(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        """Same index tensor."""
        return bool(torch.equal(a, b))

    def to_json(self, state: torch.Tensor) -> list[int]:
        """The index list, old unit per new unit."""
        return state.tolist()


@dataclass(frozen=True)
class HeadPermutation:
    """State of an :class:`AttentionGroup`; ρ, τ, υ are indexed by the *old* k/v head they belong to.

    ``kappa[a]``: old k/v head placed at slot a; ``rho[a', b]``: old query head (within group a') at member b;
    ``tau[a', j]``: old q/k dimension at dimension j; ``upsilon[a', j]``: same for v rows / output columns.
    """

    kappa: torch.Tensor
    rho: torch.Tensor
    tau: torch.Tensor
    upsilon: torch.Tensor


@dataclass(frozen=True)
class AttentionGroup:
    """Block permutations of one attention layer (see the module docstring). Roles: q, k, v, o."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    rotary: bool = False

    @property
    def group_size(self) -> int:
        """Query heads per k/v head (1 for multi-head attention, more under GQA)."""
        return self.num_heads // self.num_kv_heads

    def roles(self) -> dict[str, int]:
        """q and o span all query heads' dimensions; k and v only the k/v heads' (fewer under GQA)."""
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        return {"q": q_size, "k": kv_size, "v": kv_size, "o": q_size}

    def identity(self) -> HeadPermutation:
        """Every head and every dimension in place."""
        k, g, d = self.num_kv_heads, self.group_size, self.head_dim
        return HeadPermutation(
            torch.arange(k), torch.arange(g).repeat(k, 1), torch.arange(d).repeat(k, 1), torch.arange(d).repeat(k, 1)
        )

    def random(self, generator: torch.Generator) -> HeadPermutation:
        """A random allowed state: k/v heads, query heads within their group, τ (identity under RoPE) and υ."""
        k, g, d = self.num_kv_heads, self.group_size, self.head_dim

        def rows(n: int, count: int) -> torch.Tensor:
            return torch.stack([torch.randperm(n, generator=generator) for _ in range(count)])

        tau = torch.arange(d).repeat(k, 1) if self.rotary else rows(d, k)
        return HeadPermutation(torch.randperm(k, generator=generator), rows(g, k), tau, rows(d, k))

    def composite(self, state: HeadPermutation, role: str) -> torch.Tensor:
        """Index of the old row/column read by each new one, for one role."""
        g, d = self.group_size, self.head_dim
        kv = state.kappa[:, None, None]  # [K, 1, 1] old k/v head at each slot
        inner = state.tau if role in ("q", "k") else state.upsilon
        if role in ("k", "v"):
            return (kv[:, 0] * d + inner[kv[:, 0, 0]]).reshape(-1)
        head = kv * g + state.rho[state.kappa][:, :, None]  # [K, g, 1] old query head
        dims = inner[state.kappa][:, None, :]  # [K, 1, d]
        return (head * d + dims).reshape(-1)

    def equal(self, a: HeadPermutation, b: HeadPermutation) -> bool:
        """Compared through :meth:`composite`: states that move every row the same way are equal."""
        return all(torch.equal(self.composite(a, r), self.composite(b, r)) for r in self.roles())

    def to_json(self, state: HeadPermutation) -> dict[str, list]:
        """κ, ρ, τ, υ as nested lists."""
        return {name: getattr(state, name).tolist() for name in ("kappa", "rho", "tau", "upsilon")}

    def score(self, similarity: dict[str, torch.Tensor], state: HeadPermutation) -> float:
        """Picked similarity entries summed over the roles present."""
        return sum(_diagonal_sum(s, self.composite(state, role)) for role, s in similarity.items())

    # ---- solving -----------------------------------------------------------------------------------------
    def solve(self, similarity: dict[str, torch.Tensor], state: HeadPermutation) -> HeadPermutation:
        """Best head permutation: score every (new slot, old k/v head) pairing with its own best within-head
        permutations, then assign pairings. Exact for multi-head attention; for GQA the query heads of a
        pairing and the within-head permutations are alternated until they stop improving."""
        k, g, d = self.num_kv_heads, self.group_size, self.head_dim
        sim = {r: similarity.get(r, torch.zeros(n, n)).double() for r, n in self.roles().items()}
        blocks = {
            "q": sim["q"].reshape(k, g, d, k, g, d),
            "o": sim["o"].reshape(k, g, d, k, g, d),
            "k": sim["k"].reshape(k, d, k, d),
            "v": sim["v"].reshape(k, d, k, d),
        }
        if g == 1:
            value, best = self._pairings_one_query_head(blocks)
        else:
            value = torch.empty(k, k, dtype=torch.float64)
            best = {}
            for a in range(k):
                for a_old in range(k):
                    value[a, a_old], best[a, a_old] = self._pairing(blocks, a, a_old)
        kappa = assignment(value)
        rho, tau, upsilon = state.rho.clone(), state.tau.clone(), state.upsilon.clone()
        for a, a_old in enumerate(kappa.tolist()):
            rho[a_old], tau[a_old], upsilon[a_old] = best[a, a_old]
        return HeadPermutation(kappa, rho, tau, upsilon)

    def _pairings_one_query_head(
        self, blocks: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
        """:meth:`_pairing` for all (slot, old head) pairings at once when each k/v head has one query head
        (multi-head attention): τ and υ are then independent assignments, with no alternation to run."""
        k, d = self.num_kv_heads, self.head_dim
        qk = blocks["k"].permute(0, 2, 1, 3) + blocks["q"][:, 0, :, :, 0].permute(0, 2, 1, 3)  # [a, a', j, j']
        vo = blocks["v"].permute(0, 2, 1, 3) + blocks["o"][:, 0, :, :, 0].permute(0, 2, 1, 3)
        identity, rho = torch.arange(d), torch.zeros(1, dtype=torch.long)
        value = torch.empty(k, k, dtype=torch.float64)
        best = {}
        for a in range(k):
            for a_old in range(k):
                tau = identity if self.rotary else assignment(qk[a, a_old])
                upsilon = assignment(vo[a, a_old])
                value[a, a_old] = qk[a, a_old, identity, tau].sum() + vo[a, a_old, identity, upsilon].sum()
                best[a, a_old] = (rho, tau, upsilon)
        return value, best

    def _pairing(
        self, blocks: dict[str, torch.Tensor], a: int, a_old: int, max_rounds: int = 10
    ) -> tuple[float, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Best (ρ, τ, υ) when old k/v head ``a_old`` (with its query heads) moves to slot ``a``, and its score."""
        g, d = self.group_size, self.head_dim
        q = blocks["q"][a, :, :, a_old].permute(0, 2, 1, 3)  # [b, b', j, j']
        o = blocks["o"][a, :, :, a_old].permute(0, 2, 1, 3)
        kb, vb = blocks["k"][a, :, a_old], blocks["v"][a, :, a_old]
        identity = torch.arange(d)
        rho = torch.arange(g)
        if g > 1:  # start from the best member pairing with free within-head permutations per block
            free = torch.tensor(
                [[_best(o[b, c]) + (0.0 if self.rotary else _best(q[b, c])) for c in range(g)] for b in range(g)]
            )
            rho = assignment(free)
        score = -float("inf")
        for _ in range(max_rounds):
            members = torch.arange(g)
            tau = identity if self.rotary else assignment(kb + q[members, rho].sum(0))
            upsilon = assignment(vb + o[members, rho].sum(0))
            member_value = q[:, :, identity, tau].sum(-1) + o[:, :, identity, upsilon].sum(-1)  # [b, b']
            if g > 1:
                rho = assignment(member_value)
            new = float(member_value[members, rho].sum() + kb[identity, tau].sum() + vb[identity, upsilon].sum())
            if new <= score + tolerance({"q": q.reshape(-1, d), "o": o.reshape(-1, d)}) or g == 1:
                score = max(score, new)
                break
            score = new
        return score, (rho, tau, upsilon)


def _best(matrix: torch.Tensor) -> float:
    """Value of the best assignment of a square matrix."""
    perm = assignment(matrix)
    return float(matrix[torch.arange(len(perm)), perm].sum())


Group = PermutationGroup
"""Type of a spec's groups (kept as a short name for annotations)."""
