"""Masked structural growth (MSG, Yao et al. ICLR 2024): new structure enters behind a mask ramped 0 -> 1.

At mask value 0 the grown model computes exactly what the source computed, *whatever* the new weights are
(copies or fresh random), and training moves the mask to 1 over a number of steps (see
:class:`~hf_efftrain.growth.callback.MaskRampCallback`). Masks are forward hooks, so the model class and its
state dict are unchanged; the mask is recorded in the config, so a saved model reloads masked
(:mod:`~hf_efftrain.growth.mask_state`); at value 1 the hooks and the record are removed.

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

from transformers import PreTrainedModel

from hf_efftrain.architectures import get_architecture
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.depth import LayerRef, grow_depth
from hf_efftrain.growth.mask_state import GrowthMask, attach_mask, get_mask, remove_mask, restore_mask, set_mask
from hf_efftrain.growth.width import grow_width, kind_sizes

__all__ = [  # the mask's own functions live in mask_state; importable from here as before
    "GrowthMask", "first_occurrences", "get_mask", "masked_depth", "masked_width", "remove_mask", "restore_mask",
    "set_mask",
]  # fmt: skip


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
    attach_mask(grown, GrowthMask(ramp_steps=ramp_steps, new_layers=new_layers))
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
    new_units = {k: new[k] - old[k] for k in ("ffn", "q") if new[k] > old[k]}
    attach_mask(grown, GrowthMask(ramp_steps=ramp_steps, new_units=new_units))
    return grown
