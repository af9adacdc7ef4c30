"""Permutation specs are exact symmetries: a random permutation from the spec leaves outputs unchanged.

Each check has a control that fails when the structure is wrong (permuting q without k changes the output),
so the equality cannot come from a permutation that does nothing.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_efftrain.errors import PermutationSpecError
from hf_efftrain.testing import tiny_inputs, tiny_model
from hf_efftrain.transfer import AttentionGroup, FreeGroup, SpecBuilder, permutation_spec, sequential_spec

pytestmark = pytest.mark.usefixtures("one_thread")


CASES = [
    ("bert", "classification"),
    ("bert", "masked-lm"),
    ("roberta", "classification"),
    ("distilbert", "classification"),
    ("gpt2", "classification"),
    ("gpt2", "causal-lm"),
    ("llama", "causal-lm"),
    ("llama", "classification"),
    ("mistral", "causal-lm"),
    ("qwen2", "causal-lm"),
    ("vit", "image-classification"),
]


def _sharpen(model, spec) -> None:
    """Scale q/k projections up: at init attention is almost uniform, which would hide q/k mistakes."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(p.role in ("q", "k") for axis in spec.axes.get(name, ()) for p in axis.parts):
                param.mul_(8.0)


def _logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize(("family", "task"), CASES)
def test_random_permutation_keeps_outputs(family, task):
    model = tiny_model(family, task=task)
    inputs = tiny_inputs(model)
    spec = permutation_spec(model)
    _sharpen(model, spec)
    reference = _logits(model, inputs)
    state = model.state_dict()
    permuted = spec.apply(state, spec.random_permutation(seed=3))
    moved = sum(not torch.equal(state[k], permuted[k]) for k in state)
    assert moved >= 10  # the permutation really moves the weights
    model.load_state_dict(permuted)
    assert torch.allclose(_logits(model, inputs), reference, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_breaking_the_block_structure_changes_outputs(family):
    """Control: permuting the query rows alone (no matching key rows) is not a symmetry."""
    model = tiny_model(family, task="classification")
    inputs = tiny_inputs(model)
    spec = permutation_spec(model)
    _sharpen(model, spec)
    with torch.no_grad():
        reference = model(**inputs, output_hidden_states=True).hidden_states[-1]
    perm = spec.random_permutation(seed=5)
    q_name = next(n for n, axes in spec.axes.items() if any(p.role == "q" for a in axes for p in a.parts))
    (axis,) = [a for a in spec.axes[q_name] if any(p.role == "q" for p in a.parts)]
    state = model.state_dict()
    state[q_name] = state[q_name].index_select(axis.dim, spec.index(axis, perm))
    model.load_state_dict(state)
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states[-1]
    assert (hidden - reference).abs().max() > 1e-3  # float noise of an exact symmetry is ~1e-7


def test_base_model_hidden_states_follow_the_residual_permutation():
    model = tiny_model("bert")
    inputs = tiny_inputs(model)
    with torch.no_grad():
        reference = model(**inputs).last_hidden_state
    spec = permutation_spec(model)
    perm = spec.random_permutation(seed=1)
    model.load_state_dict(spec.apply(model.state_dict(), perm))
    with torch.no_grad():
        out = model(**inputs).last_hidden_state
    assert torch.allclose(out, reference[..., perm["residual"]], atol=1e-5)


def test_rope_keeps_within_head_qk_fixed_and_gqa_keeps_groups():
    model = tiny_model("llama")
    spec = permutation_spec(model)
    group = spec.groups["attn.0"]
    assert isinstance(group, AttentionGroup) and group.rotary and group.group_size == 2
    for seed in range(5):
        state = spec.random_permutation(seed)["attn.0"]
        assert torch.equal(state.tau, torch.arange(group.head_dim).repeat(group.num_kv_heads, 1))
        heads = group.composite(state, "q").reshape(-1, group.head_dim)[:, 0] // group.head_dim
        kv_of_slot = torch.arange(group.num_heads) // group.group_size
        assert torch.equal(heads // group.group_size, state.kappa[kv_of_slot])  # query heads stay with their k/v


def test_llama_gate_and_up_share_one_mlp_permutation():
    spec = permutation_spec(tiny_model("llama", task="causal-lm"))
    gate = spec.axes["model.layers.0.mlp.gate_proj.weight"][0].parts
    up = spec.axes["model.layers.0.mlp.up_proj.weight"][0].parts
    assert gate == up == (spec.axes["model.layers.0.mlp.down_proj.weight"][1].parts)


def test_gpt2_tied_lm_head_is_permuted_like_the_embedding():
    model = tiny_model("gpt2", task="causal-lm")
    spec = permutation_spec(model)
    assert spec.axes["lm_head.weight"] == tuple(
        a.__class__("lm_head.weight", a.dim, a.parts) for a in spec.axes["transformer.wte.weight"]
    )


@pytest.mark.parametrize("rotary", [False, True])
def test_attention_group_solver_recovers_gqa_block_permutation(rotary):
    group = AttentionGroup(num_heads=6, num_kv_heads=2, head_dim=4, rotary=rotary)
    truth = group.random(torch.Generator().manual_seed(0))
    noise = torch.Generator().manual_seed(1)
    similarity = {}
    for role, size in group.roles().items():
        matrix = 0.1 * torch.rand(size, size, generator=noise)
        matrix[torch.arange(size), group.composite(truth, role)] += 1.0
        similarity[role] = matrix
    found = group.solve(similarity, group.identity())
    assert group.equal(found, truth)


def test_sequential_mlp_and_cnn_specs_are_exact():
    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 6, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 12),
        nn.LayerNorm(12),
        nn.ReLU(),
        nn.Linear(12, 10),
    )
    x = torch.randn(5, 3, 8, 8)
    cnn.train()
    cnn(x)  # non-trivial BatchNorm running statistics
    cnn.eval()
    spec = sequential_spec(cnn)
    assert set(spec.groups) == {"hidden.0", "hidden.3", "hidden.6"}
    with torch.no_grad():
        reference = cnn(x)
        before = cnn.state_dict()
        after = spec.apply(before, spec.random_permutation(2))
        assert not torch.equal(before["1.running_mean"], after["1.running_mean"])
        cnn.load_state_dict(after)
        assert torch.allclose(cnn(x), reference, atol=1e-5)


def test_spec_builder_rejects_bad_descriptions():
    builder = SpecBuilder().group("h", FreeGroup(4))
    with pytest.raises(PermutationSpecError, match="unknown permutation group"):
        builder.axis("w", 0, "nope")
    spec = builder.axis("w", 0, "h").build()
    with pytest.raises(PermutationSpecError, match="cover 4"):
        spec.check_shapes({"w": (5, 3)})
    with pytest.raises(PermutationSpecError, match="not understood"):
        sequential_spec(nn.Sequential(nn.Linear(3, 4), nn.MultiheadAttention(4, 2), nn.Linear(4, 2)))
