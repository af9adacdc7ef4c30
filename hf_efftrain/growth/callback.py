"""Trainer callbacks of the growth package: they only *schedule* the functional operators.

:class:`MaskRampCallback` moves a masked-growth mask (see :mod:`~hf_efftrain.growth.masked`) from 0 to 1.
The value is a pure function of ``state.global_step``, so a resumed run continues exactly. Example::

    trainer = EfficientTrainer(model=masked_depth(model, plan), args=args, callbacks=[MaskRampCallback(100)])
"""

from __future__ import annotations

from transformers import TrainerCallback

from hf_efftrain.growth.masked import get_mask, set_mask


class MaskRampCallback(TrainerCallback):
    """Set the mask to ``min(1, global_step / ramp_steps)`` before every step (no-op for unmasked models).

    ``ramp_steps=None`` uses the ramp stored on the mask by the operator (``masked_depth(..., ramp_steps=)``).
    """

    def __init__(self, ramp_steps: int | None = None) -> None:
        if ramp_steps is not None and ramp_steps < 1:
            raise ValueError(f"ramp_steps must be >= 1, got {ramp_steps}")
        self.ramp_steps = ramp_steps

    def value(self, step: int, model) -> float | None:
        mask = get_mask(model)
        if mask is None:
            return None
        ramp = self.ramp_steps or mask.ramp_steps
        return min(1.0, step / ramp)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and (value := self.value(state.global_step, model)) is not None:
            set_mask(model, value)

    on_train_begin = on_step_begin
