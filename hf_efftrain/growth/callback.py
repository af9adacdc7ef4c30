"""Trainer callbacks of the growth package: they only *schedule* the functional operators.

:class:`MaskRampCallback` moves a masked-growth mask (see :mod:`~hf_efftrain.growth.masked`) from 0 to 1.
The value is a pure function of ``state.global_step``, and a model reloaded from a checkpoint gets its recorded
mask back at train begin, so a resumed run continues exactly. Example::

    trainer = EfficientTrainer(model=masked_depth(model, plan), args=args, callbacks=[MaskRampCallback(100)])
"""

from __future__ import annotations

from transformers import TrainerCallback

from hf_efftrain.budget import check_steps, resolve_steps
from hf_efftrain.growth.mask_state import get_mask, restore_mask, set_mask


class MaskRampCallback(TrainerCallback):
    """Set the mask to ``min(1, global_step / ramp_steps)`` before every step (no-op for unmasked models).

    ``ramp_steps=None`` uses the ramp stored on the mask by the operator (``masked_depth(..., ramp_steps=)``);
    a fraction in (0, 1) is a share of the run's ``max_steps``, resolved at train begin.
    """

    def __init__(self, ramp_steps: float | None = None) -> None:
        if ramp_steps is not None:
            check_steps("ramp_steps", ramp_steps)
        self.requested = ramp_steps
        self.ramp_steps = ramp_steps if ramp_steps is None or ramp_steps >= 1 else None  # until max_steps is known

    def value(self, step: int, model) -> float | None:
        """The mask value at ``step``: ``min(1, step / ramp)``, or ``None`` for a model without a mask."""
        mask = get_mask(model)
        if mask is None:
            return None
        ramp = self.ramp_steps or mask.ramp_steps
        return min(1.0, step / ramp)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        """Set the mask for the coming step (a pure function of the step, so resume is exact)."""
        if model is not None and (value := self.value(state.global_step, model)) is not None:
            set_mask(model, value)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """Restore a mask recorded in the config (a reloaded checkpoint), resolve a fractional ramp against
        ``max_steps`` and set the mask before the first step."""
        if model is not None:
            restore_mask(model)
        if self.requested is not None:
            self.ramp_steps = resolve_steps(self.requested, state.max_steps)
        self.on_step_begin(args, state, control, model=model, **kwargs)
