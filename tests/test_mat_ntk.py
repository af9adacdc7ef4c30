"""The fast λmax estimator equals brute-force Jacobians (torch.func) on tiny BERT, GPT-2 and Llama-GQA models."""

from __future__ import annotations

import pytest
import torch

from hf_efftrain.errors import MATConfigError
from hf_efftrain.mat.layout import build_layout
from hf_efftrain.mat.ntk import capture, lambda_max, output_gradients, probe_outputs, unit_kernels
from hf_efftrain.mat.reference import reference_kernels
from hf_efftrain.testing import tiny_inputs, tiny_model

CASES = [("bert", "classification"), ("gpt2", "causal-lm"), ("llama", "causal-lm"), ("llama", "classification")]


def _setup(family: str, task: str, granularity: str = "heads+ffn", gqa_unit: str = "query_head"):
    model = tiny_model(family, task=task, attn_implementation="eager").double()
    inputs = tiny_inputs(model, batch=4, seq=6)
    mask = torch.ones_like(inputs["input_ids"])
    mask[0, -2:] = 0  # padding must not break exactness
    inputs["attention_mask"] = mask
    return model, build_layout(model, granularity, gqa_unit), inputs


@pytest.mark.parametrize("family,task", CASES)
def test_kernels_match_bruteforce_jacobian(family, task):
    model, layout, inputs = _setup(family, task)
    exact = reference_kernels(model, layout, inputs, seed=3)
    assert exact.abs().amax() > 0
    for strategy in ("gram", "persample"):
        fast = unit_kernels(model, layout, inputs, seed=3, strategy=strategy)
        assert fast.shape == exact.shape
        rel = (fast - exact).abs().amax() / exact.abs().amax()
        assert rel < 1e-4, (strategy, rel)
        lam_rel = ((lambda_max(fast) - lambda_max(exact)).abs() / lambda_max(exact)).amax()
        assert lam_rel < 1e-4, (strategy, lam_rel)


def test_heads_differ_and_kv_sharing_counts_in_each_query_head():
    """GQA: a k/v head's parameters are part of each query head it serves (as in the registry)."""
    model, layout, inputs = _setup("llama", "causal-lm", "heads")
    lam = lambda_max(unit_kernels(model, layout, inputs))
    assert lam.unique().numel() == lam.numel()  # every head measured separately
    k_pieces = [m for m in layout.modules if m.path.endswith("k_proj")][0].pieces
    assert [p.units for p in k_pieces] == [(0, 1), (2, 3)]


def test_kv_group_units_match_bruteforce_and_own_their_whole_group():
    """gqa_unit="kv_group": one unit per k/v head, owning its query heads' rows, the k/v rows and o columns."""
    model, layout, inputs = _setup("llama", "classification", "heads", "kv_group")
    geo = layout.arch.geometry(model.config)
    assert [u.name for u in layout.units[: geo.num_kv_heads]] == [f"L0.G{g}" for g in range(geo.num_kv_heads)]
    assert len(layout.units) == geo.num_kv_heads * layout.num_layers
    q_pieces = [m for m in layout.modules if m.path.endswith("q_proj")][0].pieces
    assert [p.units for p in q_pieces] == [(0,), (0,), (1,), (1,)]
    exact = reference_kernels(model, layout, inputs, seed=1)
    fast = unit_kernels(model, layout, inputs, seed=1)
    assert ((fast - exact).abs().amax() / exact.abs().amax()) < 1e-4


def test_batched_output_gradients_equal_one_backward_per_output():
    model, layout, inputs = _setup("bert", "classification")
    with torch.enable_grad(), capture(layout) as records:
        logits = model(**inputs).logits
    outs, outputs = logits.transpose(0, 1), [r[1] for r in records]
    batched = output_gradients(outs, outputs)
    for c in range(outs.shape[0]):
        single = torch.autograd.grad(outs[c].sum(), outputs, retain_graph=True)
        for got, want in zip(batched, single, strict=True):
            torch.testing.assert_close(got[c], want)


def test_loss_option_is_labelled_and_matches_its_own_bruteforce():
    model, layout, inputs = _setup("bert", "classification")
    inputs["labels"] = torch.tensor([0, 1, 1, 0])
    exact = reference_kernels(model, layout, inputs, output="loss")
    fast = unit_kernels(model, layout, inputs, output="loss")
    assert fast.shape[-1] == 4  # one loss per sample, not C logits per sample
    assert ((fast - exact).abs().amax() / exact.abs().amax()) < 1e-4
    with pytest.raises(MATConfigError, match="labels"):
        probe_outputs(torch.zeros(4, 2), "loss")


def test_logits_mode_refuses_token_logits():
    with pytest.raises(MATConfigError, match="projection"):
        probe_outputs(torch.zeros(2, 5, 96), "logits")
    assert probe_outputs(torch.zeros(2, 5, 96), "auto").shape == (1, 2)
