"""``twa_*`` training arguments, mixed into ``EfficientTrainingArguments`` (readable by ``HfArgumentParser``).

Example::

    args = EfficientTrainingArguments(output_dir="out", max_steps=200, twa=True, twa_start=0.5, twa_steps=20)
    args.twa_config()            # -> TWAConfig(start=0.5, every=10, steps=20, ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_efftrain.errors import TWAConfigError
from hf_efftrain.method_config import config_from_arguments
from hf_efftrain.twa.config import TWAConfig


@dataclass
class TWAArguments:
    """Switches of trainable weight averaging (see ``docs/twa.md``)."""

    twa: bool = field(default=False, metadata={"help": "Collect checkpoints, then finish with a short TWA phase."})
    twa_start: float = field(
        default=0.5,
        metadata={"help": "Step where collection ends and TWA begins: a fraction of max_steps (<1) or a step number."},
    )
    twa_collect_from: float = field(
        default=0.0,
        metadata={"help": "First step to collect at: a fraction of max_steps (<1) or a step number (skip warm-up)."},
    )
    twa_every: float = field(
        default=0.1,
        metadata={"help": "Collect the trainable weights every N optimizer steps (a fraction < 1: of max_steps)."},
    )
    twa_steps: float = field(
        default=0.2,
        metadata={"help": "Optimizer steps of the TWA phase, then training stops (a fraction < 1: of max_steps)."},
    )
    twa_form: str = field(
        default="subspace",
        metadata={"help": "'subspace' (orthonormal basis, projected SGD) or 'layerwise' (per-tensor coefficients)."},
    )
    twa_lr: float = field(default=0.05, metadata={"help": "Learning rate of the TWA phase (SGD or AdamW)."})
    twa_momentum: float = field(default=0.9, metadata={"help": "SGD momentum of the subspace form."})
    twa_weight_decay: float = field(default=0.0, metadata={"help": "Weight decay of the TWA optimizer."})
    twa_schedule: str = field(default="cosine", metadata={"help": "TWA learning-rate schedule: cosine|step|constant."})
    twa_trust: float = field(
        default=1.0,
        metadata={
            "help": "Keep the TWA weights within this many RMS checkpoint spreads of where the phase started "
            "(twa_init), whatever twa_lr is (0 = unconstrained)."
        },
    )
    twa_bits: int = field(default=0, metadata={"help": "Layer-wise form: store the basis with 1-8 bits (0 = float32)."})
    twa_rank_tol: float = field(
        default=1e-4, metadata={"help": "Drop a checkpoint whose new direction is below this fraction of its norm."}
    )
    twa_max_basis_mb: float | None = field(
        default=None,
        metadata={"help": "Fail early if the basis needs more MiB per process (default: free memory)."},
    )
    twa_snapshot_dir: str | None = field(
        default=None, metadata={"help": "Keep collected checkpoints in this folder instead of memory."}
    )
    twa_checkpoints_from: str | None = field(
        default=None, metadata={"help": "Skip collection: use the checkpoint-N/snapshot-N folders in this folder."}
    )
    twa_init: str = field(
        default="average",
        metadata={
            "help": "Where the TWA phase starts, and the centre of its trust region: 'average' (the paper: the plain "
            "average of the checkpoints) or 'last' (the last collected checkpoint, often the best point of a "
            "fine-tuning run whose learning rate decays)."
        },
    )
    twa_holdout: float = field(
        default=0.0,
        metadata={
            "help": "TWA-v: hold this fraction (0-1) of the training rows out of ordinary training; the TWA phase "
            "trains the coefficients on them instead of on training batches (0 = off; needs EfficientTrainer)."
        },
    )

    def twa_config(self) -> TWAConfig:
        """The validated :class:`TWAConfig` of the ``twa_*`` fields."""
        return config_from_arguments(self, "twa", TWAConfig)

    def _validate_twa(self) -> None:
        """Check the knobs up front, and what TWA cannot combine with."""
        config = self.twa_config()  # values are checked even with TWA off; how they fit the run only with it on
        if not self.twa:
            if self.twa_holdout:
                raise TWAConfigError("twa_holdout holds rows out for the TWA phase, but twa is off: set twa=True")
            return
        if getattr(self, "load_best_model_at_end", False):
            raise TWAConfigError("twa=True makes the TWA solution the final model: turn off load_best_model_at_end")
        max_steps = getattr(self, "max_steps", -1)
        if max_steps > 0:  # the run's length is known: the phase must fit in it (else checked at train begin)
            config.collection_steps(max_steps)
            config.start_step(max_steps)
