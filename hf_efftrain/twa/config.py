"""The knobs of trainable weight averaging, as one serializable dataclass.

TWA (Li et al., ICLR 2023) trains only the averaging coefficients of checkpoints collected earlier in the
run. Two forms exist: ``"subspace"`` (ICLR: orthonormal basis of the raw checkpoints, projected gradients,
SGD) and ``"layerwise"`` (journal: one coefficient per checkpoint and tensor over centred checkpoints, AdamW,
optionally quantized storage). Example::

    config = TWAConfig(start=0.5, every=10, steps=20)     # collect during the first half, then 20 TWA steps
    config.start_step(max_steps=200)                      # -> 100
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hf_efftrain.errors import TWAError

FORMS = ("subspace", "layerwise")
SCHEDULES = ("cosine", "step", "constant")


@dataclass
class TWAConfig:
    """Everything TWA needs to know; ``validate()`` runs on construction."""

    form: str = "subspace"
    start: float = 0.5
    collect_from: float = 0.0
    every: int = 10
    steps: int = 20
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    trust: float = 1.0
    bits: int = 0
    rank_tol: float = 1e-4
    max_basis_mb: float | None = None
    snapshot_dir: str | None = None
    checkpoints_from: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`TWAError` naming the knob to fix."""
        if self.form not in FORMS:
            raise TWAError(f"twa_form must be one of {', '.join(FORMS)}, got {self.form!r}")
        if self.schedule not in SCHEDULES:
            raise TWAError(f"twa_schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.start < 0 or (self.start >= 1 and self.start != int(self.start)):
            raise TWAError(f"twa_start must be a fraction in [0, 1) or a whole step number, got {self.start}")
        if self.collect_from < 0 or (self.collect_from >= 1 and self.collect_from != int(self.collect_from)):
            raise TWAError(
                f"twa_collect_from must be a fraction in [0, 1) or a whole step number, got {self.collect_from}"
            )
        if self.every < 1:
            raise TWAError(f"twa_every must be >= 1 (collect a checkpoint every N steps), got {self.every}")
        if self.steps < 1:
            raise TWAError(f"twa_steps must be >= 1 (length of the TWA phase), got {self.steps}")
        if self.lr <= 0:
            raise TWAError(f"twa_lr must be > 0, got {self.lr}")
        if self.trust < 0:
            raise TWAError(
                f"twa_trust must be >= 0 (radius in units of the checkpoints' spread; 0 = unconstrained), "
                f"got {self.trust}"
            )
        if not 0 <= self.bits <= 8:
            raise TWAError(f"twa_bits must be 0 (no quantization) or 1..8, got {self.bits}")
        if self.bits and self.form != "layerwise":
            raise TWAError("twa_bits quantizes the layer-wise basis only: set twa_form='layerwise' or twa_bits=0")
        if not 0 < self.rank_tol < 1:
            raise TWAError(f"twa_rank_tol must be in (0, 1), got {self.rank_tol}")
        if self.snapshot_dir and self.checkpoints_from:
            raise TWAError("give either twa_snapshot_dir (collect during the run) or twa_checkpoints_from, not both")

    def start_step(self, max_steps: int) -> int:
        """The global step at which collection ends and the TWA phase begins."""
        if self.checkpoints_from and self.start == 0:
            return 0
        step = round(self.start * max_steps) if self.start < 1 else int(self.start)
        if step + self.steps > max_steps:
            raise TWAError(
                f"the TWA phase (start step {step} + twa_steps {self.steps}) does not fit in max_steps {max_steps}: "
                "lower twa_start or twa_steps, or raise max_steps"
            )
        if not self.checkpoints_from and step < self.every:
            raise TWAError(
                f"no checkpoint would be collected before step {step} with twa_every={self.every}: "
                "start TWA later or collect more often"
            )
        return step

    def collection_steps(self, max_steps: int) -> list[int]:
        """Steps at which checkpoints are collected: every ``every`` steps from ``collect_from``, and the start step."""
        if self.checkpoints_from:
            return []
        start = self.start_step(max_steps)
        first = round(self.collect_from * max_steps) if self.collect_from < 1 else int(self.collect_from)
        if first > start:
            raise TWAError(f"twa_collect_from (step {first}) is after the TWA start (step {start}): lower it")
        return sorted({*range(max(first, self.every), start + 1, self.every), start})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
