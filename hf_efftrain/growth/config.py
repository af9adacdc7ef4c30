"""The knob of growth *during* a run, as a serializable dataclass: the masked-growth ramp.

Growth itself happens between runs and is configured by a recipe (:mod:`~hf_efftrain.growth.recipe`, data saved
next to the grown model); inside a run the only scheduled action is :class:`MaskRampCallback`. Example::

    config = GrowthConfig(mask_ramp_steps=0.2)          # the mask reaches 1 after a fifth of the run
    MaskRampCallback(config.mask_ramp_steps)
"""

from __future__ import annotations

from dataclasses import dataclass

from hf_efftrain.budget import check_steps
from hf_efftrain.errors import GrowthConfigError
from hf_efftrain.method_config import MethodConfig


@dataclass
class GrowthConfig(MethodConfig):
    """``mask_ramp_steps``: raise a masked-growth mask from 0 to 1 over this many steps or share of a run (0: off)."""

    mask_ramp_steps: float = 0

    def validate(self) -> GrowthConfig:
        """Raise :class:`GrowthConfigError` naming the flag; return ``self`` for chaining."""
        check_steps("growth_mask_ramp_steps", self.mask_ramp_steps, zero=True, error=GrowthConfigError)
        return self
