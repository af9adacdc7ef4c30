"""benchmarks/backprop_stop.py: the backward work a stop below layer k leaves, counted on a tiny LoRA Llama."""

from __future__ import annotations

import pytest

pytest.importorskip("peft")
backprop_stop = pytest.importorskip("benchmarks.backprop_stop")


def test_a_stop_leaves_less_backward_work_and_takes_its_hook_off():
    from hf_efftrain.causal_lm import add_lora
    from hf_efftrain.testing import tiny_inputs, tiny_model

    model = add_lora(tiny_model("llama", task="causal-lm"), r=4).train()
    batch = tiny_inputs(model, batch=2, seq=8)
    batch["labels"] = batch["input_ids"]
    result = backprop_stop.measure(model, batch, stops=[1])
    assert result["backward_flops"] > 0
    assert 0.3 < result["backward_ratio_by_stop_layer"]["1"] < 0.9  # layer 0 of 2 no longer back-propagated
    assert result["lowest_stop_under_0_9"] == 1
    assert all(p.grad is None for p in model.parameters())  # each count leaves the model as it found it
    again = backprop_stop.backward_flops(model, batch, 0, result["forward_flops"])
    assert again == result["backward_flops"]  # the stop's hook is gone: a full backward again
