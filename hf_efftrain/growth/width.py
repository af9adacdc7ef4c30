"""Function-preserving width growth (Net2Net, Chen et al. 2016; bert2BERT, Chen et al. 2022).

Every new unit copies a source unit; where its output is *read*, the weights of the copies split the weight
they replace, so the sum each reader sees is unchanged. This is exact for the MLP width and for the number of
attention heads (whole heads are copied with ``head_dim`` fixed, so every head's scores and softmax are
unchanged; under GQA whole query groups are copied with their k/v head). For the hidden size it is exact only
when every unit is copied the same number of times (``new = k * old``): LayerNorm/RMSNorm average over the
hidden units, and unequal copy counts change the mean and variance. Architectures without a ``head_dim``
config key (BERT, GPT-2) tie heads to the hidden size (``heads = hidden / head_dim``).

Copies receive identical gradients and stay identical unless something breaks the symmetry: ``noise > 0``
splits read weights unequally (weights of one unit's copies still sum to the original, so the function is
still preserved). Tied input/output embeddings are untied when the hidden size grows (the output embedding is
a reader and must be split, the input embedding a writer and must not). Example::

    wider = grow_width(model, hidden_size=32, intermediate_size=96)
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from hf_efftrain.architectures import get_architecture
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.assemble import build_model, derive_config
from hf_efftrain.growth.axes import ffn_key, ffn_size, tensor_axes
from hf_efftrain.growth.remap import UnitMap, remap_tensor


def unit_map(old: int, new: int, mode: str, noise: float, generator: torch.Generator) -> UnitMap:
    """Target unit ``j`` copies ``j mod old`` (``mode="copy"``) or is fresh beyond ``old`` (``"fresh"``)."""
    if new < old:
        raise GrowthError(f"width growth cannot shrink {old} units to {new}")
    index = torch.arange(new) % old if mode == "copy" else torch.where(torch.arange(new) < old, torch.arange(new), -1)
    counts = torch.bincount(index[index >= 0], minlength=old).clamp(min=1).to(torch.float64)
    scale = torch.ones(new, dtype=torch.float64)
    known = index >= 0
    scale[known] = 1.0 / counts[index[known]]
    if noise > 0 and mode == "copy":
        jitter = torch.randn(new, generator=generator, dtype=torch.float64) * noise
        mean = torch.zeros(old, dtype=torch.float64).index_add_(0, index, jitter) / counts
        scale = scale + (jitter - mean[index]) / counts[index]  # copies of one unit still sum to 1
    return UnitMap(index, scale.float())


def head_maps(geo, new_heads: int, new_kv: int, mode: str, noise: float, gen: torch.Generator) -> dict[str, UnitMap]:
    """Maps of the ``q`` and ``kv`` dims when heads grow: whole heads, ``head_dim`` fixed, GQA groups kept.

    Target head ``j`` copies ``j mod heads``; with the group size fixed this is also the head of k/v group
    ``(j // group) mod kv_heads``, so each copied query head reads its own k/v head's copy.
    """
    if new_heads * geo.num_kv_heads != new_kv * geo.num_heads:
        raise GrowthError(
            f"{new_heads} heads with {new_kv} k/v heads changes the GQA group size {geo.group_size}; "
            f"choose num_kv_heads = num_heads / {geo.group_size}"
        )
    q_heads = unit_map(geo.num_heads, new_heads, mode, noise, gen)
    kv_heads = unit_map(geo.num_kv_heads, new_kv, mode, 0.0, gen)
    dims = torch.arange(geo.head_dim)

    def expand(unit: UnitMap) -> UnitMap:
        index = torch.where(unit.index[:, None] >= 0, unit.index[:, None] * geo.head_dim + dims, -1).flatten()
        return UnitMap(index, unit.scale.repeat_interleave(geo.head_dim))

    return {"q": expand(q_heads), "kv": expand(kv_heads)}


def kind_sizes(model: PreTrainedModel) -> dict[str, int]:
    """Current size of each typed axis kind."""
    spec = get_architecture(model)
    geo = spec.geometry(model.config)
    return {
        "hidden": geo.hidden_size,
        "ffn": ffn_size(model),
        "q": geo.num_heads * geo.head_dim,
        "kv": geo.num_kv_heads * geo.head_dim,
    }


def width_config(model: PreTrainedModel, hidden: int, ffn: int, heads: int, kv_heads: int):
    """The target config; checks that ``head_dim`` stays fixed where the family derives it from the hidden size."""
    spec = get_architecture(model)
    geo = spec.geometry(model.config)
    if getattr(model.config, "head_dim", None) is None and heads * geo.head_dim != hidden:
        raise GrowthError(
            f"{model.config.model_type} derives head_dim from hidden_size/heads: with head_dim {geo.head_dim} fixed, "
            f"hidden_size {hidden} needs {hidden // geo.head_dim} heads (got {heads}) and must be a multiple of "
            f"{geo.head_dim}"
        )
    changes = {spec.hidden_key: hidden, spec.heads_key: heads, ffn_key(model.config): ffn}
    if spec.kv_heads_key:
        changes[spec.kv_heads_key] = kv_heads
    if hidden != geo.hidden_size:
        changes["tie_word_embeddings"] = False
    return derive_config(model.config, **changes)


def grow_width(
    model: PreTrainedModel,
    hidden_size: int | None = None,
    intermediate_size: int | None = None,
    num_heads: int | None = None,
    num_kv_heads: int | None = None,
    noise: float = 0.0,
    new_units: str = "copy",
    seed: int = 0,
) -> PreTrainedModel:
    """A wider copy of ``model``; unspecified sizes stay (heads follow the hidden size when they must).

    ``new_units="copy"`` is Net2Net (function-preserving as described above); ``"fresh"`` keeps the new
    units' random initialization (used behind a mask by :mod:`~hf_efftrain.growth.masked`).

    >>> wider = grow_width(tiny_model("llama"), intermediate_size=64, num_heads=8, num_kv_heads=4)
    """
    if new_units not in ("copy", "fresh"):
        raise GrowthError(f"new_units must be 'copy' or 'fresh', got {new_units!r}")
    spec = get_architecture(model)
    geo = spec.geometry(model.config)
    old = kind_sizes(model)
    hidden = hidden_size or geo.hidden_size
    derived_heads = getattr(model.config, "head_dim", None) is None
    heads = num_heads or (hidden // geo.head_dim if derived_heads else geo.num_heads)
    kv_heads = num_kv_heads or heads // geo.group_size
    config = width_config(model, hidden, intermediate_size or old["ffn"], heads, kv_heads)
    gen = torch.Generator().manual_seed(seed)
    maps = {
        "hidden": unit_map(old["hidden"], hidden, new_units, noise, gen),
        "ffn": unit_map(old["ffn"], intermediate_size or old["ffn"], new_units, noise, gen),
        **head_maps(geo, heads, kv_heads, new_units, noise, gen),
    }
    return build_model(model, config, lambda target: remap_state(model, target, maps, old), seed=seed)


def remap_state(
    model: PreTrainedModel, target: PreTrainedModel, maps: dict[str, UnitMap], old_sizes: dict[str, int]
) -> dict[str, torch.Tensor]:
    """Every tensor of ``model`` remapped into the shape of the same tensor of ``target``."""
    axes = tensor_axes(model)
    fresh = target.state_dict()
    state = {}
    for name, tensor in model.state_dict().items():
        if name not in fresh:
            raise GrowthError(f"{name} has no counterpart in the grown model")
        state[name] = remap_tensor(tensor, fresh[name], axes[name], maps, old_sizes)
    return state
