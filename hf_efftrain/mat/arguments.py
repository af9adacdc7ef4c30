"""``MATArguments``: the ``mat_*`` training arguments, mixed into :class:`EfficientTrainingArguments`.

Example (command line through ``HfArgumentParser``)::

    python examples/finetune.py --mat --mat_every 10 --mat_warmup_steps 30 --mat_granularity heads+ffn
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from hf_efftrain.errors import MATConfigError
from hf_efftrain.mat.config import MATConfig
from hf_efftrain.method_config import config_from_arguments


@dataclass
class MATArguments:
    """Switches of MAT (modular adaptive training); see :class:`hf_efftrain.mat.MATConfig` for the semantics."""

    mat: bool = field(default=False, metadata={"help": "Enable MAT: gate attention heads by their modular NTK λmax."})
    mat_every: float = field(
        default=0.1, metadata={"help": "Measure λmax every N optimizer steps (a fraction < 1: of max_steps)."}
    )
    mat_warmup_steps: float = field(
        default=0.2, metadata={"help": "Keep every module active for the first N steps (a fraction < 1: of max_steps)."}
    )
    mat_probe_size: int = field(default=16, metadata={"help": "Probe samples per measurement (first rows of a batch)."})
    mat_ema: float = field(default=0.5, metadata={"help": "EMA weight of the previous λmax (0 = no smoothing)."})
    mat_threshold_rule: str = field(
        default="mean", metadata={"help": "Active if λmax >= threshold×mean | threshold×max | threshold-quantile."}
    )
    mat_threshold: float = field(default=1.0, metadata={"help": "Factor or quantile of the threshold rule."})
    mat_scope: str = field(default="model", metadata={"help": "Threshold over the whole model or per layer."})
    mat_output: str = field(
        default="auto", metadata={"help": "NTK of: auto | logits | projection (random, LMs) | loss (not the NTK)."}
    )
    mat_granularity: str = field(default="heads", metadata={"help": "Modules: heads (paper) or heads+ffn."})
    mat_gqa_unit: str = field(
        default="query_head", metadata={"help": "Under GQA gate each query_head or each kv_group as one module."}
    )
    mat_stable_backoff: int = field(
        default=4, metadata={"help": "Probe interval doubles while gates stay stable, up to this × mat_every."}
    )
    mat_stable_tolerance: float = field(
        default=0.0, metadata={"help": "Share of modules whose gate may flip while a probe still counts as stable."}
    )
    mat_stop_backprop: bool = field(
        default=False, metadata={"help": "Stop back-propagation below the lowest layer with an active module."}
    )
    mat_skip_optimizer_update: bool = field(
        default=True, metadata={"help": "Fully gated projections get no gradient, so the optimizer skips them."}
    )

    def mat_config(self) -> MATConfig:
        """The validated :class:`MATConfig` of the ``mat_*`` fields (seed from ``args.seed``)."""
        return config_from_arguments(self, "mat", MATConfig, seed=getattr(self, "seed", 0))

    def _validate_mat(self) -> None:
        """Fail at argument parsing, not at step 1000, naming the flag (``--mat_every``) rather than the knob.

        The values are checked even with MAT off: a typo in a flag is reported whether or not it takes effect.
        """
        try:
            self.mat_config()
        except MATConfigError as err:
            knobs = "|".join(f.name for f in fields(MATConfig))
            raise MATConfigError(re.sub(rf"\b({knobs})\b", r"--mat_\1", str(err), count=1)) from None
