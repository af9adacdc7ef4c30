"""SOLAR depth up-scaling of decoders: depth, copied layers, renumbered cache slots, generate, save and reload."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from hf_efftrain.architectures import get_architecture
from hf_efftrain.growth import GrowthError, upscale_depth
from hf_efftrain.testing import tiny_inputs, tiny_model

DECODERS = ["llama", "mistral", "qwen2"]


def _source(family: str, layers: int = 4) -> tf.PreTrainedModel:
    model = tiny_model(family, "causal-lm", layers=layers)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA
    return model


@pytest.mark.parametrize("family", DECODERS)
def test_upscaled_decoder_has_the_overlapping_layers_in_order(family):
    source = _source(family)
    grown = upscale_depth(source, m=1)
    spec = get_architecture(grown)
    assert grown.config.num_hidden_layers == 6 == len(spec.layers(grown))  # 2 * (4 - 1)
    for target, origin in enumerate([0, 1, 2, 1, 2, 3]):  # [0, L-m) then [m, L)
        got = dict(spec.layers(grown)[target].named_parameters())
        for name, param in spec.layers(source)[origin].named_parameters():
            assert torch.equal(got[name], param), (target, name)
        assert spec.layers(grown)[target].self_attn.layer_idx == target
    assert torch.equal(grown.model.embed_tokens.weight, source.model.embed_tokens.weight)
    assert torch.equal(grown.model.norm.weight, source.model.norm.weight)
    assert upscale_depth(_source(family, layers=8)).config.num_hidden_layers == 12  # default m = L // 4 = 2


def _cached_logits(model: tf.PreTrainedModel, ids: torch.Tensor) -> torch.Tensor:
    """Logits of each position, fed one token at a time through the KV cache."""
    cache, logits = None, []
    with torch.no_grad():
        for position in range(ids.shape[1]):
            out = model(input_ids=ids[:, position : position + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits.append(out.logits)
    return torch.cat(logits, dim=1)


@pytest.mark.parametrize("family", DECODERS)
def test_the_kv_cache_of_the_upscaled_model_gives_the_full_forward_and_generates(family):
    grown = upscale_depth(_source(family), m=1).eval()
    ids = tiny_inputs(grown)["input_ids"]
    with torch.no_grad():
        full = grown(input_ids=ids, use_cache=False).logits
    assert torch.allclose(_cached_logits(grown, ids), full, atol=1e-5)  # one cache slot per layer, in order
    with torch.no_grad():
        cached = grown.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True, pad_token_id=0)
        uncached = grown.generate(ids, max_new_tokens=6, do_sample=False, use_cache=False, pad_token_id=0)
    assert cached.shape == (2, ids.shape[1] + 6) and torch.equal(cached, uncached)


def test_without_renumbering_the_cache_would_be_wrong():
    """The check above can fail: two layers sharing a cache slot break cached decoding."""
    grown = upscale_depth(_source("llama"), m=1).eval()
    grown.model.layers[3].self_attn.layer_idx = 1  # as if the copy kept its source's index
    ids = tiny_inputs(grown)["input_ids"]
    with torch.no_grad():
        full = grown(input_ids=ids, use_cache=False).logits
    try:
        cached = _cached_logits(grown, ids)
    except (RuntimeError, IndexError):
        return  # mismatched cache shapes: broken, as expected
    assert not torch.allclose(cached, full, atol=1e-5)


@pytest.mark.parametrize("family", DECODERS)
def test_upscaled_decoder_round_trips_through_save_pretrained(family, tmp_path):
    grown = upscale_depth(_source(family), m=1).eval()
    grown.save_pretrained(tmp_path)
    again = tf.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(again) is type(grown) and again.config.num_hidden_layers == 6
    if hasattr(grown.config, "layer_types"):
        assert again.config.layer_types == grown.config.layer_types and len(again.config.layer_types) == 6
    for name, tensor in grown.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
    assert [layer.self_attn.layer_idx for layer in again.model.layers] == list(range(6))
    ids = tiny_inputs(grown)["input_ids"]
    with torch.no_grad():
        expected = grown.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
        assert torch.equal(again.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0), expected)


def test_qwen2_sliding_window_layers_follow_their_source_layers():
    source = tiny_model("qwen2", "causal-lm", layers=4)
    source.config.layer_types = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]
    grown = upscale_depth(source, m=1)
    assert grown.config.layer_types == [source.config.layer_types[i] for i in (0, 1, 2, 1, 2, 3)]


def test_overlap_must_leave_layers():
    with pytest.raises(GrowthError, match="0 <= m < 4"):
        upscale_depth(_source("llama"), m=4)
