"""The registry is right iff its slices address exactly the parameters of each head.

Two checks per family: zeroing head h's output-projection columns through the registry equals removing
that head's context vector before the output projection; perturbing head h's q (or its k/v group's k/v)
slices changes the context of exactly the query heads the registry says and no other.
"""

from __future__ import annotations

import pytest
import torch

from hf_efftrain.architectures import (
    ArchitectureSpec,
    Projection,
    get_architecture,
    register_architecture,
)
from hf_efftrain.errors import UnknownArchitectureError
from hf_efftrain.testing import TINY_FAMILIES, tiny_inputs, tiny_model


def _output(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def _context_capture(model, arch, layer: int):
    """Capture the input of the output projection of ``layer`` (the concatenated head contexts)."""
    path = f"{arch.layer_path(model, layer)}.{arch.output.path}"
    store: dict[str, torch.Tensor] = {}

    def hook(_module, args):
        store["ctx"] = args[0].detach().clone()

    return model.get_submodule(path).register_forward_pre_hook(hook), store


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_zeroing_output_slice_removes_exactly_that_head(family):
    model = tiny_model(family)
    arch = get_architecture(model)
    geo = arch.geometry(model.config)
    inputs = tiny_inputs(model)
    layer = arch.num_layers(model.config) - 1
    for head in range(geo.num_heads):
        reference_model = tiny_model(family)
        o_path = f"{arch.layer_path(reference_model, layer)}.{arch.output.path}"
        cols = slice(head * geo.head_dim, (head + 1) * geo.head_dim)

        def drop_head(_module, args, cols=cols):
            ctx = args[0].clone()
            ctx[..., cols] = 0
            return (ctx, *args[1:])

        reference_model.get_submodule(o_path).register_forward_pre_hook(drop_head)
        expected = _output(reference_model, inputs)

        edited = tiny_model(family)
        (o_slice,) = [s for s in arch.head_slices(edited, layer, head) if s.role == "o"]
        with torch.no_grad():
            o_slice.weight(edited).zero_()
        got = _output(edited, inputs)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert not torch.allclose(got, _output(tiny_model(family), inputs), atol=1e-4)


@pytest.mark.parametrize("family", TINY_FAMILIES)
@pytest.mark.parametrize("role", ["q", "k", "v"])
def test_qkv_slices_touch_only_their_heads(family, role):
    model = tiny_model(family)
    arch = get_architecture(model)
    geo = arch.geometry(model.config)
    inputs = tiny_inputs(model)
    handle, store = _context_capture(model, arch, layer=0)
    _output(model, inputs)
    clean = store["ctx"]
    for head in range(geo.num_heads):
        (piece,) = [s for s in arch.head_slices(model, 0, head) if s.role == role]
        original = piece.weight(model).clone()
        with torch.no_grad():
            piece.weight(model).add_(torch.randn_like(original) * 2.0)
        _output(model, inputs)
        with torch.no_grad():
            piece.weight(model).copy_(original)
        changed = (store["ctx"] - clean).abs().reshape(-1, geo.num_heads, geo.head_dim).amax(dim=(0, 2))
        expected_heads = set(geo.query_heads_of(geo.kv_head_of(head))) if role in ("k", "v") else {head}
        for other in range(geo.num_heads):
            if other in expected_heads:
                assert changed[other] > 1e-4, f"{family} {role}: head {other} should change"
            else:
                assert changed[other] < 1e-6, f"{family} {role}: head {other} must not change"
    handle.remove()


def test_gqa_geometry_and_head_dim():
    model = tiny_model("llama")
    geo = get_architecture(model).geometry(model.config)
    assert (geo.num_heads, geo.num_kv_heads, geo.head_dim, geo.hidden_size) == (4, 2, 8, 16)
    assert [geo.kv_head_of(h) for h in range(4)] == [0, 0, 1, 1]
    slices = {s.role: s for s in get_architecture(model).head_slices(model, 1, 3)}
    assert slices["q"].index == slice(24, 32) and slices["k"].index == slice(8, 16)
    assert slices["o"].dim == 1 and slices["q"].dim == 0


def test_gpt2_fused_conv1d_layout():
    model = tiny_model("gpt2")
    slices = {s.role: s for s in get_architecture(model).head_slices(model, 0, 1)}
    assert (slices["q"].dim, slices["q"].index) == (1, slice(4, 8))
    assert slices["k"].index == slice(20, 24) and slices["v"].index == slice(36, 40)
    assert slices["o"].dim == 0 and slices["q"].has_bias and not slices["o"].has_bias


def test_task_heads_and_depth_keys():
    for family, key in [("gpt2", "n_layer"), ("distilbert", "n_layers"), ("bert", "num_hidden_layers")]:
        model = tiny_model(family, task="classification")
        arch = get_architecture(model)
        assert arch.depth_key == key and arch.num_layers(model.config) == 2
        assert len(arch.layers(model)) == 2
        assert arch.layer_path(model, 1).endswith(f"{arch.layers_path}.1")
        model.get_submodule(arch.layer_path(model, 1))  # resolvable from the task model's root


def test_peft_wrapped_model_resolves_base_layer():
    peft = pytest.importorskip("peft")
    model = tiny_model("bert", task="classification")
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"))
    arch = get_architecture(wrapped)
    (q,) = [s for s in arch.head_slices(wrapped, 0, 2) if s.role == "q"]
    assert q.weight(wrapped).shape == (4, 16)


def test_unknown_architecture_error_says_how_to_register():
    with pytest.raises(UnknownArchitectureError, match="register_architecture"):
        get_architecture("t5")


def test_register_custom_architecture():
    spec = ArchitectureSpec(
        name="custom",
        model_types=("my-custom-bert",),
        layers_path="encoder.layer",
        depth_key="num_hidden_layers",
        heads_key="num_attention_heads",
        hidden_key="hidden_size",
        query=Projection("attention.self.query"),
        key=Projection("attention.self.key"),
        value=Projection("attention.self.value"),
        output=Projection("attention.output.dense"),
        mlp_in=(Projection("intermediate.dense"),),
        mlp_out=Projection("output.dense"),
    )
    register_architecture(spec)
    assert get_architecture("my-custom-bert") is spec
    with pytest.raises(ValueError, match="already registered"):
        register_architecture(spec)
