"""Growth operators: strict loading, layer renumbering, and function preservation within 1e-5."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_efftrain.architectures import get_architecture
from hf_efftrain.growth import (
    GrowthError,
    copy_all,
    fuse_width,
    fusion_gap,
    grow_depth,
    grow_width,
    interleave,
    masked_depth,
    masked_width,
    middle,
    overlap,
    set_mask,
    slices,
    top_k,
)
from hf_efftrain.testing import tiny_inputs, tiny_model

FAMILIES = [("bert", "masked-lm"), ("gpt2", "causal-lm"), ("llama", "causal-lm")]
TOL = 1e-5


def _max_diff(a: nn.Module, b: nn.Module, batch) -> float:
    with torch.no_grad():
        return float((a.eval()(**batch).logits - b.eval()(**batch).logits).abs().max())


def test_plans_match_their_definitions():
    assert copy_all(3, 6) == [(0, i) for i in (0, 1, 2, 0, 1, 2)]
    assert interleave(3, 6) == [(0, i) for i in (0, 0, 1, 1, 2, 2)]
    assert top_k(6, 10, 2) == [(0, i) for i in (0, 1, 2, 3, 4, 5, 4, 5, 4, 5)]
    assert middle(6, 12, 2) == [(0, i) for i in (0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 4, 5)]
    assert overlap(6, 2) == [(0, i) for i in (0, 1, 2, 3, 2, 3, 4, 5)]
    assert slices([(0, 0, 2), (1, 1, 3)]) == [(0, 0), (0, 1), (1, 1), (1, 2)]
    with pytest.raises(GrowthError, match="divide"):
        middle(6, 11, 2)
    with pytest.raises(GrowthError, match="at least as deep"):
        copy_all(4, 2)


@pytest.mark.parametrize(("family", "task"), FAMILIES)
def test_depth_copies_the_planned_layers(family, task):
    source = tiny_model(family, task, seed=0)
    spec = get_architecture(source)
    grown = grow_depth([source], interleave(2, 5))
    assert spec.num_layers(grown.config) == 5 == len(spec.layers(grown))
    for target, src in enumerate([0, 0, 0, 1, 1]):
        got = dict(spec.layers(grown)[target].named_parameters())
        for name, param in spec.layers(source)[src].named_parameters():
            assert torch.equal(got[name], param), (target, name)
    identity = grow_depth([source], [(0, i) for i in range(2)])
    assert _max_diff(identity, source, tiny_inputs(source)) == 0.0


def test_llama_runs_every_new_layer_with_its_own_cache_slot():
    source = tiny_model("llama", "causal-lm")
    grown = grow_depth([source], copy_all(2, 6))
    calls: list[int] = []
    for index, layer in enumerate(grown.model.layers):
        layer.register_forward_hook(lambda *_, i=index: calls.append(i))
        assert layer.self_attn.layer_idx == index
    out = grown(**tiny_inputs(grown), use_cache=True)
    assert calls == list(range(6))
    assert len(out.past_key_values.layers) == 6


def test_qwen2_per_layer_config_lists_follow_the_plan():
    grown = grow_depth([tiny_model("qwen2", "causal-lm")], copy_all(2, 5))
    assert len(grown.config.layer_types) == 5


def test_depth_fusion_across_checkpoints_takes_head_from_the_last():
    a, b = tiny_model("gpt2", "causal-lm", seed=0), tiny_model("gpt2", "causal-lm", seed=1)
    grown = grow_depth([a, b], slices([(0, 0, 2), (1, 0, 2)]))
    assert torch.equal(grown.transformer.wte.weight, a.transformer.wte.weight)
    assert torch.equal(grown.transformer.ln_f.weight, b.transformer.ln_f.weight)
    assert torch.equal(grown.transformer.h[3].mlp.c_fc.weight, b.transformer.h[1].mlp.c_fc.weight)


def test_depth_fusion_rejects_mismatched_widths_and_ranges():
    a = tiny_model("bert", "masked-lm")
    wide = tiny_model("bert", "masked-lm", hidden_size=32, intermediate_size=64)
    with pytest.raises(GrowthError, match="equal width"):
        grow_depth([a, wide], slices([(0, 0, 1), (1, 0, 1)]))
    with pytest.raises(GrowthError, match="layers 0..1"):
        grow_depth([a], slices([(0, 0, 3)]))


WIDTHS = {
    "bert": {"hidden_size": 32, "intermediate_size": 80},
    "gpt2": {"hidden_size": 32, "intermediate_size": 80},
    "llama": {"hidden_size": 32, "intermediate_size": 80, "num_heads": 8, "num_kv_heads": 4},
}


@pytest.mark.parametrize(("family", "task"), FAMILIES)
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_net2net_width_is_function_preserving(family, task, noise):
    source = tiny_model(family, task)
    grown = grow_width(source, noise=noise, **WIDTHS[family])
    assert grown.config.to_dict()[get_architecture(grown).hidden_key] == 32
    assert _max_diff(grown, source, tiny_inputs(source)) < TOL


def test_net2net_noise_breaks_symmetry_between_copies():
    grown = grow_width(tiny_model("llama", "causal-lm"), intermediate_size=64, noise=0.3)
    down = grown.model.layers[0].mlp.down_proj.weight
    assert not torch.allclose(down[:, :32], down[:, 32:])


def test_uneven_hidden_growth_is_not_exact_because_of_layernorm():
    source = tiny_model("bert", "masked-lm")
    grown = grow_width(source, hidden_size=24)  # 16 -> 24: half the units copied once, half not at all
    assert _max_diff(grown, source, tiny_inputs(source)) > 1e-3


def test_width_rejects_heads_that_change_head_dim():
    with pytest.raises(GrowthError, match="head_dim"):
        grow_width(tiny_model("bert", "masked-lm"), hidden_size=32, num_heads=4)


@pytest.mark.parametrize(("family", "task"), FAMILIES)
def test_fusion_of_a_model_with_itself_is_exact(family, task):
    source = tiny_model(family, task)
    fused = fuse_width(source, source)
    assert fusion_gap(fused, [source, source], tiny_inputs(source)) < TOL


def _drop_norms(model: nn.Module) -> nn.Module:
    for name, module in list(model.named_modules()):
        if "norm" in type(module).__name__.lower():
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, nn.Identity())
    return model


@pytest.mark.parametrize(("family", "task"), FAMILIES)
def test_fusion_is_the_average_up_to_the_norms(family, task):
    a, b = tiny_model(family, task, seed=0), tiny_model(family, task, seed=1)
    batch = tiny_inputs(a)
    fused = fuse_width(a, b)
    assert fusion_gap(fused, [a, b], batch) > 1e-3  # the norms mix the halves
    assert fusion_gap(_drop_norms(fused), [_drop_norms(a), _drop_norms(b)], batch) < TOL


@pytest.mark.parametrize(("family", "task"), FAMILIES)
def test_masked_depth_is_exact_at_zero_and_full_model_at_one(family, task):
    source = tiny_model(family, task)
    batch = tiny_inputs(source)
    grown = masked_depth(source, copy_all(2, 4), fresh=True)
    spec = get_architecture(source)
    fresh_weight = spec.layers(grown)[2].get_submodule(spec.mlp_out.path).weight
    assert not torch.equal(fresh_weight, spec.layers(source)[0].get_submodule(spec.mlp_out.path).weight)
    assert _max_diff(grown, source, batch) < TOL
    set_mask(grown, 0.5)
    assert _max_diff(grown, source, batch) > 1e-4
    plain = grow_depth([source], copy_all(2, 4))
    plain.load_state_dict(grown.state_dict())
    set_mask(grown, 1.0)
    assert _max_diff(grown, plain, batch) == 0.0


@pytest.mark.parametrize(("family", "task"), FAMILIES)
def test_masked_width_is_exact_at_zero(family, task):
    source = tiny_model(family, task)
    extra = {"num_heads": 8, "num_kv_heads": 4} if family == "llama" else {}
    grown = masked_width(source, intermediate_size=96, **extra)
    assert _max_diff(grown, source, tiny_inputs(source)) < TOL
    set_mask(grown, 1.0)
    assert _max_diff(grown, source, tiny_inputs(source)) > 1e-4


def test_masked_depth_rejects_reordering_plans():
    with pytest.raises(GrowthError, match="in order"):
        masked_depth(tiny_model("gpt2", "causal-lm"), [(0, 1), (0, 0), (0, 1)])


def test_vit_width_and_masked_depth_are_exact():
    source = tiny_model("vit", "image-classification")  # class token, patch conv, positions, classifier
    batch = tiny_inputs(source)
    assert _max_diff(grow_width(source, hidden_size=32, intermediate_size=80), source, batch) < TOL
    assert _max_diff(masked_depth(source, copy_all(2, 4)), source, batch) < TOL
