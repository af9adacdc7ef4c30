"""LAG selection (Karp et al. 2024): rank growth candidates by their loss after a short lag of training.

Loss or function preservation *at* initialization can mislead; a few steps of training reveal which grown
model learns fastest. :func:`select_growth` trains every candidate with the same data order, masks,
optimizer, learning-rate schedule and seed (one :class:`~hf_efftrain.trainer.EfficientTrainer` each),
records the held-out loss at step 0 and at every lag, and ranks by the loss at ``lag_steps``. The schedule
may be that of the full run (``schedule_steps``) so the lag is its true beginning. Without an evaluation
set the training loss (mean over the last ``max(1, lag // 5)`` steps) is used; the step-0 value is then the
loss of the first batch before any update. Example::

    result = select_growth({"stack": stacked, "interleave": interleaved}, train, lag_steps=20, eval_dataset=val)
    result.ranking[0]; result.save("lag_report/")       # JSON, Markdown table, PNG of the early curves
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedModel, TrainerCallback, set_seed

from hf_efftrain.atomic import atomic_file, write_json, write_text
from hf_efftrain.errors import GrowthError
from hf_efftrain.extras import pyplot

Candidate = PreTrainedModel | Callable[[], PreTrainedModel]


@dataclass
class LagResult:
    """Losses of every candidate at step 0 and each lag, the training curves, and the ranking."""

    lag_steps: int
    lags: list[int]
    metric: str
    losses: dict[str, dict[int, float]]
    train_curves: dict[str, list[float]]
    ranking: list[str] = field(default_factory=list)
    recipes: dict[str, dict] = field(default_factory=dict)

    @property
    def pick(self) -> str:
        """The candidate with the lowest loss at ``lag_steps``."""
        return self.ranking[0]

    def table(self) -> list[dict]:
        """One row per candidate in ranking order: rank, name, loss at step 0 and at each lag."""
        rows = []
        for rank, name in enumerate(self.ranking, start=1):
            row = {"rank": rank, "candidate": name}
            row.update({f"step {s}": round(self.losses[name][s], 4) for s in sorted(self.losses[name])})
            rows.append(row)
        return rows

    def to_markdown(self) -> str:
        rows = self.table()
        columns = list(rows[0])
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
        note = f"Ranked by {self.metric} at step {self.lag_steps}; pick: **{self.pick}**."
        return note + "\n\n" + "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """PNG of the early training curves (and held-out points) of every candidate."""
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(7, 4))
        for name in self.ranking:
            (line,) = ax.plot(range(len(self.train_curves[name])), self.train_curves[name], alpha=0.5, label=name)
            steps = sorted(self.losses[name])
            ax.plot(steps, [self.losses[name][s] for s in steps], "o-", color=line.get_color())
        ax.axvline(self.lag_steps, color="grey", linestyle=":")
        ax.set_xlabel("step after growth")
        ax.set_ylabel("loss (line: train, dots: " + self.metric + ")")
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        return Path(path)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["losses"] = {n: {str(s): v for s, v in d.items()} for n, d in self.losses.items()}
        return data

    def save(self, folder: str | Path) -> Path:
        """``lag_report.json``, ``lag_report.md`` and ``lag_curves.png`` in ``folder``."""
        folder = Path(folder)
        write_json(folder / "lag_report.json", self.to_dict())
        write_text(folder / "lag_report.md", "# LAG selection\n\n" + self.to_markdown())
        self.plot(folder / "lag_curves.png")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LagResult:
        """Read ``lag_report.json`` back; a missing or foreign file is a :class:`GrowthError` naming it."""
        path = Path(folder) / "lag_report.json"
        if not path.is_file():
            raise GrowthError(f"{path} not found: pass a folder written by `hf-efftrain lag`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["losses"] = {n: {int(s): v for s, v in d.items()} for n, d in data["losses"].items()}
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise GrowthError(f"{path}: not a LAG report ({type(err).__name__}: {err})") from None


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
) -> LagResult:
    """Train each candidate ``lag_steps`` steps under identical conditions and rank them by the loss there.

    ``candidates`` maps names to models (trained in place) or to zero-argument builders (built one at a time,
    which keeps memory flat). ``args`` (``EfficientTrainingArguments``) fixes optimizer, learning rate,
    batch size and seed for all; ``lags`` defaults to a few points up to ``lag_steps``.

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
        base = args or _default_args(tmp)
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

    return EfficientTrainingArguments(
        output_dir=output_dir, learning_rate=1e-4, per_device_train_batch_size=8, seed=0, use_cpu=True
    )
