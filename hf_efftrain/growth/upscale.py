"""Depth up-scaling (SOLAR, Kim et al. 2023): a deeper decoder from two overlapping copies of one layer stack.

The stack of ``L`` layers is duplicated; the last ``m`` layers of the first copy and the first ``m`` of the second
are dropped and the two are concatenated: layers ``[0, L-m)`` then ``[m, L)``, ``2 (L - m)`` in all (SOLAR 10.7B:
32 -> 48 with ``m = 8``). The seam joins layer ``L-m-1`` to layer ``m``, closer in function than ``L-1`` to ``0``
(plain stacking), which is why SOLAR recovers the source's loss after a short continued pre-training. It is
:func:`~hf_efftrain.growth.depth.overlap` applied by :func:`~hf_efftrain.growth.depth.grow_depth`, so the model
is rebuilt from a new config and loaded strictly, and every layer gets its own ``layer_idx`` (its own KV-cache
slot): ``generate`` with a cache works, and so does any family of the architecture registry (Llama, Mistral,
Qwen2 with its per-layer ``layer_types``, ...). Example::

    model = AutoModelForCausalLM.from_pretrained(smollm2_path())      # 30 layers
    deeper = upscale_depth(model, m=7)                                 # 46 layers: 0..22 then 7..29
"""

from __future__ import annotations

from transformers import PreTrainedModel

from hf_efftrain.architectures import get_architecture
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.depth import grow_depth, overlap


def default_overlap(num_layers: int) -> int:
    """SOLAR's proportion: drop a quarter of the stack at each side of the seam (32 layers -> m = 8)."""
    return max(1, num_layers // 4)


def upscale_depth(model: PreTrainedModel, m: int | None = None, seed: int = 0) -> PreTrainedModel:
    """SOLAR depth up-scaling of ``model``: layers ``[0, L-m)`` then ``[m, L)`` (default ``m``: ``L // 4``).

    >>> deeper = upscale_depth(tiny_model("llama", "causal-lm", layers=4), m=1)     # 6 layers: 0 1 2 1 2 3
    """
    depth = get_architecture(model).num_layers(model.config)
    m = default_overlap(depth) if m is None else m
    if not 0 <= m < depth:
        raise GrowthError(
            f"SOLAR up-scaling drops m layers on each side of the seam: need 0 <= m < {depth} (the model's layers), "
            f"got m={m}"
        )
    return grow_depth([model], overlap(depth, m), seed=seed)
