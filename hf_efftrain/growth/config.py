"""Training arguments of the growth package (a mixin of ``EfficientTrainingArguments``).

Growth itself happens between training runs (see :mod:`~hf_efftrain.growth.stacking`); inside one run
the only scheduled action is the masked-growth ramp. Example::

    args = EfficientTrainingArguments(output_dir="out", growth_mask_ramp_steps=200)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_efftrain.budget import check_steps


@dataclass
class GrowthArguments:
    """``growth_mask_ramp_steps``: ramp a masked-growth model's mask from 0 to 1 over this many steps."""

    growth_mask_ramp_steps: float = field(
        default=0,
        metadata={
            "help": "Masked growth (MSG): raise the mask of a model grown with masked_depth/masked_width from 0 to 1 "
            "over this many optimizer steps, or this fraction (< 1) of max_steps (0 = off, or the ramp stored on "
            "the mask when select_growth trains it)."
        },
    )

    def _validate_growth(self) -> None:
        check_steps("growth_mask_ramp_steps", self.growth_mask_ramp_steps, zero=True)
