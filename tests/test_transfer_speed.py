"""The faster matching gives the permutations of the old one, and does less work for them.

The reference below is the matching before the speed-up, kept here only: float64 similarities rebuilt from every
gradient, every group re-solved in every sweep from the identity, until a sweep changes nothing.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_efftrain.testing import tiny_inputs, tiny_model
from hf_efftrain.transfer import (
    AttentionGroup,
    GradientPairs,
    LossGradients,
    match_permutation,
    permutation_spec,
    sequential_spec,
    transfer_trajectory,
)
from hf_efftrain.transfer.groups import tolerance
from hf_efftrain.transfer.matching import _independent_batch, _rows_by_part

pytestmark = pytest.mark.usefixtures("one_thread")


def _gradient_pairs(family: str, steps: int = 2):
    source, target = tiny_model(family, task="classification"), tiny_model(family, task="classification", seed=1)
    batches = []
    for step in range(steps):
        batch = tiny_inputs(source, batch=4, seq=7, seed=10 + step)
        batch["labels"] = torch.randint(0, 2, (4,), generator=torch.Generator().manual_seed(step))
        batches.append([batch])
    oracle = LossGradients(tiny_model(family, task="classification"), batches)
    grads = [(oracle(source.state_dict(), t), oracle(target.state_dict(), t)) for t in range(steps)]
    return permutation_spec(source), grads


def _reference_similarity(spec, grads, group: str, perm) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for g, g_prime in grads:
        for name, axes in spec.axes.items():
            for axis in axes:
                if all(p.group != group for p in axis.parts):
                    continue
                x = spec.permute_tensor(name, g[name].double(), perm, skip=axis)
                for (key, rows_x), (_, rows_y) in zip(
                    _rows_by_part(spec, axis, x), _rows_by_part(spec, axis, g_prime[name].double()), strict=True
                ):
                    if key[0] == group:
                        out[key[1]] = out.get(key[1], 0) + rows_y @ rows_x.T
    return out


def _reference_objective(spec, grads, group: str, perm) -> float:
    names = [n for n, axes in spec.axes.items() if any(p.group == group for a in axes for p in a.parts)]
    return sum(
        float((g_prime[n].double() * spec.permute_tensor(n, g[n].double(), perm)).sum())
        for g, g_prime in grads
        for n in names
    )


def _reference_match(spec, grads):
    """The old matching: returns the permutation and the number of group solves."""
    coupled = GradientPairs(spec).self_coupled
    perm, solves, improved = spec.identity(), 0, True
    while improved:
        improved = False
        for name, group in spec.groups.items():
            sim = _reference_similarity(spec, grads, name, perm)
            if not sim:
                continue
            solves += 1
            candidate = group.solve(sim, perm[name])
            if name in coupled:
                old = _reference_objective(spec, grads, name, perm)
                new = _reference_objective(spec, grads, name, {**perm, name: candidate})
            else:
                old, new = group.score(sim, perm[name]), group.score(sim, candidate)
            if new > old + tolerance(sim):
                perm[name], improved = candidate, True
    return perm, solves


@pytest.mark.parametrize(("family", "workers"), [("bert", 1), ("gpt2", 1), ("llama", 1), ("bert", 2), ("llama", 3)])
def test_matching_gives_the_old_permutation_with_fewer_solves(family, workers):
    spec, grads = _gradient_pairs(family)
    pairs = GradientPairs(spec)
    for g, g_prime in grads:
        pairs.add(g, g_prime)
    seen = []
    perm, info = match_permutation(
        spec, pairs, progress=lambda sweep, done, planned: seen.append((done, planned)), workers=workers
    )
    expected, old_solves = _reference_match(spec, grads)
    assert spec.equal(perm, expected)
    assert not spec.equal(perm, spec.identity())  # a real matching, not a trivial one
    assert info.converged and info.solves < old_solves
    assert [done for done, _ in seen] == list(range(1, info.solves + 1))  # the bar moves at every group
    assert all(planned >= done for done, planned in seen) and seen[-1][0] == seen[-1][1]


def test_gradients_are_kept_once_in_float32():
    spec, grads = _gradient_pairs("gpt2", steps=3)
    pairs = GradientPairs(spec)
    for g, g_prime in grads:
        pairs.add(g, g_prime)
    for name, (source, target) in pairs.kept.items():
        assert source.dtype == target.dtype == torch.float32
        assert source.shape == (3, *grads[0][0][name].shape)
        assert torch.equal(target[2], grads[2][1][name])


def test_similarities_are_updated_for_moved_entries_and_new_pairs_without_a_rebuild(monkeypatch):
    """A few residual entries moved, then a pair added: the MLP similarity is updated from what changed only,
    and equals the similarity rebuilt from every gradient in float64; most entries moved rebuilds it."""
    spec, grads = _gradient_pairs("bert", steps=3)
    pairs = GradientPairs(spec)
    for g, g_prime in grads[:2]:
        pairs.add(g, g_prime)
    perm = spec.identity()
    pairs.similarity("mlp.0", perm)  # cached under the identity
    multiplied: list[tuple[int, ...]] = []  # shapes of the stacked source gradients multiplied
    product = pairs._product
    monkeypatch.setattr(
        pairs, "_product", lambda group, axis, x, y: multiplied.append(tuple(x.shape)) or product(group, axis, x, y)
    )

    def check(perm, used: list) -> None:
        fresh = _reference_similarity(spec, used, "mlp.0", perm)
        got = pairs.similarity("mlp.0", perm)
        assert got.keys() == fresh.keys()
        for role in fresh:
            torch.testing.assert_close(got[role].double(), fresh[role], rtol=1e-5, atol=1e-6)

    swapped = spec.identity()["residual"].clone()
    swapped[[0, 3, 5]] = swapped[[3, 5, 0]]  # 3 of 16 residual entries move
    perm = {**perm, "residual": swapped}
    check(perm, grads[:2])
    assert multiplied and all(shape[0] == 2 and 3 in shape[1:] and 16 not in shape for shape in multiplied)
    multiplied.clear()
    pairs.add(*grads[2])
    check(perm, grads)
    assert multiplied and all(shape[0] == 1 for shape in multiplied)  # only the new pair
    multiplied.clear()
    perm = {**perm, "residual": torch.arange(16).flip(0)}  # every entry moves: rebuilt from the gradients
    check(perm, grads)
    assert multiplied and all(shape[0] == 3 and 16 in shape for shape in multiplied)
    assert not spec.equal(perm, spec.identity())


def test_a_term_updated_max_updates_times_is_rebuilt(monkeypatch):
    """Updates add float32 rounding: after MAX_UPDATES of them the next change rebuilds the term from the gradients."""
    from hf_efftrain.transfer import matching

    monkeypatch.setattr(matching, "MAX_UPDATES", 1)
    spec, grads = _gradient_pairs("bert", steps=2)
    pairs = GradientPairs(spec)
    for g, g_prime in grads:
        pairs.add(g, g_prime)
    multiplied: list[tuple[int, ...]] = []
    product = pairs._product
    monkeypatch.setattr(pairs, "_product", lambda *a: multiplied.append(tuple(a[2].shape)) or product(*a))
    residual = spec.identity()["residual"]
    pairs.similarity("mlp.0", spec.identity())
    for swap in ([0, 1], [2, 3]):  # two small moves: the first is an update, the second a rebuild
        multiplied.clear()
        residual = residual.clone()
        residual[swap] = residual[swap[::-1]]
        got = pairs.similarity("mlp.0", {**spec.identity(), "residual": residual})
        fresh = _reference_similarity(spec, grads, "mlp.0", {**spec.identity(), "residual": residual})
        for role in fresh:
            torch.testing.assert_close(got[role].double(), fresh[role], rtol=1e-5, atol=1e-6)
    assert multiplied and all(16 in shape for shape in multiplied)  # the whole residual axis: rebuilt


def test_warm_start_at_the_optimum_solves_each_group_once():
    spec, grads = _gradient_pairs("bert")
    pairs = GradientPairs(spec)
    for g, g_prime in grads:
        pairs.add(g, g_prime)
    perm, _ = match_permutation(spec, pairs)
    again, info = match_permutation(spec, pairs, init=perm)
    assert spec.equal(again, perm)
    assert info.sweeps == 1 and info.solves == len(spec.groups)


@pytest.mark.parametrize("rotary", [False, True])
def test_multi_head_pairings_at_once_match_the_pairwise_solver(rotary):
    """The batched τ/υ assignments for one query head per k/v head give what the general solver gives."""
    group = AttentionGroup(num_heads=4, num_kv_heads=4, head_dim=5, rotary=rotary)
    gen = torch.Generator().manual_seed(3)
    sim = {role: torch.randn(n, n, generator=gen) for role, n in group.roles().items()}
    k, d = group.num_kv_heads, group.head_dim
    blocks = {
        "q": sim["q"].double().reshape(k, 1, d, k, 1, d),
        "o": sim["o"].double().reshape(k, 1, d, k, 1, d),
        "k": sim["k"].double().reshape(k, d, k, d),
        "v": sim["v"].double().reshape(k, d, k, d),
    }
    value, best = group._pairings_one_query_head(blocks)
    for a in range(k):
        for a_old in range(k):
            score, (rho, tau, upsilon) = group._pairing(blocks, a, a_old)
            assert value[a, a_old].item() == pytest.approx(score, rel=1e-12)
            assert torch.equal(tau, best[a, a_old][1]) and torch.equal(upsilon, best[a, a_old][2])


def test_transfer_shows_matching_progress(capsys):
    model = tiny_model("gpt2", task="classification")
    spec = permutation_spec(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    end = {n: v + 0.05 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1)) for n, v in start.items()}
    target = tiny_model("gpt2", task="classification", seed=1).state_dict()
    oracle = LossGradients(tiny_model("gpt2", task="classification"), [[tiny_inputs(model, batch=4, seq=7, seed=1)]])
    batch = oracle.batches[0][0]
    batch["labels"] = torch.tensor([0, 1, 0, 1])
    steps = list(transfer_trajectory([start, end], target, spec, oracle, progress=True))
    assert len(steps) == 1 and steps[0].match.solves >= len(spec.groups)
    assert "matching 1/1 sweep 1" in capsys.readouterr().err


def test_independent_batches_follow_the_dependencies():
    spec, grads = _gradient_pairs("bert", steps=1)
    pairs = GradientPairs(spec)
    pairs.add(*grads[0])
    order = list(spec.groups)
    assert _independent_batch(pairs, order, 0, set(order)) == (["residual"], 1)  # self-coupled: alone
    assert _independent_batch(pairs, order, 1, set(order)) == (order[1:], len(order))  # all layers at once
    assert _independent_batch(pairs, order, 1, {order[2]}) == ([order[2]], len(order))
    torch.manual_seed(0)
    chain = sequential_spec(nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3)))
    pairs = GradientPairs(chain)
    first, second = list(chain.groups)
    assert pairs.depends[first] == {second} and pairs.depends[second] == {first}
    assert _independent_batch(pairs, [first, second], 0, {first, second}) == ([first], 1)
    assert _independent_batch(pairs, [first, second], 0, {first}) == ([first], 1)  # a clean linked group stops it


def test_both_group_kinds_follow_the_protocol():
    from hf_efftrain.transfer import FreeGroup, PermutationGroup

    for group in (FreeGroup(4), AttentionGroup(num_heads=4, num_kv_heads=2, head_dim=3)):
        assert isinstance(group, PermutationGroup)
        state = group.random(torch.Generator().manual_seed(0))
        for role, size in group.roles().items():
            assert sorted(group.composite(state, role).tolist()) == list(range(size))
    assert not isinstance(object(), PermutationGroup)


def test_stay_keeps_units_unless_the_gradients_clearly_move_them():
    """stay=0 is the plain matching; a huge stay keeps the warm start; a moderate one moves fewer units."""
    spec, grads = _gradient_pairs("bert")
    pairs = GradientPairs(spec)
    for g, g_prime in grads:
        pairs.add(g, g_prime)
    plain, plain_info = match_permutation(spec, pairs)
    same, _ = match_permutation(spec, pairs, stay=0.0)
    assert spec.equal(same, plain) and not spec.equal(plain, spec.identity())
    kept, kept_info = match_permutation(spec, pairs, stay=1e6)
    assert spec.equal(kept, spec.identity()) and kept_info.converged
    assert kept_info.objective <= plain_info.objective  # the bonus is never part of the reported objective

    free = [n for n, g in spec.groups.items() if hasattr(g, "size")]

    def moved(perm) -> int:
        return sum(int((perm[n] != torch.arange(len(perm[n]))).sum()) for n in free)

    some, some_info = match_permutation(spec, pairs, stay=1.0)
    assert moved(some) < moved(plain)
    assert kept_info.objective <= some_info.objective <= plain_info.objective


@pytest.mark.parametrize("capacity", [1, 3])
def test_kept_pairs_grow_in_place_and_equal_the_stacked_gradients(capacity):
    """A new pair writes one slot of the buffers sized for the pairs to come (no copy of the earlier pairs);
    past that size the buffers double, and the kept pairs still equal every gradient added, in order."""
    spec, grads = _gradient_pairs("bert", steps=3)
    pairs = GradientPairs(spec, capacity=capacity)
    starts = []
    for g, g_prime in grads:
        pairs.add(g, g_prime)
        starts.append({name: kept[0].data_ptr() for name, kept in pairs.kept.items()})
    assert pairs.kept
    for name, (source, target) in pairs.kept.items():
        assert torch.equal(source, torch.stack([g[name].float() for g, _ in grads]))
        assert torch.equal(target, torch.stack([g_prime[name].float() for _, g_prime in grads]))
    moved = [starts[i] != starts[i - 1] for i in (1, 2)]
    assert moved == ([False, False] if capacity == 3 else [True, True])  # 1 -> 2 -> 4 slots


def test_an_identity_anchor_pulls_back_to_the_identity_from_any_warm_start():
    """stay_at the identity: a huge prior returns the identity even when the warm start is elsewhere, where the
    default anchor (the warm start) keeps that start; a moderate one moves fewer units than plain matching."""
    spec, grads = _gradient_pairs("bert")
    pairs = GradientPairs(spec)
    for g, g_prime in grads:
        pairs.add(g, g_prime)
    elsewhere = spec.random_permutation(seed=3)
    kept, _ = match_permutation(spec, pairs, elsewhere, stay=1e6)
    assert spec.equal(kept, elsewhere)
    home, _ = match_permutation(spec, pairs, elsewhere, stay=1e6, anchor=spec.identity())
    assert spec.equal(home, spec.identity())
    plain, _ = match_permutation(spec, pairs, elsewhere)
    free = [n for n, g in spec.groups.items() if hasattr(g, "size")]

    def moved(perm) -> int:
        return sum(int((perm[n] != torch.arange(len(perm[n]))).sum()) for n in free)

    some, _ = match_permutation(spec, pairs, elsewhere, stay=1.0, anchor=spec.identity())
    assert moved(some) < moved(plain)


def test_stay_at_is_checked_by_the_config_and_the_engine():
    from hf_efftrain.errors import TransferError
    from hf_efftrain.transfer import TransferConfig, transfer_trajectory

    with pytest.raises(TransferError, match="unknown stay_at 'start'"):
        TransferConfig(stay_at="start")
    path = [{"w": torch.zeros(2)}, {"w": torch.ones(2)}]
    with pytest.raises(TransferError, match="unknown stay_at"):
        next(transfer_trajectory(path, path[0], None, None, stay_at="start"))
