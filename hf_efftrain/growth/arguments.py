"""Training arguments of the growth package (a mixin of ``EfficientTrainingArguments``).

Growth itself happens between training runs (see :mod:`~hf_efftrain.growth.stacking`); inside one run
the only scheduled action is the masked-growth ramp. Example::

    args = EfficientTrainingArguments(output_dir="out", growth_mask_ramp_steps=200)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_efftrain.growth.config import GrowthConfig
from hf_efftrain.method_config import config_from_arguments


@dataclass
class GrowthArguments:
    """``growth_*`` switches: ramp a masked-growth model's mask from 0 to 1 (see :class:`GrowthConfig`)."""

    growth_mask_ramp_steps: float = field(
        default=0,
        metadata={
            "help": "Masked growth (MSG): raise the mask of a model grown with masked_depth/masked_width from 0 to 1 "
            "over this many optimizer steps, or this fraction (< 1) of max_steps (0 = off, or the ramp stored on "
            "the mask when select_growth trains it)."
        },
    )

    def growth_config(self) -> GrowthConfig:
        """The validated :class:`GrowthConfig` of the ``growth_*`` fields."""
        return config_from_arguments(self, "growth", GrowthConfig)

    def _validate_growth(self) -> None:
        """A bad ramp fails at argument parsing, naming ``growth_mask_ramp_steps``."""
        self.growth_config()
