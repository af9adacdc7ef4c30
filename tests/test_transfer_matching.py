"""Gradient matching recovers a known permutation, and the transfer loops do what the paper says.

The decisive test: the target is a permuted copy of the source's initialization, so the transferred trajectory
must be exactly the permuted source trajectory, and the matched permutation exactly the hidden one.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hf_efftrain.errors import TransferError
from hf_efftrain.testing import tiny_inputs, tiny_model
from hf_efftrain.transfer import (
    GradientPairs,
    InterpolatedPath,
    LossGradients,
    match_permutation,
    permutation_spec,
    sequential_spec,
    spacing,
    transfer_trajectory,
)
from hf_efftrain.transfer.matching import objective

pytestmark = pytest.mark.usefixtures("one_thread")


def _batches(model, steps: int) -> list[list[dict]]:
    out = []
    for step in range(steps):
        batch = tiny_inputs(model, batch=4, seq=7, seed=10 + step)
        batch["labels"] = torch.randint(0, 2, (4,), generator=torch.Generator().manual_seed(step))
        out.append([batch])
    return out


def _random_walk(params: dict[str, torch.Tensor], steps: int, scale: float = 0.05) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    path = [params]
    for _ in range(steps):
        path.append({n: v + scale * torch.randn(v.shape, generator=gen) for n, v in path[-1].items()})
    return path


@pytest.mark.parametrize(("family", "method"), [("bert", "fgmt"), ("gpt2", "fgmt"), ("llama", "fgmt"), ("gpt2", "gmt")])
def test_transfer_to_a_permuted_copy_recovers_the_permutation(family, method):
    model = tiny_model(family, task="classification")
    spec = permutation_spec(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    path = _random_walk(start, steps=3)
    truth = spec.random_permutation(seed=7)
    gradients = LossGradients(tiny_model(family, task="classification"), _batches(model, 3))
    steps = list(transfer_trajectory(path, spec.apply(start, truth), spec, gradients, method=method))
    assert len(steps) == 3
    for step in steps:
        assert spec.equal(step.permutation, truth)
        expected = spec.apply(path[step.step], truth)
        assert all(torch.allclose(step.params[n], expected[n], atol=1e-6) for n in expected)
    assert not spec.equal(spec.identity(), truth)


def test_custom_mlp_transfer_recovers_the_permutation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3))
    spec = sequential_spec(net)
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    path = _random_walk(start, steps=2, scale=0.3)
    truth = spec.random_permutation(seed=1)

    def loss(model, batch):
        return nn.functional.cross_entropy(model(batch["x"]), batch["y"])

    gradients = LossGradients(net, [[{"x": x, "y": y}]], loss_fn=loss)
    *_, last = transfer_trajectory(path, spec.apply(start, truth), spec, gradients, method="fgmt")
    assert spec.equal(last.permutation, truth)


def test_naive_adds_the_unpermuted_update():
    model = tiny_model("gpt2", task="classification")
    spec = permutation_spec(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    path = _random_walk(start, steps=2)
    target = {n: v + 1.0 for n, v in start.items()}

    def never(params, step):
        raise AssertionError("naive transfer must not compute gradients")

    *_, last = transfer_trajectory(path, target, spec, never, method="naive")
    assert all(torch.allclose(last.params[n], target[n] + path[2][n] - start[n]) for n in start)


def test_fgmt_uses_t_pairs_and_gmt_recomputes_all_earlier_points():
    model = tiny_model("gpt2", task="classification")
    spec = permutation_spec(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    path = _random_walk(start, steps=3)
    oracle = LossGradients(tiny_model("gpt2", task="classification"), _batches(model, 3))
    calls = {"fgmt": [], "gmt": []}
    for method, seen in calls.items():

        def gradient(params, step, seen=seen):
            seen.append(step)
            return oracle(params, step)

        list(
            transfer_trajectory(
                path, tiny_model("gpt2", task="classification", seed=1).state_dict(), spec, gradient, method=method
            )
        )
    t = 3
    assert len(calls["fgmt"]) == 2 * t  # one source + one target gradient per step
    assert len(calls["gmt"]) == t + t * (t + 1) // 2  # sources once, targets re-computed: T(T+1)/2


def test_coordinate_descent_never_lowers_the_objective():
    """Self-coupled groups (the residual stream on both sides of the pooler) are checked exactly."""
    source, target = tiny_model("bert", task="classification"), tiny_model("bert", task="classification", seed=1)
    spec = permutation_spec(source)
    oracle = LossGradients(tiny_model("bert", task="classification"), _batches(source, 2))
    pairs = GradientPairs(spec)
    for step in range(2):
        pairs.add(oracle(source.state_dict(), step), oracle(target.state_dict(), step))
    assert "residual" in pairs.self_coupled
    perm, info = match_permutation(spec, pairs)
    assert info.converged
    assert info.objective >= objective(spec, pairs, spec.identity())
    assert math.isclose(info.objective, objective(spec, pairs, perm))


def test_spacings():
    linear, cosine = spacing("linear", 4), spacing("cosine", 4)
    assert linear == [0, 0.25, 0.5, 0.75, 1]
    assert cosine[0] == 0 and cosine[-1] == 1 and all(a < b for a, b in zip(cosine, cosine[1:], strict=False))
    assert cosine[-1] - cosine[-2] < linear[-1] - linear[-2]  # dense near the end
    path = InterpolatedPath({"w": torch.zeros(2)}, {"w": torch.ones(2) * 4}, linear)
    assert torch.equal(path[2]["w"], torch.full((2,), 2.0))
    with pytest.raises(TransferError, match="unknown spacing"):
        spacing("log", 3)
    with pytest.raises(TransferError, match="unknown transfer method"):
        next(transfer_trajectory(path.lambdas and [path[0], path[1]], path[0], None, None, method="sgd"))


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_a_small_stay_still_recovers_a_planted_permutation(family):
    """A permuted copy's gradients single out the truth; a small prior must not hide it. (On these tiny models
    stay=0.1 already keeps some Llama units in place, and 1.0 some BERT ones: the prior is a real trade-off.)"""
    model = tiny_model(family, task="classification")
    spec = permutation_spec(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    path = _random_walk(start, steps=2)
    truth = spec.random_permutation(seed=7)
    gradients = LossGradients(tiny_model(family, task="classification"), _batches(model, 2))
    *_, last = transfer_trajectory(path, spec.apply(start, truth), spec, gradients, stay=0.05)
    assert spec.equal(last.permutation, truth)


def test_negative_stay_is_refused():
    from hf_efftrain.transfer import TransferConfig

    with pytest.raises(TransferError, match="stay must be >= 0"):
        TransferConfig(stay=-1)


def _new_head(model, seed: int) -> dict[str, torch.Tensor]:
    """The model's weights with the classifier head redrawn from ``seed``: a pretrained body shared, a new head."""
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(seed)
    for name in params:
        if name.startswith("classifier."):
            params[name] = 0.02 * torch.randn(params[name].shape, generator=gen)
    return params


def test_groups_of_a_shared_body_are_pinned_to_the_identity():
    """Only the head's seed differs: the layers' groups keep the identity; the residual stream, which the pooler
    carries into the new head, is matched. By default every group is matched, and layer units move."""
    model = tiny_model("bert", task="classification")
    spec = permutation_spec(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    target = _new_head(model, seed=3)
    shared = spec.shared_groups(start, target)
    assert set(spec.groups) - shared == {"residual"}
    path = _random_walk(start, steps=2)
    gradients = LossGradients(tiny_model("bert", task="classification"), _batches(model, 2))
    *_, pinned = transfer_trajectory(path, target, spec, gradients, pin_shared=True)
    identity = spec.identity()
    assert all(spec.groups[g].equal(pinned.permutation[g], identity[g]) for g in shared)
    *_, free = transfer_trajectory(path, target, spec, gradients)  # the paper's default
    assert not all(spec.groups[g].equal(free.permutation[g], identity[g]) for g in shared)


def test_different_inits_pin_nothing():
    model, other = tiny_model("llama", task="classification"), tiny_model("llama", task="classification", seed=1)
    spec = permutation_spec(model)
    assert spec.shared_groups(dict(model.named_parameters()), dict(other.named_parameters())) == frozenset()
