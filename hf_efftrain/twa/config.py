"""The knobs of trainable weight averaging, as one serializable dataclass.

TWA (Li et al., ICLR 2023) trains only the averaging coefficients of checkpoints collected earlier in the
run. Two forms exist: ``"subspace"`` (ICLR: orthonormal basis of the raw checkpoints, projected gradients,
SGD) and ``"layerwise"`` (journal: one coefficient per checkpoint and tensor over centred checkpoints, AdamW,
optionally quantized storage). Example::

    config = TWAConfig(start=0.5, every=10, steps=20)     # collect during the first half, then 20 TWA steps
    config.start_step(max_steps=200)                      # -> 100
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hf_efftrain.budget import check_number, check_steps, resolve_steps
from hf_efftrain.errors import TWAConfigError
from hf_efftrain.method_config import MethodConfig

FORMS = ("subspace", "layerwise")
SCHEDULES = ("cosine", "step", "constant")
INITS = ("average", "last")


@dataclass
class TWAConfig(MethodConfig):
    """Everything TWA needs to know; ``validate()`` runs on construction."""

    form: str = "subspace"
    start: float = 0.5
    collect_from: float = 0.0
    every: float = 10  # steps, or a fraction (0, 1) of max_steps
    steps: float = 20  # steps, or a fraction (0, 1) of max_steps
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
    holdout: float = 0.0  # TWA-v: share of the training rows the TWA phase trains on instead (0 = off)
    init: str = "average"  # where the TWA phase starts and its trust region is centred: average | last checkpoint

    @property
    def keeps_last(self) -> bool:
        """Whether collection holds the last checkpoint aside: the subspace form's start with ``init="last"`` (the
        layer-wise form starts from that checkpoint's own row)."""
        return self.init == "last" and self.form == "subspace"

    def validate(self) -> TWAConfig:
        """Raise :class:`TWAConfigError` naming the knob to fix; return ``self`` for chaining."""
        if self.form not in FORMS:
            raise TWAConfigError(f"twa_form must be one of {', '.join(FORMS)}, got {self.form!r}")
        if self.schedule not in SCHEDULES:
            raise TWAConfigError(f"twa_schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.init not in INITS:
            raise TWAConfigError(f"twa_init must be one of {', '.join(INITS)}, got {self.init!r}")
        for name in ("start", "collect_from"):
            value = getattr(self, name)
            check_number(f"twa_{name}", value, 0, error=TWAConfigError)
            if value >= 1 and value != int(value):
                raise TWAConfigError(f"twa_{name} must be a fraction in [0, 1) or a whole step number, got {value}")
        check_steps("twa_every", self.every, error=TWAConfigError)
        check_steps("twa_steps", self.steps, error=TWAConfigError)
        check_number("twa_lr", self.lr, 0, low_open=True, error=TWAConfigError)
        check_number("twa_momentum", self.momentum, 0, 1, high_open=True, error=TWAConfigError)
        check_number("twa_weight_decay", self.weight_decay, 0, error=TWAConfigError)
        check_number("twa_trust", self.trust, 0, error=TWAConfigError)  # radius in checkpoint spreads; 0 = off
        check_number("twa_bits", self.bits, 0, 8, error=TWAConfigError)
        if self.bits != int(self.bits):
            raise TWAConfigError(f"twa_bits must be 0 (no quantization) or 1..8, got {self.bits}")
        if self.bits and self.form != "layerwise":
            raise TWAConfigError("twa_bits quantizes the layer-wise basis only: set twa_form='layerwise' or twa_bits=0")
        check_number("twa_rank_tol", self.rank_tol, 0, 1, low_open=True, high_open=True, error=TWAConfigError)
        if self.max_basis_mb is not None:
            check_number("twa_max_basis_mb", self.max_basis_mb, 0, low_open=True, error=TWAConfigError)
        check_number("twa_holdout", self.holdout, 0, 1, high_open=True, error=TWAConfigError)
        if self.snapshot_dir and self.checkpoints_from:
            raise TWAConfigError(
                "give either twa_snapshot_dir (collect during the run) or twa_checkpoints_from, not both"
            )
        return self

    def for_run(self, max_steps: int) -> TWAConfig:
        """This config with ``every`` and ``steps`` in steps of a run of ``max_steps`` (fractions resolved)."""
        return replace(self, every=resolve_steps(self.every, max_steps), steps=resolve_steps(self.steps, max_steps))

    def start_step(self, max_steps: int) -> int:
        """The global step at which collection ends and the TWA phase begins."""
        if self.checkpoints_from and self.start == 0:
            return 0
        every, steps = resolve_steps(self.every, max_steps), resolve_steps(self.steps, max_steps)
        step = round(self.start * max_steps) if self.start < 1 else int(self.start)
        if step + steps > max_steps:
            raise TWAConfigError(
                f"the TWA phase (twa_start step {step} + twa_steps {steps}) does not fit in max_steps {max_steps}: "
                "lower twa_start or twa_steps, or raise max_steps"
            )
        if not self.checkpoints_from and step < every:
            raise TWAConfigError(
                f"twa_start (step {step}) comes before the first collected checkpoint (twa_every={every}): "
                "start TWA later or collect more often"
            )
        return step

    def collection_steps(self, max_steps: int) -> list[int]:
        """Steps at which checkpoints are collected: every ``every`` steps from ``collect_from``, and the start step."""
        if self.checkpoints_from:
            return []
        start, every = self.start_step(max_steps), resolve_steps(self.every, max_steps)
        first = round(self.collect_from * max_steps) if self.collect_from < 1 else int(self.collect_from)
        if first > start:
            raise TWAConfigError(f"twa_collect_from (step {first}) is after the TWA start (step {start}): lower it")
        return sorted({*range(max(first, every), start + 1, every), start})
