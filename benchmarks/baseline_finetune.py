"""Baseline: plain ``transformers.Trainer`` fine-tuning of MiniLM on Rotten Tomatoes.

The reference every method benchmark compares against (each also re-measures it in its own run).
Writes ``benchmarks/results/baseline_finetune.json`` and ``.md``::

    python -m benchmarks.baseline_finetune --steps 200 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
from transformers import Trainer, TrainingArguments

from benchmarks.harness import run_facts, stopwatch, write_result
from benchmarks.sentiment import RECIPE, SentimentTask


def finetune_once(task: SentimentTask, seed: int, steps: int) -> dict[str, float]:
    model = task.model(seed)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=steps, seed=seed, logging_steps=steps, **RECIPE)
        trainer = Trainer(model=model, args=args, train_dataset=task.splits["train"], data_collator=task.collator)
        with stopwatch() as clock:
            trainer.train()
    return {
        "seed": seed,
        "accuracy": task.accuracy(model, "test"),
        "seconds_per_step": clock["seconds"] / steps,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: comparable on a shared machine)")
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)
    task = SentimentTask.load(max_length=opts.max_length)
    runs = [finetune_once(task, seed, opts.steps) for seed in opts.seeds]
    accuracies = [r["accuracy"] for r in runs]
    result = {
        "accuracy": statistics.mean(accuracies),
        "accuracy_std": statistics.stdev(accuracies) if len(runs) > 1 else 0.0,
        "steps": opts.steps,
        "seconds_per_step": statistics.mean(r["seconds_per_step"] for r in runs),
        "eval_split": f"test ({len(task.splits['test'])} reviews)",
        "recipe": {**RECIPE, "max_length": opts.max_length},
        "per_seed": runs,
        **run_facts(seeds=opts.seeds),
    }
    write_result(
        "baseline_finetune",
        result,
        "Baseline: plain Trainer fine-tuning of MiniLM on Rotten Tomatoes",
        tables={"Per seed": runs},
    )


if __name__ == "__main__":
    main()
