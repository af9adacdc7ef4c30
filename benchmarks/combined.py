"""Benchmark: MAT and TWA in one run vs each alone vs plain fine-tuning — MiniLM on Rotten Tomatoes.

Per seed, interleaved, with the same data order, schedule and learning rate for every arm:
  plain     ``EfficientTrainer`` with no method, N steps;
  mat       MAT on (head gating), N steps;
  twa       TWA on: N/2 steps collecting checkpoints, then ``twa_steps`` TWA steps, then training stops;
  mat+twa   both: MAT gates heads while TWA collects, TWA's phase then trains every head.
It answers the question a user asks before switching both on: does the combination keep the accuracy and
add up the savings? Writes ``benchmarks/results/combined.json`` and ``.md``::

    python -m benchmarks.combined --steps 100 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from datasets import DatasetDict
from transformers import TrainerCallback

from benchmarks.harness import run_facts, write_result
from benchmarks.sentiment import RECIPE, SentimentTask
from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.mat.callback import MATCallback

ARMS = {
    "plain": {},
    "mat": {"mat": True},
    "twa": {"twa": True},
    "mat+twa": {"mat": True, "twa": True},
}


class TrainClock(TrainerCallback):
    """Wall-clock seconds spent inside optimizer steps (data loading and evaluation excluded)."""

    def __init__(self) -> None:
        self.seconds, self._began = 0.0, 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self._began


def method_arguments(opts: argparse.Namespace) -> dict:
    """The MAT and TWA knobs of the single-method benchmarks (benchmarks/results/{mat,twa}.json)."""
    return {
        "mat_every": opts.mat_every, "mat_warmup_steps": opts.mat_warmup, "mat_probe_size": opts.probe_size,
        "twa_start": 0.5, "twa_collect_from": opts.collect_from, "twa_every": opts.every,
        "twa_steps": opts.twa_steps, "twa_lr": opts.twa_lr, "twa_trust": opts.twa_trust,
    }  # fmt: skip


def train_arm(task: SentimentTask, test: SentimentTask, arm: str, seed: int, opts: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as out:
        args = EfficientTrainingArguments(
            output_dir=out, max_steps=opts.steps, seed=seed, logging_steps=opts.steps, use_cpu=not opts.gpu,
            **{**RECIPE, "learning_rate": opts.lr, "per_device_train_batch_size": opts.batch_size},
            **{k: v for k, v in method_arguments(opts).items() if ARMS[arm].get(k.split("_")[0])},
            **ARMS[arm],
        )  # fmt: skip
        clock = TrainClock()
        model = task.model(seed)
        trainer = EfficientTrainer(
            model=model, args=args, train_dataset=task.splits["train"], data_collator=task.collator, callbacks=[clock]
        )
        trainer.train()
        mat = next((c for c in trainer.callback_handler.callbacks if isinstance(c, MATCallback)), None)
        row = {
            "arm": arm,
            "seed": seed,
            "accuracy": test.accuracy(model, split="test"),
            "optimizer_steps": trainer.state.global_step,
            "train_seconds": clock.seconds,
        }
        if mat is not None and mat.engine is not None:
            row["projection_backward_flops_saved"] = mat.engine.counter.saved_fraction
        return row


def summarize(rows: list[dict]) -> dict:
    by_arm: dict[str, list[dict]] = {}
    for row in rows:
        by_arm.setdefault(row["arm"], []).append(row)
    plain = by_arm["plain"]
    table = []
    for arm, runs in by_arm.items():
        accuracy = [r["accuracy"] for r in runs]
        table.append(
            {
                "arm": arm,
                "accuracy": statistics.mean(accuracy),
                "accuracy_std": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
                "steps_ratio": statistics.mean(r["optimizer_steps"] for r in runs) / plain[0]["optimizer_steps"],
                "train_time_ratio": statistics.mean(
                    r["train_seconds"] / p["train_seconds"] for r, p in zip(runs, plain, strict=True)
                ),
                "projection_backward_flops_saved": statistics.mean(
                    r.get("projection_backward_flops_saved", 0.0) for r in runs
                ),
            }
        )
    return {row["arm"]: row for row in table}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="N: budget of the plain and MAT arms")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr", type=float, default=1e-4, help="fine-tuning lr of every arm (TWA benchmark's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--test-size", type=int, default=800, help="first reviews of the test split")
    parser.add_argument("--mat-every", type=int, default=8)
    parser.add_argument("--mat-warmup", type=int, default=8)
    parser.add_argument("--probe-size", type=int, default=8)
    parser.add_argument("--twa-steps", type=int, default=10)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--collect-from", type=float, default=0.4)
    parser.add_argument("--twa-lr", type=float, default=1.0)
    parser.add_argument("--twa-trust", type=float, default=1.0)
    parser.add_argument("--gpu", action="store_true", help="train on the GPU (default: CPU, 1 thread)")
    parser.add_argument("--budget-note", default="")
    parser.add_argument("--no-write", action="store_true", help="print only (quick sanity runs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    if not opts.gpu:
        torch.set_num_threads(1)
    task = SentimentTask.load(max_length=opts.max_length)
    test = SentimentTask(task.tokenizer, DatasetDict(test=task.splits["test"].select(range(opts.test_size))), 0)
    rows = []
    for seed in opts.seeds:
        for arm in ARMS:  # interleaved per seed: machine load affects every arm alike
            rows.append(train_arm(task, test, arm, seed, opts))
            print(rows[-1], flush=True)
    arms = summarize(rows)
    plain, both = arms["plain"], arms["mat+twa"]
    result = {
        "plain_accuracy": plain["accuracy"],
        "mat_accuracy": arms["mat"]["accuracy"],
        "twa_accuracy": arms["twa"]["accuracy"],
        "mat_twa_accuracy": both["accuracy"],
        "mat_twa_accuracy_delta": both["accuracy"] - plain["accuracy"],
        "mat_twa_steps_ratio": both["steps_ratio"],
        "mat_twa_train_time_ratio": both["train_time_ratio"],
        "arms": list(arms.values()),
        "per_run": rows,
        "budget": {k: v for k, v in vars(opts).items() if k != "budget_note"},
        "budget_note": opts.budget_note,
        **run_facts(seeds=opts.seeds),
    }
    if opts.no_write:
        print(result)
        return
    write_result("combined", result, "MAT + TWA together vs alone vs plain", tables={"Arms": list(arms.values())})


if __name__ == "__main__":
    main()
