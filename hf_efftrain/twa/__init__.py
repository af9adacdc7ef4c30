"""TWA — trainable weight averaging (Li et al., ICLR 2023; journal version arXiv 2205.13104).

Claim: instead of averaging checkpoints uniformly (SWA), *train* the averaging coefficients in the span of
the checkpoints for a few steps; it generalizes at least as well as SWA and lets a run stop early (CIFAR:
100 + 10 TWA epochs vs 200). Two forms:

* ``subspace`` — orthonormal basis P of the checkpoints (stable Gram–Schmidt, split over processes),
  gradients projected g ← Pᵀ(P g) and fed to SGD (:class:`SubspaceTWA`);
* ``layerwise`` — one coefficient per checkpoint and tensor over centred, normalized and optionally
  quantized checkpoints, trained with AdamW (:class:`LayerwiseTWA`).

Use it through ``EfficientTrainingArguments(twa=True, twa_start=0.5, twa_every=10, twa_steps=20)``,
:class:`TWACallback`, or post hoc with :func:`train_twa`. Memory is k/W × D floats per process
(:class:`BasisPlan`), checked before anything is allocated.
"""

from hf_efftrain._lazy import lazy_exports

# Imported on first use (hf_efftrain._lazy): importing the package stays cheap.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "hf_efftrain.twa.arguments": ("TWAArguments",),
        "hf_efftrain.twa.basis": ("SubspaceBasis",),
        "hf_efftrain.twa.callback": ("TWACallback",),
        "hf_efftrain.twa.collect": (
            "Collector",
            "add_from_folder",
        ),
        "hf_efftrain.twa.config": ("TWAConfig",),
        "hf_efftrain.twa.flat": ("TrainableView",),
        "hf_efftrain.twa.layerwise": ("LayerwiseBasis",),
        "hf_efftrain.twa.memory": ("BasisPlan",),
        "hf_efftrain.twa.norm": ("recompute_norm_statistics",),
        "hf_efftrain.twa.optimize": (
            "LayerwiseTWA",
            "SubspaceTWA",
        ),
        "hf_efftrain.twa.quantize": (
            "dequantize",
            "quantize_blocks",
        ),
        "hf_efftrain.twa.train": (
            "collect",
            "train_twa",
        ),
    },
)

__all__ = [
    "BasisPlan",
    "Collector",
    "LayerwiseBasis",
    "LayerwiseTWA",
    "SubspaceBasis",
    "SubspaceTWA",
    "TWAArguments",
    "TWACallback",
    "TWAConfig",
    "TrainableView",
    "add_from_folder",
    "collect",
    "dequantize",
    "quantize_blocks",
    "recompute_norm_statistics",
    "train_twa",
]
