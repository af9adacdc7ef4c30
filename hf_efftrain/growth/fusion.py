"""Deep-Fusion width fusion (Mazzawi et al. 2023): two same-shape checkpoints side by side in one model.

The fused model has twice the hidden size, MLP width and heads (``head_dim`` fixed). Along every typed axis
(see :mod:`~hf_efftrain.growth.axes`) model A takes the first half and model B the second, and weights are
block-diagonal: A's heads and MLP units read and write only A's half of the residual stream, B's only B's.
Output readers (LM head, classifier: an untyped output axis reading the hidden units) get ``[W_A, W_B] / 2``
and untyped tensors (output biases) ``(b_A + b_B) / 2``, so the output is the *average* of the two models.

Where exactness holds and where it breaks: embeddings, attention (scores, softmax, values), MLPs and the
output average are exact, because the two halves never mix. LayerNorm and RMSNorm are not: they normalize
over the whole fused width, i.e. with the mean/variance of ``[h_A, h_B]`` instead of each half's own. The
fused output therefore equals the average exactly only when the two halves have the same per-token
statistics, e.g. fusing a model with itself; for two different checkpoints it is an approximation whose
error :func:`fusion_gap` measures. Example::

    fused = fuse_width(model_a, model_b)
    gap = fusion_gap(fused, [model_a, model_b], batch)      # max |fused - mean(a, b)| on the logits
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from hf_efftrain.architectures import get_architecture
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.assemble import build_model
from hf_efftrain.growth.axes import TensorAxes, tensor_axes
from hf_efftrain.growth.remap import UnitMap, remap_tensor
from hf_efftrain.growth.width import kind_sizes, width_config


def _half_maps(sizes: dict[str, int], second: bool) -> dict[str, UnitMap]:
    maps = {}
    for kind, size in sizes.items():
        index = torch.arange(2 * size) - (size if second else 0)
        index = torch.where((index >= 0) & (index < size), index, -1)
        maps[kind] = UnitMap(index, torch.ones(2 * size))
    return maps


def _fuse_tensor(a: torch.Tensor, b: torch.Tensor, shape: torch.Size, axes: TensorAxes, sizes) -> torch.Tensor:
    typed = [axis is not None for axis in axes]
    if not any(typed):
        return (a + b) / 2
    factor = 0.5 if not all(typed) and any(axis.read for axis in axes if axis) else 1.0
    zeros = torch.zeros(shape, dtype=a.dtype)
    placed_a = remap_tensor(a, zeros, axes, _half_maps(sizes, second=False), sizes, factor)
    return remap_tensor(b, placed_a, axes, _half_maps(sizes, second=True), sizes, factor)


def check_same_shape(a: PreTrainedModel, b: PreTrainedModel) -> None:
    """Fusion needs the same family, config shape and tensor shapes."""
    if type(a) is not type(b):
        raise GrowthError(f"cannot fuse a {type(a).__name__} with a {type(b).__name__}")
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise GrowthError("fusion needs two checkpoints of the same shape (same config sizes and tensors)")


def fuse_width(a: PreTrainedModel, b: PreTrainedModel, seed: int = 0) -> PreTrainedModel:
    """One model of double width computing both; output = average of the two (up to the norms, see above)."""
    check_same_shape(a, b)
    spec = get_architecture(a)
    geo = spec.geometry(a.config)
    sizes = kind_sizes(a)
    config = width_config(a, 2 * geo.hidden_size, 2 * sizes["ffn"], 2 * geo.num_heads, 2 * geo.num_kv_heads)
    axes = tensor_axes(a)
    sa, sb = a.state_dict(), b.state_dict()

    def state(target: PreTrainedModel) -> dict[str, torch.Tensor]:
        fresh = target.state_dict()
        return {name: _fuse_tensor(sa[name], sb[name], fresh[name].shape, axes[name], sizes) for name in sa}

    return build_model(a, config, state, seed=seed)


@torch.no_grad()
def fusion_gap(fused: PreTrainedModel, sources: list[PreTrainedModel], batch: dict[str, torch.Tensor]) -> float:
    """Max absolute difference between the fused model's logits and the mean of the sources' logits."""
    outputs = [m.eval()(**batch).logits for m in sources]
    return float((fused.eval()(**batch).logits - torch.stack(outputs).mean(0)).abs().max())
