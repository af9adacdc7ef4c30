"""Depth growth: build a deeper model out of the layers of one or more equal-width checkpoints.

A *plan* is a list with one entry per target layer, ``(source, layer)``: which checkpoint and which of its
layers the target layer copies. The plan functions below are the known strategies; :func:`grow_depth`
applies any plan. Embeddings come from the source of the first target layer, everything after the layer
list (final norm, pooler, task head) from the source of the last (mergekit "passthrough" convention).

=================  ==============================================  ===========================================
strategy           target layer i copies                           reference
=================  ==============================================  ===========================================
``copy_all``       ``i mod L``                                     G_stack (Du et al. 2024)
``interleave``     ``floor(i * L / L_t)`` ("112233")               progressive stacking
``top_k``          all layers, then the top ``k`` repeated         gradual stacking (Reddi et al. 2023)
``middle``         the middle ``block`` repeated in place          MIDAS (Saunshi et al. 2024)
``overlap``        ``[0, L-m)`` then ``copies-1`` times ``[m, L)``  depth up-scaling (SOLAR)
``slices``         any ``(source, start, stop)`` ranges            mergekit passthrough
=================  ==============================================  ===========================================

Example::

    deeper = grow_depth([model], copy_all(6, 12))            # 6 -> 12 layers, loads strictly
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedModel

from hf_efftrain.architectures import get_architecture
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.assemble import build_model, derive_config, split_state_dict

LayerRef = tuple[int, int]
"""``(source index, layer index in that source)``."""


def copy_all(num_layers: int, target_layers: int) -> list[LayerRef]:
    """G_stack: the whole stack repeated, target layer ``i`` <- ``i mod L``."""
    _check_growth(num_layers, target_layers)
    return [(0, i % num_layers) for i in range(target_layers)]


def interleave(num_layers: int, target_layers: int) -> list[LayerRef]:
    """Each layer repeated in place ("112233"): target ``i`` <- ``floor(i * L / L_t)``."""
    _check_growth(num_layers, target_layers)
    return [(0, i * num_layers // target_layers) for i in range(target_layers)]


def top_k(num_layers: int, target_layers: int, k: int) -> list[LayerRef]:
    """Gradual stacking: keep all layers, then append copies of the top ``k`` until ``target_layers``."""
    _check_growth(num_layers, target_layers)
    if not 1 <= k <= num_layers:
        raise GrowthError(f"top_k needs 1 <= k <= {num_layers} (source layers), got k={k}")
    extra = [num_layers - k + j % k for j in range(target_layers - num_layers)]
    return [(0, i) for i in [*range(num_layers), *extra]]


def middle(num_layers: int, target_layers: int, block: int | None = None) -> list[LayerRef]:
    """MIDAS: repeat the middle ``block`` layers in place until ``target_layers`` (default block ``L // 3``)."""
    _check_growth(num_layers, target_layers)
    block = block or max(1, num_layers // 3)
    new = target_layers - num_layers
    if not 1 <= block <= num_layers or new % block:
        raise GrowthError(
            f"middle: block={block} must be in 1..{num_layers} and divide the {new} new layers; choose another block"
        )
    start = (num_layers - block) // 2
    order = [*range(start), *list(range(start, start + block)) * (new // block + 1), *range(start + block, num_layers)]
    return [(0, i) for i in order]


def overlap(num_layers: int, m: int, copies: int = 2) -> list[LayerRef]:
    """Depth up-scaling (SOLAR): layers ``[0, L-m)``, then ``copies - 1`` times ``[m, L)``; ``copies*(L-m)`` layers."""
    if not 0 <= m < num_layers or copies < 2:
        raise GrowthError(f"overlap needs 0 <= m < {num_layers} and copies >= 2, got m={m}, copies={copies}")
    order = [*range(num_layers - m)] + [*range(m, num_layers)] * (copies - 1)
    return [(0, i) for i in order]


def slices(ranges: Sequence[tuple[int, int, int]]) -> list[LayerRef]:
    """mergekit passthrough: ``[(source, start, stop), ...]`` -> the layers ``start..stop-1`` of each, in order."""
    plan: list[LayerRef] = []
    for source, start, stop in ranges:
        if not 0 <= start < stop:
            raise GrowthError(f"slice ({source}, {start}, {stop}): need 0 <= start < stop")
        plan += [(source, i) for i in range(start, stop)]
    return plan


def _check_growth(num_layers: int, target_layers: int) -> None:
    if not 0 < num_layers <= target_layers:
        raise GrowthError(f"cannot grow {num_layers} layers to {target_layers}: the target must be at least as deep")


def check_plan(sources: Sequence[PreTrainedModel], plan: Sequence[LayerRef]) -> None:
    """Raise :class:`GrowthError` if the plan names a missing source/layer or the sources differ in width."""
    if not sources:
        raise GrowthError("depth growth needs at least one source model")
    if not plan:
        raise GrowthError("the layer plan is empty")
    spec = get_architecture(sources[0])
    for source, layer in plan:
        if not 0 <= source < len(sources):
            raise GrowthError(f"the plan names source {source} but only {len(sources)} source(s) were given")
        depth = spec.num_layers(sources[source].config)
        if not 0 <= layer < depth:
            raise GrowthError(f"the plan names layer {layer} of source {source}, which has layers 0..{depth - 1}")
    check_same_width(sources)


def check_same_width(sources: Sequence[PreTrainedModel]) -> None:
    """Sources must be of one family and have equal width, heads and vocabulary to share layers."""
    first = sources[0]
    spec = get_architecture(first)
    for index, other in enumerate(sources[1:], start=1):
        if type(other) is not type(first):
            raise GrowthError(f"source {index} is a {type(other).__name__}, source 0 a {type(first).__name__}")
        for key in (spec.hidden_key, spec.heads_key, spec.kv_heads_key, "vocab_size"):
            if key and getattr(first.config, key, None) != getattr(other.config, key, None):
                raise GrowthError(
                    f"source {index} has {key}={getattr(other.config, key, None)} but source 0 has "
                    f"{getattr(first.config, key, None)}: depth fusion needs checkpoints of equal width and vocabulary"
                )


def grow_depth(sources: Sequence[PreTrainedModel], plan: Sequence[LayerRef], seed: int = 0) -> PreTrainedModel:
    """A new model whose layer ``i`` is a copy of layer ``plan[i][1]`` of ``sources[plan[i][0]]``.

    >>> deeper = grow_depth([tiny_model("llama")], [(0, 0), (0, 1), (0, 1)])    # 2 -> 3 layers
    """
    check_plan(sources, plan)
    parts = [split_state_dict(model) for model in sources]
    first, last = plan[0][0], plan[-1][0]
    spec = get_architecture(sources[0])
    prefix = spec.layer_path(sources[0], 0)[:-1]
    state = dict(parts[first][0])
    for target, (source, layer) in enumerate(plan):
        state.update({f"{prefix}{target}.{k}": v for k, v in parts[source][1][layer].items()})
    state.update(parts[last][2])
    config = derive_config(sources[first].config, depth_plan=[layer for _, layer in plan])
    return build_model(sources[first], config, state, seed=seed)
