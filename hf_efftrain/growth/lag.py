"""LAG selection (Karp et al. 2024): rank growth candidates by their loss after a short lag of training.

Loss or function preservation *at* initialization can mislead; a few steps of training reveal which grown
model learns fastest. :func:`select_growth` trains every candidate with the same data order, masks,
optimizer, learning-rate schedule and seed (one :class:`~hf_efftrain.trainer.EfficientTrainer` each),
records the held-out loss at step 0 and at every lag, and ranks by the loss at ``lag_steps``. The schedule
may be that of the full run (``schedule_steps``) so the lag is its true beginning. Candidates train where the
Trainer would (``args.device``: a visible GPU unless ``use_cpu``), or on ``device`` when given
(:mod:`~hf_efftrain.growth.placement`). Without an evaluation
set the training loss (mean over the last ``max(1, lag // 5)`` steps) is used; the step-0 value is then the
loss of the first batch before any update. Example::

    result = select_growth({"stack": stacked, "interleave": interleaved}, train, lag_steps=20, eval_dataset=val)
    result.ranking[0]; result.save("lag_report/")       # JSON, Markdown table, PNG of the early curves

The result and its reporting live in :mod:`~hf_efftrain.growth.lag_report`; :class:`LagResult` is importable
from here too.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from transformers import PreTrainedModel, TrainerCallback, set_seed

from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.lag_report import LagResult
from hf_efftrain.growth.placement import DeviceLike, place_arguments

Candidate = PreTrainedModel | Callable[[], PreTrainedModel]

__all__ = ["Candidate", "LagResult", "select_growth", "train_candidate"]


class _LagProbe(TrainerCallback):
    """Records the training loss per step, asks for evaluation at the lags and stops at ``stop``."""

    def __init__(self, lags: Sequence[int], stop: int) -> None:
        self.lags, self.stop = set(lags), stop
        self.train: list[float] = []
        self.evals: dict[int, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.train.append(float(logs["loss"]))

    def on_step_end(self, args, state, control, **kwargs):
        control.should_evaluate = state.global_step in self.lags
        control.should_training_stop = control.should_training_stop or state.global_step >= self.stop
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics:
            self.evals[state.global_step] = float(metrics["eval_loss"])


def _lag_args(args, output_dir: str, max_steps: int):
    from transformers.trainer_utils import IntervalStrategy, SaveStrategy

    args = copy.deepcopy(args)
    args.output_dir = output_dir
    args.max_steps = max_steps
    args.logging_steps = 1
    args.logging_strategy = IntervalStrategy.STEPS
    args.save_strategy = SaveStrategy.NO
    args.eval_strategy = IntervalStrategy.NO
    args.report_to = []
    # transformers 5 multiplies the evaluation loss by the number of processes when averaging tokens across
    # devices; per-device means (DDP still averages the gradients) keep held-out losses comparable to 1 process
    args.average_tokens_across_devices = False
    return args


def train_candidate(
    model: PreTrainedModel,
    train_dataset,
    args,
    lags: Sequence[int],
    stop: int,
    eval_dataset=None,
    data_collator=None,
) -> _LagProbe:
    """Train one candidate for ``stop`` steps (schedule of ``args.max_steps``) and return what was recorded."""
    from hf_efftrain.growth.callback import MaskRampCallback
    from hf_efftrain.trainer import EfficientTrainer

    probe = _LagProbe(lags if eval_dataset is not None else (), stop)
    set_seed(args.seed)
    trainer = EfficientTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=copy.deepcopy(data_collator),
        callbacks=[probe, MaskRampCallback()],
    )
    if eval_dataset is not None:
        trainer.evaluate()
    set_seed(args.seed)
    trainer.train()
    return probe


def _windowed(train: list[float], step: int) -> float:
    width = max(1, step // 5)
    window = train[max(0, step - width) : step]
    return sum(window) / len(window)


def select_growth(
    candidates: Mapping[str, Candidate],
    train_dataset,
    lag_steps: int,
    args=None,
    eval_dataset=None,
    data_collator=None,
    lags: Sequence[int] | None = None,
    schedule_steps: int | None = None,
    recipes: Mapping[str, dict] | None = None,
    device: DeviceLike = None,
) -> LagResult:
    """Train each candidate ``lag_steps`` steps under identical conditions and rank them by the loss there.

    ``candidates`` maps names to models (trained in place) or to zero-argument builders (built one at a time,
    which keeps memory flat). ``args`` (``EfficientTrainingArguments``) fixes optimizer, learning rate,
    batch size and seed for all; ``lags`` defaults to a few points up to ``lag_steps``. ``device`` (``"cpu"``,
    ``"cuda"``...) overrides the device ``args`` resolve to; ``None`` follows them.

    >>> result = select_growth({"a": build_a, "b": build_b}, train, lag_steps=10, args=args, eval_dataset=val)
    """
    if len(candidates) < 1 or lag_steps < 1:
        raise GrowthError("select_growth needs at least one candidate and lag_steps >= 1")
    lags = sorted(set(lags or _default_lags(lag_steps)) | {lag_steps})
    if lags[0] < 1 or lags[-1] > lag_steps:
        raise GrowthError(f"lags must lie in 1..lag_steps={lag_steps}, got {lags}")
    schedule_steps = schedule_steps or lag_steps
    if schedule_steps < lag_steps:
        raise GrowthError(f"schedule_steps ({schedule_steps}) must be >= lag_steps ({lag_steps})")
    losses: dict[str, dict[int, float]] = {}
    curves: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="hf_efftrain-lag-") as tmp:
        base = place_arguments(args or _default_args(tmp), device)
        for name, candidate in candidates.items():
            model = candidate() if callable(candidate) and not isinstance(candidate, PreTrainedModel) else candidate
            run_args = _lag_args(base, str(Path(tmp) / name), schedule_steps)
            probe = train_candidate(model, train_dataset, run_args, lags, lag_steps, eval_dataset, data_collator)
            curves[name] = probe.train
            if eval_dataset is not None:
                losses[name] = dict(probe.evals)
            else:
                losses[name] = {0: probe.train[0], **{s: _windowed(probe.train, s) for s in lags}}
            del model
    metric = "held-out loss" if eval_dataset is not None else "training loss"
    ranking = sorted(losses, key=lambda n: _finite(losses[n].get(lag_steps)))
    return LagResult(lag_steps, lags, metric, losses, curves, ranking, dict(recipes or {}))


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else math.inf


def _default_lags(lag_steps: int) -> list[int]:
    return sorted({max(1, lag_steps // 4), max(1, lag_steps // 2), lag_steps})


def _default_args(output_dir: str):
    from hf_efftrain.trainer import EfficientTrainingArguments

    return EfficientTrainingArguments(output_dir=output_dir, learning_rate=1e-4, per_device_train_batch_size=8, seed=0)
