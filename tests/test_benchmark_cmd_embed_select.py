"""benchmarks/cmd_embed_select.py: candidates meet the saving by construction; the choice sees validation only."""

from __future__ import annotations

import pytest
import torch

from hf_efftrain.cmd.embedded import backward_flops
from hf_efftrain.testing import tiny_model

select = pytest.importorskip("benchmarks.cmd_embed_select")


def _batch() -> dict:
    ids = torch.randint(1, 96, (4, 8), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 0, 1])}


def test_a_prefix_is_the_embeddings_and_the_first_layers_and_never_the_head():
    model = tiny_model("bert", task="classification", seed=0)
    names = [n for n, _ in model.named_parameters()]
    one = select.prefix_names(names, 1)
    assert one[0].startswith("bert.embeddings.") and any(".layer.0." in n for n in one)
    assert not any(".layer.1." in n for n in one)
    every = select.prefix_names(names, 99)  # deeper than the model: every layer, then it stops before the head
    assert not any(n.startswith(("bert.pooler", "classifier")) for n in every)
    assert any(".layer.1." in n for n in every)


def test_each_candidate_embeds_as_late_as_its_saving_allows_and_saves_it():
    model = tiny_model("bert", task="classification", seed=0)
    batch = _batch()
    steps, first, every, minimum = 200, 40, 4, 0.2
    candidates = select.prefix_candidates(model, batch, [1, 2], steps, first, every, minimum)
    assert [c["layers"] for c in candidates] == [1, 2]
    assert all(p.requires_grad for p in model.parameters())  # the probe leaves the model as it found it
    names = [n for n, _ in model.named_parameters()]
    full = backward_flops(model, batch)
    for c in candidates:
        assert (c["embedding_step"] - first) % every == 0 and c["embed_every"] >= 1
        assert c["backward_flops_saved_predicted"] >= minimum
        one_later = c["backward_flops_saved_at_end"] * (steps - c["embedding_step"] - every) / steps
        assert one_later < minimum  # the latest snapshot step that still saves enough
        prefix = set(select.prefix_names(names, c["layers"]))
        for name, param in model.named_parameters():
            param.requires_grad_(name not in prefix)
        assert 1 - backward_flops(model, batch) / full == pytest.approx(c["backward_flops_saved_at_end"])
        for param in model.parameters():
            param.requires_grad_(True)
    deeper = candidates[1]
    assert deeper["embedding_step"] > candidates[0]["embedding_step"]  # a deeper prefix saves more, so later
    assert select.prefix_candidates(model, batch, [1], steps, first, every, 0.99) == []  # cannot save 99%


def _row(layers: int, seed: int, validation: float, test: float, saved: float = 0.21) -> dict:
    return {
        "arm": "embedded",
        "layers": layers,
        "seed": seed,
        "embedded_validation_accuracy": validation,
        "embedded_accuracy": test,
        "embedded_backward_flops_saved": saved,
    }


def test_the_choice_looks_at_validation_only_and_at_the_measured_saving():
    rows = [_row(2, s, 0.80, 0.90) for s in (0, 1)] + [_row(4, s, 0.81, 0.70) for s in (0, 1)]
    rows += [{"arm": "plain", "seed": 0, "last_accuracy": 0.99, "last_validation_accuracy": 0.99}]
    assert select.choose(rows, 0.2)["layers"] == 4  # better validation wins, whatever the test says
    rows += [_row(6, s, 0.95, 0.95, saved=0.12) for s in (0, 1)]  # references kept it from embedding its prefix
    assert select.choose(rows, 0.2)["layers"] == 4
    with pytest.raises(ValueError, match="different seeds"):
        select.choose([*rows, _row(5, 0, 0.9, 0.9)], 0.2)
    with pytest.raises(ValueError, match="no candidate saved"):
        select.choose(rows, 0.5)


def test_step_times_are_taken_in_pairs_and_leave_the_model_as_found():
    model = tiny_model("bert", task="classification", seed=0)
    model.classifier.bias.requires_grad_(False)  # a tensor frozen before the probe stays frozen after it
    names = [n for n, _ in model.named_parameters()]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    timing = select.step_seconds(model, _batch(), select.prefix_names(names, 1), repeats=2)
    assert timing["seconds_per_step_full"] > 0 and timing["seconds_per_step_embedded"] > 0
    assert timing["step_seconds_ratio"] == timing["seconds_per_step_embedded"] / timing["seconds_per_step_full"]
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["classifier.bias"]
    for name, param in model.named_parameters():  # lr 1e-12: the timed steps do not move the weights
        assert torch.allclose(param, before[name], atol=1e-8)
