"""The knobs of trajectory transfer, as one serializable dataclass (saved next to every transfer's output).

Example::

    config = TransferConfig(method="fgmt", steps=20, spacing="cosine", batches_per_step=2)
"""

from __future__ import annotations

from dataclasses import dataclass

from hf_efftrain.errors import TransferError
from hf_efftrain.method_config import MethodConfig

METHODS = ("fgmt", "gmt", "naive")
SPACINGS = ("cosine", "linear", "checkpoints")
STAY_AT = ("previous", "identity")


@dataclass
class TransferConfig(MethodConfig):
    """How to transfer a trajectory.

    ``method``: ``fgmt`` (fast: one new gradient pair per step, T pairs in all), ``gmt`` (re-computes the
    gradients at every earlier transferred point each step, T(T+1)/2 pairs) or ``naive`` (no permutation:
    θ'_0 + (θ_s − θ_0)). ``spacing``: where the source points lie between its first and last checkpoint —
    ``cosine`` (dense near the end, λ_k = sin(πk/2T)), ``linear`` (λ_k = k/T) or ``checkpoints`` (the saved
    checkpoints themselves; ``steps`` is then ignored). ``batches_per_step`` mini-batches (of ``batch_size``)
    are averaged per gradient; source and target use the same ones at each step. ``stay`` (≥ 0): a unit
    leaves the place the previous step gave it (the identity at the first step) only when that gains more than
    ``stay`` standard deviations of its similarity row; 0 is the paper's plain matching. ``stay_at="identity"``
    puts that prior on the identity at every step instead (source and target units assumed to correspond until
    the gradients say otherwise). Larger values solve
    somewhat faster, for part of the matching objective, but keep what the first steps decided from few
    gradients: on a differently fine-tuned MiniLM target, stay 1 and 3 lowered the transferred accuracy and
    slowed its fine-tuning (``docs/transfer.md``). ``pin_shared`` keeps at the identity
    every permutation group whose parameters are equal in θ_0 and θ'_0 (a pretrained body shared by source and
    target, as when only the classifier head's seed differs): their units already correspond, and matching them
    from a few gradient batches only fits noise. Off by default (the paper matches every group): measured on 2 MiniLM
    pairs only (same accuracy and fine-tuning steps; ``docs/transfer.md``).
    """

    method: str = "fgmt"
    steps: int = 20
    spacing: str = "cosine"
    batches_per_step: int = 2
    batch_size: int = 32
    max_sweeps: int = 100
    seed: int = 0
    stay: float = 0.0
    stay_at: str = "previous"
    pin_shared: bool = False

    def validate(self) -> TransferConfig:
        """Raise :class:`TransferError` naming the bad knob; return ``self`` for chaining."""
        if self.method not in METHODS:
            raise TransferError(f"unknown transfer method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.spacing not in SPACINGS:
            raise TransferError(f"unknown spacing {self.spacing!r}; choose one of {', '.join(SPACINGS)}")
        for name in ("steps", "batches_per_step", "batch_size", "max_sweeps"):
            if getattr(self, name) < 1:
                raise TransferError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.stay >= 0:
            raise TransferError(f"stay must be >= 0, got {self.stay}")
        if self.stay_at not in STAY_AT:
            raise TransferError(f"unknown stay_at {self.stay_at!r}; choose one of {', '.join(STAY_AT)}")
        return self
