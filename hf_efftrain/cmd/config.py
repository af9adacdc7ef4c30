"""The knobs of online and embedded CMD, as one serializable dataclass (what ``CMDCallback`` is built from).

Example::

    config = CMDConfig(every=5, warmup=10, modes=5, embed_every=4)     # validated here
    callback = CMDCallback("runs/demo", **config.to_dict())
"""

from __future__ import annotations

from dataclasses import dataclass

from hf_efftrain.budget import check_steps
from hf_efftrain.errors import CMDConfigError
from hf_efftrain.method_config import MethodConfig

EMBED_ORDERS = ("movement", "input_first")  # which tensors embedded CMD takes: see hf_efftrain.cmd.embedded


@dataclass
class CMDConfig(MethodConfig):
    """How online CMD snapshots, fits and embeds; messages name the ``cmd_*`` flag.

    * ``every``: take a snapshot every K optimizer steps (a fraction in (0, 1): of ``max_steps``).
    * ``warmup``: snapshots (not steps) kept on disk before the modes are fitted and frozen (at least 3).
    * ``modes``/``candidates``/``seed``: the number of modes M, and the K reference candidates clustered
      after warm-up (sampled with ``seed``).
    * ``forgetting``: the online fit's RLS forgetting factor γ per snapshot (1 = every snapshot counts alike).
    * ``embed_every``: embedded CMD, every N snapshots after warm-up (0 = off); ``embed_fraction`` of the
      not-yet-embedded parameters each time, up to ``embed_max`` of all.
    * ``embed_order``: which tensors: ``"movement"`` (least-moving first, the paper's rule; budgets count
      parameters) or ``"input_first"`` (a growing prefix from the input side, which also drops the input
      gradients below it; budgets count matrix weights, i.e. backward work).
    * ``save_model``: at the end of training, save the CMD weights to ``<output_dir>/cmd_model``.
    """

    every: float = 10
    warmup: int = 20
    modes: int = 5
    forgetting: float = 1.0
    candidates: int = 1000
    seed: int = 0
    embed_every: int = 0
    embed_fraction: float = 0.1
    embed_max: float = 0.5
    embed_order: str = "movement"
    save_model: bool = True

    def validate(self) -> CMDConfig:
        """Raise :class:`CMDConfigError` naming the flag to change; return ``self`` for chaining."""
        check_steps("cmd_every", self.every, error=CMDConfigError)
        for name in ("warmup", "candidates"):
            if getattr(self, name) < 1:
                raise CMDConfigError(f"cmd_{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 3:
            raise CMDConfigError(f"cmd_warmup must be >= 3 snapshots to correlate trajectories, got {self.warmup}")
        if not 1 <= self.modes <= 255:
            raise CMDConfigError(f"cmd_modes must be in 1..255, got {self.modes}")
        if not 0 < self.forgetting <= 1:
            raise CMDConfigError(f"cmd_forgetting must be in (0, 1], got {self.forgetting}")
        if self.embed_every < 0:
            raise CMDConfigError(f"cmd_embed_every must be >= 0, got {self.embed_every}")
        if not (0 < self.embed_fraction <= 1 and 0 < self.embed_max <= 1):
            raise CMDConfigError("cmd_embed_fraction and cmd_embed_max must be in (0, 1]")
        if self.embed_order not in EMBED_ORDERS:
            raise CMDConfigError(f"cmd_embed_order must be one of {', '.join(EMBED_ORDERS)}, got {self.embed_order!r}")
        return self
