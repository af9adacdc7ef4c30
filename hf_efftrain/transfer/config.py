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
STAY_AT = ("auto", "previous", "identity")


@dataclass
class TransferConfig(MethodConfig):
    """How to transfer a trajectory.

    ``method``: ``fgmt`` (fast: one new gradient pair per step, T pairs in all), ``gmt`` (re-computes the
    gradients at every earlier transferred point each step, T(T+1)/2 pairs) or ``naive`` (no permutation:
    θ'_0 + (θ_s − θ_0)). ``spacing``: where the source points lie between its first and last checkpoint —
    ``cosine`` (dense near the end, λ_k = sin(πk/2T)), ``linear`` (λ_k = k/T) or ``checkpoints`` (the saved
    checkpoints themselves; ``steps`` is then ignored). ``batches_per_step`` mini-batches (of ``batch_size``)
    are averaged per gradient; source and target use the same ones at each step.

    ``stay`` (≥ 0) and ``stay_at``: a prior on the matching. A unit leaves its place — the previous step's
    permutation (``stay_at="previous"``) or the identity (``"identity"``) — only when that gains more than
    ``stay`` standard deviations of its similarity row; ``stay=0`` is the paper's plain matching. The defaults
    (``None``, ``"auto"``) look at θ_0 and θ'_0 (:mod:`hf_efftrain.transfer.prior`): when they share pretrained
    weights (cosine ≥ 0.5: a new head's seed, or a copy fine-tuned on its own), stay 1 at the identity, which
    on MiniLM-L6 gave a better transferred point that fine-tunes faster than plain matching in both
    shared-body scenarios; otherwise plain matching, as on independently initialized models, where the
    identity prior lost accuracy (``docs/transfer.md``). A prior at the previous permutation (stay 1 or 3) kept
    what the first steps decided from few gradients and did worse. ``warm_start``: each step's matching starts
    from the previous step's permutation (fast) or from the identity (``False``; the paper's). The default
    (``None``) warm-starts related starts only: between independently initialized small models the warm start
    lowered the transferred accuracy (0.725 → 0.671, below naive), while on a shared body the identity prior
    already anchors the matching. ``pin_shared`` keeps at the identity
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
    stay: float | None = None
    stay_at: str = "auto"
    warm_start: bool | None = None
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
        if self.stay is not None and not self.stay >= 0:
            raise TransferError(f"stay must be >= 0, got {self.stay}")
        if self.stay_at not in STAY_AT:
            raise TransferError(f"unknown stay_at {self.stay_at!r}; choose one of {', '.join(STAY_AT)}")
        return self
