"""Turning a new config plus a remapped state dict into a real model, strictly.

Every operator ends here. Building the target model *from its config* (instead of appending modules to the
source) is what makes growth safe: Llama-family models only run ``layers[:config.num_hidden_layers]``, and
per-layer attributes such as ``layer_idx`` (which select the KV-cache slot) must match the new positions.
Loading with ``strict=True`` proves that every tensor of the target got a value. Example::

    model = build_model(source, new_config, state_dict)     # raises if a key is missing or unexpected
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from transformers import PretrainedConfig, PreTrainedModel

from hf_efftrain.architectures import ArchitectureSpec, get_architecture
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.mask_state import forget_record
from hf_efftrain.growth.pooler import carry_pooler


def layers_prefix(model: PreTrainedModel, spec: ArchitectureSpec | None = None) -> str:
    """State-dict prefix of the layer list, e.g. ``bert.encoder.layer.`` (with the trailing dot)."""
    spec = spec or get_architecture(model)
    return spec.layer_path(model, 0)[: -len("0")]


def split_state_dict(
    model: PreTrainedModel,
) -> tuple[dict[str, torch.Tensor], dict[int, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """``(before, layers, after)``: tensors before the layer list (embeddings), per layer (by index, names
    relative to the layer), and after it (final norm, pooler, task head), in state-dict order."""
    prefix = layers_prefix(model)
    before: dict[str, torch.Tensor] = {}
    after: dict[str, torch.Tensor] = {}
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in model.state_dict().items():
        if name.startswith(prefix):
            index, rest = name[len(prefix) :].split(".", 1)
            layers.setdefault(int(index), {})[rest] = tensor
        else:
            (after if layers else before)[name] = tensor
    return before, layers, after


def derive_config(config: PretrainedConfig, depth_plan: list[int] | None = None, **changes) -> PretrainedConfig:
    """A copy of ``config`` with ``changes`` set; per-layer list attributes (e.g. Qwen2's ``layer_types``)
    are re-indexed by ``depth_plan`` (target layer -> source layer) so they keep one entry per layer."""
    new = copy.deepcopy(config)
    forget_record(new)  # a growth mask lives on the model it was made for, never on a model built from it
    spec = get_architecture(config)
    old_depth = spec.num_layers(config)
    if depth_plan is not None:
        for key, value in config.to_dict().items():
            if isinstance(value, list) and len(value) == old_depth and hasattr(new, key):
                setattr(new, key, [value[i] for i in depth_plan])
        changes = {spec.depth_key: len(depth_plan), **changes}
    for key, value in changes.items():
        setattr(new, key, value)
    return new


def build_model(
    like: PreTrainedModel,
    config: PretrainedConfig,
    state_dict: dict[str, torch.Tensor] | Callable[[PreTrainedModel], dict[str, torch.Tensor]],
    seed: int = 0,
) -> PreTrainedModel:
    """Instantiate ``type(like)`` from ``config``, load ``state_dict`` strictly, renumber per-layer attributes.

    ``state_dict`` may be a function of the freshly initialized target (operators that keep part of the
    fresh initialization, e.g. masked growth, read it there). Tied tensors get the value of their first name.
    """
    torch.manual_seed(seed)
    model = type(like)(config)
    carry_pooler(like, model)  # a pooler the task class lacks but the source carries (see growth.pooler)
    tensors = state_dict(model) if callable(state_dict) else state_dict
    tensors = _resolve_ties(model, dict(tensors))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise GrowthError(f"the grown state dict does not fit {type(model).__name__}: {err}") from err
    renumber_layers(model)
    return model.to(next(like.parameters()).dtype).train(like.training)


def _resolve_ties(model: PreTrainedModel, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    for names in groups.values():
        present = [n for n in names if n in tensors]
        for name in names:
            if present:
                tensors[name] = tensors[present[0]]
    return tensors


def renumber_layers(model: PreTrainedModel) -> None:
    """Set every per-layer index attribute (``layer_idx``) to the layer's position; check the depth."""
    spec = get_architecture(model)
    layers = spec.layers(model)
    if len(layers) != spec.num_layers(model.config):
        raise GrowthError(f"model has {len(layers)} layers but config says {spec.num_layers(model.config)}")
    for index, layer in enumerate(layers):
        for attribute in spec.layer_attributes:
            owner_path, _, name = attribute.rpartition(".")
            owner = layer.get_submodule(owner_path) if owner_path else layer
            if hasattr(owner, name):
                setattr(owner, name, index)
