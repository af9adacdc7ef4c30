"""Masked structural growth (MSG, Yao et al. ICLR 2024): new structure enters behind a mask ramped 0 -> 1.

At mask value 0 the grown model computes exactly what the source computed, *whatever* the new weights are
(copies or fresh random), and training moves the mask to 1 over a number of steps (see
:class:`~hf_efftrain.growth.callback.MaskRampCallback`). Masks are forward hooks, so the model class and its
state dict are unchanged; at value 1 the hooks are removed.

* new layers: ``h_out = h_in + m * (layer(h_in) - h_in)`` — at ``m = 0`` the layer is the identity;
* new MLP units and attention heads: the inputs of ``mlp_out`` / the attention output projection that come
  from new units are multiplied by ``m`` — at ``m = 0`` they contribute nothing.

Growing the hidden size is not supported here: the new residual units would enter every LayerNorm's
statistics; use :func:`~hf_efftrain.growth.width.grow_width` (exact for integer factors). Example::

    grown = masked_depth(model, copy_all(6, 12))           # new layers 6..11 masked, mask value 0
    set_mask(grown, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel

from hf_efftrain.architectures import get_architecture
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.depth import LayerRef, grow_depth
from hf_efftrain.growth.width import grow_width, kind_sizes

MASK_ATTRIBUTE = "hf_efftrain_growth_mask"


@dataclass
class GrowthMask:
    """The current mask value, the hooks that apply it and what they cover (for reports)."""

    value: float = 0.0
    ramp_steps: int = 100
    handles: list = field(default_factory=list)
    new_layers: list[int] = field(default_factory=list)
    new_units: dict[str, int] = field(default_factory=dict)


def get_mask(model: nn.Module) -> GrowthMask | None:
    """The model's growth mask, or ``None`` when it has none (never grown, or mask already removed)."""
    return getattr(model, MASK_ATTRIBUTE, None)


def set_mask(model: nn.Module, value: float) -> None:
    """Set the mask value (clamped to [0, 1]); at 1 the hooks are removed and the model is a plain model."""
    mask = get_mask(model)
    if mask is None:
        return
    mask.value = float(min(max(value, 0.0), 1.0))
    if mask.value >= 1.0:
        remove_mask(model)


def remove_mask(model: nn.Module) -> None:
    """Drop the hooks (the model then runs all its structure at full strength)."""
    mask = get_mask(model)
    if mask is not None:
        for handle in mask.handles:
            handle.remove()
        delattr(model, MASK_ATTRIBUTE)


def _layer_hook(mask: GrowthMask):
    def hook(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        first = output[0] if isinstance(output, tuple) else output
        mixed = hidden + mask.value * (first - hidden)
        return (mixed, *output[1:]) if isinstance(output, tuple) else mixed

    return hook


def _input_hook(mask: GrowthMask, start: int):
    def hook(module, args):
        (features, *rest) = args
        scale = torch.ones(features.shape[-1], dtype=features.dtype, device=features.device)
        scale[start:] = mask.value
        return (features * scale, *rest)

    return hook


def first_occurrences(plan: Sequence[LayerRef], num_layers: int) -> list[int]:
    """Target positions holding the source layers in order (the rest are new); raises if that is impossible."""
    seen: dict[LayerRef, int] = {}
    for position, ref in enumerate(plan):
        seen.setdefault(ref, position)
    originals = [seen.get((0, layer)) for layer in range(num_layers)]
    if None in originals or originals != sorted(originals) or any(s != 0 for s, _ in seen):
        raise GrowthError(
            "masked depth growth needs every source layer, once and in order, among the target layers of a single "
            "source (then masking the others is the identity); this plan reorders or drops layers"
        )
    return [p for p in range(len(plan)) if p not in originals]


def masked_depth(
    model: PreTrainedModel, plan: Sequence[LayerRef], fresh: bool = False, ramp_steps: int = 100, seed: int = 0
) -> PreTrainedModel:
    """Depth growth with the new layers masked to the identity (copies of their source layer, or ``fresh``)."""
    spec = get_architecture(model)
    new_layers = first_occurrences(plan, spec.num_layers(model.config))
    grown = grow_depth([model], plan, seed=seed)
    layers = spec.layers(grown)
    if fresh:
        for index in new_layers:
            layers[index].apply(grown._init_weights)
    mask = GrowthMask(ramp_steps=ramp_steps, new_layers=new_layers)
    mask.handles = [layers[i].register_forward_hook(_layer_hook(mask), with_kwargs=True) for i in new_layers]
    setattr(grown, MASK_ATTRIBUTE, mask)
    return grown


def masked_width(
    model: PreTrainedModel,
    intermediate_size: int | None = None,
    num_heads: int | None = None,
    num_kv_heads: int | None = None,
    ramp_steps: int = 100,
    seed: int = 0,
) -> PreTrainedModel:
    """More MLP units and/or heads, freshly initialized and masked; the hidden size stays."""
    spec = get_architecture(model)
    if getattr(model.config, "head_dim", None) is None and num_heads not in (
        None,
        spec.geometry(model.config).num_heads,
    ):
        raise GrowthError(f"{model.config.model_type} ties heads to the hidden size; masked growth cannot add heads")
    old = kind_sizes(model)
    grown = grow_width(model, None, intermediate_size, num_heads, num_kv_heads, new_units="fresh", seed=seed)
    new = kind_sizes(grown)
    mask = GrowthMask(ramp_steps=ramp_steps, new_units={k: new[k] - old[k] for k in ("ffn", "q") if new[k] > old[k]})
    for layer in spec.layers(grown):
        if new["ffn"] > old["ffn"]:
            target = layer.get_submodule(spec.mlp_out.path)
            mask.handles.append(target.register_forward_pre_hook(_input_hook(mask, old["ffn"])))
        if new["q"] > old["q"]:
            target = layer.get_submodule(spec.output.path)
            mask.handles.append(target.register_forward_pre_hook(_input_hook(mask, old["q"])))
    setattr(grown, MASK_ATTRIBUTE, mask)
    return grown
