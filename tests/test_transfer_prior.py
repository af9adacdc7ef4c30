"""The matching's prior: the identity for a target that shares the source's pretrained weights, none otherwise."""

from __future__ import annotations

import pytest
import torch

from hf_efftrain.testing import tiny_model
from hf_efftrain.transfer import permutation_spec
from hf_efftrain.transfer.prior import RELATED_SIMILARITY, resolve_prior, start_similarity


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _fine_tuned(params: dict[str, torch.Tensor], scale: float = 0.01) -> dict[str, torch.Tensor]:
    """The same weights moved a little, as a few fine-tuning steps would."""
    gen = torch.Generator().manual_seed(5)
    return {
        n: t + scale * t.std() * torch.randn(t.shape, generator=gen) if t.numel() > 1 else t for n, t in params.items()
    }


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_a_fine_tuned_copy_is_related_and_an_independent_init_is_not(family):
    model = tiny_model(family, task="classification", seed=0)
    spec = permutation_spec(model)
    start = _params(model)
    other = _params(tiny_model(family, task="classification", seed=1))
    assert start_similarity(spec, start, start) == pytest.approx(1.0)
    assert start_similarity(spec, start, _fine_tuned(start)) > 0.99
    assert abs(start_similarity(spec, start, other)) < RELATED_SIMILARITY  # LayerNorm scales of 1 do not count

    shared = resolve_prior(spec, start, _fine_tuned(start), stay=None, stay_at="auto", warm_start=None)
    assert (shared.stay, shared.at, shared.related, shared.warm_start) == (1.0, "identity", True, True)
    assert shared.to_dict()["similarity"] > 0.99
    apart = resolve_prior(spec, start, other, stay=None, stay_at="auto", warm_start=None)
    assert (apart.stay, apart.at, apart.related, apart.warm_start) == (0.0, "previous", False, False)
    assert resolve_prior(spec, start, other, stay=0.0, stay_at="previous", warm_start=True).similarity is None


def test_explicit_settings_are_kept_as_given():
    model = tiny_model("bert", task="classification")
    spec = permutation_spec(model)
    start = _params(model)
    plain = resolve_prior(spec, start, start, stay=0.0, stay_at="auto")
    assert (plain.stay, plain.at) == (0.0, "identity")  # stay 0 is the plain matching wherever the prior sits
    given = resolve_prior(spec, start, start, stay=2.0, stay_at="previous")
    assert (given.stay, given.at, given.similarity) == (2.0, "previous", None)  # nothing to look at


def test_the_automatic_prior_is_the_identity_prior_of_strength_one_on_a_shared_body():
    """transfer_trajectory's stay=None/"auto" gives the very permutations of stay 1 at the identity there."""
    from hf_efftrain.testing import tiny_inputs
    from hf_efftrain.transfer import InterpolatedPath, LossGradients, spacing, transfer_trajectory

    model = tiny_model("bert", task="classification")
    spec = permutation_spec(model)
    start = _params(model)
    end = _fine_tuned(start, scale=0.5)
    path = InterpolatedPath(start, end, spacing("linear", 3))
    batch = tiny_inputs(model, batch=4, seq=6) | {"labels": torch.tensor([0, 1, 1, 0])}
    gradients = LossGradients(tiny_model("bert", task="classification"), [[batch]] * 3)
    target = _fine_tuned(start, scale=0.05)
    auto = list(transfer_trajectory(path, target, spec, gradients, stay=None, stay_at="auto", warm_start=None))
    fixed = list(transfer_trajectory(path, target, spec, gradients, stay=1.0, stay_at="identity", warm_start=True))
    assert all(spec.equal(a.permutation, b.permutation) for a, b in zip(auto, fixed, strict=True))


def test_a_cold_start_matches_each_step_from_the_identity():
    """warm_start=False gives, at every step, what matching the same pairs from the identity gives."""
    from hf_efftrain.testing import tiny_inputs
    from hf_efftrain.transfer import InterpolatedPath, LossGradients, spacing, transfer_trajectory
    from hf_efftrain.transfer.matching import GradientPairs, match_permutation

    model = tiny_model("bert", task="classification")
    spec = permutation_spec(model)
    start = _params(model)
    path = InterpolatedPath(start, _fine_tuned(start, scale=0.5), spacing("linear", 3))
    batch = tiny_inputs(model, batch=4, seq=6) | {"labels": torch.tensor([0, 1, 1, 0])}
    target = _params(tiny_model("bert", task="classification", seed=3))
    gradients = LossGradients(tiny_model("bert", task="classification"), [[batch]] * 3)
    steps = list(transfer_trajectory(path, target, spec, gradients, warm_start=False))
    pairs = GradientPairs(spec, capacity=3)
    current = target
    for step in steps:
        pairs.add(gradients(path[step.step - 1], step.step - 1), gradients(current, step.step - 1))
        cold, _ = match_permutation(spec, pairs)
        assert spec.equal(step.permutation, cold)
        current = step.params
