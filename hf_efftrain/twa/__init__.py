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

from hf_efftrain.twa.arguments import TWAArguments
from hf_efftrain.twa.basis import SubspaceBasis
from hf_efftrain.twa.callback import TWACallback
from hf_efftrain.twa.collect import Collector, add_from_folder
from hf_efftrain.twa.config import TWAConfig
from hf_efftrain.twa.flat import TrainableView
from hf_efftrain.twa.layerwise import LayerwiseBasis
from hf_efftrain.twa.memory import BasisPlan
from hf_efftrain.twa.norm import recompute_norm_statistics
from hf_efftrain.twa.optimize import LayerwiseTWA, SubspaceTWA
from hf_efftrain.twa.quantize import dequantize, quantize_blocks
from hf_efftrain.twa.train import collect, train_twa

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
