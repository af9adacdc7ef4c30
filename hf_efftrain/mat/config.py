"""The knobs of MAT, in one serializable dataclass (saved with each checkpoint's trainer state).

The paper (Shi et al., NeurIPS 2023) does not publish its threshold formula, how often λmax is measured or on
how many samples, so every such choice is a field here, documented and measured. Example::

    config = MATConfig(every=10, warmup_steps=50, threshold_rule="mean", threshold=1.0)   # validated here
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from hf_efftrain.budget import check_number, check_steps, resolve_steps
from hf_efftrain.errors import MATConfigError
from hf_efftrain.method_config import MethodConfig

OutputMode = Literal["auto", "logits", "projection", "loss"]
ThresholdRule = Literal["mean", "quantile", "max"]
Granularity = Literal["heads", "heads+ffn"]
GQAUnit = Literal["query_head", "kv_group"]


@dataclass
class MATConfig(MethodConfig):
    """How MAT measures modular NTKs and turns them into gates.

    * ``every``: measure λmax every K optimizer steps (one extra forward + backward on ``probe_size`` samples).
    * ``warmup_steps``: all modules stay active before this step (λmax is still measured to fill the EMA).
      Both take a whole number of steps or a fraction in (0, 1) of the run's ``max_steps`` (see :meth:`for_run`).
    * ``stable_backoff``: once past warm-up, each measurement that leaves the gates unchanged doubles the interval
      to the next one, up to ``stable_backoff × every``; a change brings it back to ``every`` (1 = fixed interval).
      Probes cost about a training step each; stable gates do not need re-measuring.
    * ``stable_tolerance``: the share of modules whose gate may flip while a measurement still counts as stable
      (0 = no flip at all). Late in a run a few borderline modules keep flipping at every probe, which otherwise
      keeps the interval at ``every`` for good.
    * ``ema``: weight of the *old* value in the exponential moving average of λmax (0 = no smoothing).
    * ``threshold_rule``/``threshold``: a module is active when its smoothed λmax is at least
      ``threshold * mean`` (``mean``), ``threshold * max`` (``max``) of its group, or the ``threshold``-quantile
      of its group (``quantile``). Groups are module kinds (heads, FFN blocks), per model (``scope="model"``)
      or per layer (``scope="layer"``). The best module of each group always stays active.
    * ``output``: the function whose NTK is measured: ``logits`` (every logit, exact), ``projection`` (a fixed
      random projection of the logits, for LMs), ``loss`` (per-sample loss gradients: a residual-weighted
      kernel, cheaper, *not* the NTK), ``auto`` (logits when there are at most 16, else projection).
    * ``granularity``: ``heads`` (the paper) or ``heads+ffn`` (each layer's FFN block is a module too).
    * ``gqa_unit``: under grouped-query attention, gate each ``query_head`` (its k/v rows train while any head of
      its group does) or each ``kv_group`` (the group's query heads, k/v rows and output columns as one module).
    * ``stop_backprop``: when every module below a layer is gated, back-propagation stops there (everything
      below, LayerNorms and embeddings included, is frozen for that step). Needs ``granularity="heads+ffn"`` (it
      would otherwise freeze FFN blocks MAT never measured); not available under DDP.
    * ``skip_optimizer_update``: a fully gated projection gets no gradient, so the optimizer skips it.
    """

    every: float = 10
    warmup_steps: float = 20
    probe_size: int = 16
    ema: float = 0.5
    threshold_rule: ThresholdRule = "mean"
    threshold: float = 1.0
    scope: Literal["model", "layer"] = "model"
    output: OutputMode = "auto"
    granularity: Granularity = "heads"
    gqa_unit: GQAUnit = "query_head"
    stable_backoff: int = 4
    stable_tolerance: float = 0.0
    stop_backprop: bool = False
    skip_optimizer_update: bool = True
    gram_strategy: Literal["auto", "gram", "persample"] = "auto"
    seed: int = 0

    def validate(self) -> MATConfig:
        """Raise :class:`MATConfigError` naming the bad knob; return ``self`` for chaining."""
        check_steps("every", self.every, error=MATConfigError)
        check_steps("warmup_steps", self.warmup_steps, zero=True, error=MATConfigError)
        check_number("probe_size", self.probe_size, 2, 256, error=MATConfigError)
        check_number("ema", self.ema, 0, 1, high_open=True, error=MATConfigError)
        check_number("threshold", self.threshold, 0, error=MATConfigError)
        check_number("stable_backoff", self.stable_backoff, 1, 64, error=MATConfigError)
        check_number("stable_tolerance", self.stable_tolerance, 0, 1, high_open=True, error=MATConfigError)
        checks = [
            (self.probe_size == int(self.probe_size), f"probe_size must be a whole number, got {self.probe_size}"),
            (self.threshold_rule in ("mean", "quantile", "max"), f"unknown threshold_rule {self.threshold_rule!r}"),
            (self.threshold_rule != "quantile" or self.threshold <= 1, "a quantile threshold must be in [0, 1]"),
            (self.threshold_rule != "max" or self.threshold <= 1, "a max-relative threshold must be in [0, 1]"),
            (self.scope in ("model", "layer"), f"scope must be 'model' or 'layer', got {self.scope!r}"),
            (self.output in ("auto", "logits", "projection", "loss"), f"unknown output {self.output!r}"),
            (self.granularity in ("heads", "heads+ffn"), f"granularity must be heads or heads+ffn: {self.granularity}"),
            (self.gqa_unit in ("query_head", "kv_group"), f"gqa_unit must be query_head or kv_group: {self.gqa_unit}"),
            (self.stable_backoff == int(self.stable_backoff), "stable_backoff must be a whole number"),
            (
                not self.stop_backprop or self.granularity == "heads+ffn",
                "stop_backprop freezes whole layers, FFN blocks included: use granularity='heads+ffn' so that they "
                "are measured too",
            ),
            (self.gram_strategy in ("auto", "gram", "persample"), f"unknown gram_strategy {self.gram_strategy!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise MATConfigError(message)
        return self

    def for_run(self, max_steps: int) -> MATConfig:
        """This config with ``every`` and ``warmup_steps`` in steps of a run of ``max_steps`` (fractions resolved)."""
        every, warmup = resolve_steps(self.every, max_steps), resolve_steps(self.warmup_steps, max_steps)
        return replace(self, every=every, warmup_steps=warmup)
