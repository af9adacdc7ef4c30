"""One arm of the MAT benchmark in its own single-threaded process: train, trace accuracy, count the cost.

Why a process per arm: the arms of one seed run side by side, so the machine's load hits them alike, and each
arm's cost is read as the CPU time of its own single-threaded process (what its wall-clock would be alone on a
core) as well as its wall-clock. Evaluation for the accuracy curve is paused out of both clocks; the λmax probes
are not (they are part of MAT's price). Example::

    row = run_sentiment_arm("heads", seed=0, steps=200, lr=5e-5, eval_every=25)
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from benchmarks.sentiment import RECIPE, SentimentTask
from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.cmd.embedded import backward_flops as count_backward_flops
from hf_efftrain.mat import MATCallback, MATConfig, MATEngine

# MAT arms: the paper's head gating, heads + FFN blocks with the early backward stop, and the same with a
# stricter cut (a unit trains only in the top quarter of its group's λmax) for a larger saving per step.
VARIANTS: dict[str, dict[str, Any]] = {
    "heads": {"mat_granularity": "heads"},
    "heads+ffn": {"mat_granularity": "heads+ffn"},
    "heads+ffn+stop": {"mat_granularity": "heads+ffn", "mat_stop_backprop": True},
    "heads+ffn+stop@q0.75": {
        "mat_granularity": "heads+ffn",
        "mat_stop_backprop": True,
        "mat_threshold_rule": "quantile",
        "mat_threshold": 0.75,
    },
}


class Clock(TrainerCallback):
    """Training time in CPU seconds and wall seconds, with the time spent in ``pause()`` blocks taken out."""

    def __init__(self) -> None:
        self.cpu0 = self.wall0 = 0.0
        self.paused_cpu = self.paused_wall = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def now(self) -> tuple[float, float]:
        """(cpu, wall) seconds of training so far."""
        cpu = time.process_time() - self.cpu0 - self.paused_cpu
        return cpu, time.perf_counter() - self.wall0 - self.paused_wall

    def pause(self, work):
        cpu, wall = time.process_time(), time.perf_counter()
        result = work()
        self.paused_cpu += time.process_time() - cpu
        self.paused_wall += time.perf_counter() - wall
        return result


class AccuracyCurve(Clock):
    """Validation accuracy every ``every`` steps (and at the end), against training time without the checks."""

    def __init__(self, task: SentimentTask, every: int) -> None:
        super().__init__()
        self.task, self.every = task, every
        self.points: list[dict[str, float]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every and state.global_step != state.max_steps:
            return
        cpu, wall = self.now()

        def check() -> float:
            accuracy = self.task.accuracy(model, "validation")
            model.train()
            return accuracy

        accuracy = self.pause(check)
        self.points.append({"step": state.global_step, "cpu_seconds": cpu, "wall_seconds": wall, "accuracy": accuracy})


def backward_flops(model, batch) -> float:
    """FLOPs of one training-mode backward pass (forward not counted), as torch's flop counter sees them."""
    model.train()
    return float(count_backward_flops(model, batch))


def gate_intervals(history: list[dict], num_units: int, steps: int) -> list[tuple[list[bool], int]]:
    """(gates, number of steps they were in force) for the run, in order; gates measured at s apply from s + 1."""
    intervals: list[tuple[list[bool], int]] = []
    state, pending = [True] * num_units, list(history)
    for step in range(1, steps + 1):
        if intervals and intervals[-1][0] == state:
            intervals[-1] = (state, intervals[-1][1] + 1)
        else:
            intervals.append((state, 1))
        while pending and pending[0]["step"] <= step:
            state = pending.pop(0)["active"]
    return intervals


def replay_flops(model, batch, config: MATConfig, history: list[dict], steps: int) -> float:
    """Mean backward FLOPs per step under the run's gates (each distinct gate state counted once, then weighted)."""
    engine = MATEngine(model, config).attach()
    cache: dict[tuple[bool, ...], float] = {}
    total = 0.0
    for active, weight in gate_intervals(history, len(engine.layout.units), steps):
        if tuple(active) not in cache:
            engine.apply_gates(torch.tensor(active))
            cache[tuple(active)] = backward_flops(model, batch)
        total += weight * cache[tuple(active)]
    engine.detach()
    return total / steps


def attention_fraction(history: list[dict], kinds: list[str], num_units: int, steps: int) -> float:
    """Fraction of attention units (heads or k/v groups) active, averaged over training steps (warm-up included)."""
    ids = [i for i, kind in enumerate(kinds) if kind in ("head", "group")]
    intervals = gate_intervals(history, num_units, steps)
    return sum(weight * sum(active[i] for i in ids) / len(ids) for active, weight in intervals) / steps


def mat_costs(trainer, model, batch, steps: int) -> dict[str, Any]:
    """What MAT did in a finished run: FLOPs replayed under its gates, probe time, gate history."""
    callback = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, MATCallback))
    engine = callback.engine
    kinds = [u.kind for u in engine.layout.units]
    return {
        "backward_flops": replay_flops(model, batch, callback.engine.config, engine.history, steps),
        "measure_seconds": engine.measure_seconds,
        "measurements": engine.measurements,
        "active_head_fraction": attention_fraction(engine.history, kinds, len(kinds), steps),
        "history": engine.history,
        "units": [u.name for u in engine.layout.units],
    }


def _reference_batch(task: SentimentTask, size: int) -> dict[str, torch.Tensor]:
    rows = task.splits["train"][:size]
    labels = torch.tensor(rows.pop("label"))
    batch = task.collator([dict(zip(rows, v, strict=True)) for v in zip(*rows.values(), strict=True)])
    return {**batch, "labels": labels}


def run_sentiment_arm(arm: str, seed: int, steps: int, lr: float, eval_every: int, max_length: int = 64) -> dict:
    """Fine-tune MiniLM on Rotten Tomatoes with ``arm`` ("baseline" or a key of VARIANTS); return its record."""
    torch.set_num_threads(1)
    task = SentimentTask.load(max_length=max_length)
    model = task.model(seed)
    curve = AccuracyCurve(task, eval_every)
    common = {**RECIPE, "max_steps": steps, "seed": seed, "logging_steps": steps, "learning_rate": lr}
    with tempfile.TemporaryDirectory() as out:
        if arm == "baseline":
            args = TrainingArguments(output_dir=out, **common)
            trainer = Trainer(model=model, args=args, train_dataset=task.splits["train"], data_collator=task.collator)
        else:
            args = EfficientTrainingArguments(output_dir=out, **common, mat=True, **VARIANTS[arm])
            trainer = EfficientTrainer(
                model=model, args=args, train_dataset=task.splits["train"], data_collator=task.collator
            )
        trainer.add_callback(curve)
        trainer.train()
    cpu, wall = curve.now()
    row: dict[str, Any] = {"seed": seed, "arm": arm, "accuracy": task.accuracy(model, "test")}
    row |= {"train_cpu_seconds": cpu, "train_wall_seconds": wall, "curve": curve.points}
    batch = _reference_batch(task, RECIPE["per_device_train_batch_size"])
    if arm == "baseline":
        return row | {"backward_flops": backward_flops(model, batch), "measure_seconds": 0.0}
    return row | mat_costs(trainer, model, batch, steps)
