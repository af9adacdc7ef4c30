"""Benchmark: TWA vs full fine-tuning, SWA and the last checkpoint — MiniLM on Rotten Tomatoes.

Per seed, interleaved, same data order and schedule for every arm:
  (a) full: a plain ``Trainer`` run of N steps (its first N/2 steps are (b)'s: it resumes from (b)'s
      checkpoint at step N/2 — optimizer, schedule, RNG and data position — with the step-N/2 weights);
  (b) TWA: ``EfficientTrainer(twa=True)``: the same schedule for N/2 steps while collecting checkpoints,
      then ``twa_steps`` TWA steps; training stops there;
  (c) SWA: ``torch.optim.swa_utils.AveragedModel`` updated at exactly the steps (b) collects at;
  (d) last: (b)'s weights at step N/2, just before the TWA phase;
  (e) TWA-v (``--holdout`` > 0): like (b), but a seeded share of the training rows is held out of the
      collection phase and the TWA phase trains the coefficients on those rows (the paper's fine-tuning form);
  (f) one more TWA run per further ``--inits`` entry (``last``: the TWA phase starts at the last checkpoint).
``--compact`` gives the TWA runs a schedule of their own budget (N/2 + twa_steps steps, so the learning rate has
decayed by the TWA start, as a user who plans a short run sets it), adds (s) the plain run of that same budget
— the first N/2 steps are (b)'s, as in (a) — and trains (a) separately over the full N-step schedule.
Writes ``benchmarks/results/<name>.json`` and ``.md``::

    python -m benchmarks.twa --steps 200 --twa-steps 20 --every 4 --collect-from 0.4 --seeds 0 1 2
    python -m benchmarks.twa --steps 200 --twa-steps 20 --every 4 --collect-from 0.4 --compact \
        --inits average last --holdout 0 --name twa_compact
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel
from transformers import Trainer, TrainerCallback, TrainingArguments

from benchmarks.harness import run_facts, write_result
from benchmarks.sentiment import RECIPE, SentimentTask
from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.twa import TWACallback


class BaselineTap(TrainerCallback):
    """SWA over the checkpoints TWA collects, the last pre-TWA weights, and per-step wall time by phase.

    Added before ``TWACallback`` (constructor callbacks come first), so at the TWA start it sees the weights
    before they are replaced by the average.
    """

    def __init__(self, steps: list[int], start: int) -> None:
        self.steps, self.start = set(steps), start
        self.swa: AveragedModel | None = None
        self.last: dict[str, torch.Tensor] = {}
        self.seconds = {"collect": 0.0, "twa": 0.0}
        self._began = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._began = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        phase = "collect" if state.global_step <= self.start else "twa"
        self.seconds[phase] += time.perf_counter() - self._began
        if state.global_step in self.steps:
            if self.swa is None:
                self.swa = AveragedModel(model)
            self.swa.update_parameters(model)
        if state.global_step == self.start:
            self.last = {k: v.detach().clone() for k, v in model.state_dict().items()}


def recipe(opts: argparse.Namespace) -> dict[str, Any]:
    """The shared recipe with this run's learning rate and batch size (the same for every arm)."""
    return {**RECIPE, "learning_rate": opts.lr, "per_device_train_batch_size": opts.batch_size}


def _arguments(cls: type, out: str, opts: argparse.Namespace, seed: int, **extra: Any) -> TrainingArguments:
    base = {"output_dir": out, "max_steps": opts.steps, "seed": seed, "logging_steps": 10, **recipe(opts)}
    return cls(**{**base, **extra})


def _twa_knobs(opts: argparse.Namespace, init: str) -> dict[str, Any]:
    return {
        "twa": True,
        "twa_start": opts.steps // 2,
        "twa_collect_from": round(opts.collect_from * opts.steps),  # a step, so both schedules collect alike
        "twa_every": opts.every,
        "twa_steps": opts.twa_steps,
        "twa_form": opts.form,
        "twa_lr": opts.twa_lr,
        "twa_momentum": opts.twa_momentum,
        "twa_trust": opts.twa_trust,
        "twa_bits": opts.bits,
        "twa_schedule": opts.schedule,
        "twa_init": init,
    }


def twa_run_steps(opts: argparse.Namespace) -> int:
    """``max_steps`` of the TWA runs: the full run's N (cut at N/2 + twa_steps) or, compact, that budget itself."""
    return opts.steps // 2 + opts.twa_steps if opts.compact else opts.steps


def _plain(task: SentimentTask, seed: int, opts: argparse.Namespace, out: str, steps: int) -> tuple[Trainer, Any]:
    model = task.model(seed)
    args = _arguments(TrainingArguments, out, opts, seed, max_steps=steps)
    trainer = Trainer(model=model, args=args, train_dataset=task.splits["train"], data_collator=task.collator)
    return trainer, model


def run_seed(task: SentimentTask, seed: int, opts: argparse.Namespace, split: str) -> dict[str, Any]:
    """All arms of one seed: (b), (c), (d) from the TWA run, the plain run continued from its step N/2, (e), (f)."""
    start, run_steps = opts.steps // 2, twa_run_steps(opts)
    first_init, *other_inits = opts.inits
    model = task.model(seed)
    with tempfile.TemporaryDirectory() as out:
        saving = {"save_strategy": "steps", "save_steps": start}
        args = _arguments(
            EfficientTrainingArguments, out, opts, seed, **_twa_knobs(opts, first_init), **saving, max_steps=run_steps
        )
        tap = BaselineTap(args.twa_config().collection_steps(run_steps), start)
        trainer = EfficientTrainer(
            model=model, args=args, train_dataset=task.splits["train"], data_collator=task.collator, callbacks=[tap]
        )
        trainer.train()
        report = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TWACallback)).report
        result = {"twa_accuracy": task.accuracy(model, split), "swa_accuracy": task.accuracy(tap.swa.module, split)}
        model.load_state_dict(tap.last)
        result["last_accuracy"] = task.accuracy(model, split)
        result.update(_twa_facts(trainer.state.global_step, report, tap))
        # The plain run of the TWA runs' schedule: checkpoint-N/2 holds optimizer, scheduler, RNG and data
        # position of step N/2; its weights were saved after TWA replaced them by the average, so the step-N/2
        # weights are put back first.
        checkpoint = f"{out}/checkpoint-{start}"
        model.save_pretrained(checkpoint)
        plain, continued = _plain(task, seed, opts, out, run_steps)
        plain.train(resume_from_checkpoint=checkpoint)
        result["short_accuracy" if opts.compact else "full_accuracy"] = task.accuracy(continued, split)
    if opts.compact:
        with tempfile.TemporaryDirectory() as out:
            plain, full = _plain(task, seed, opts, out, opts.steps)
            plain.train()
            result["full_accuracy"] = task.accuracy(full, split)
    if opts.holdout:
        result["twa_v_accuracy"] = run_twa(task, seed, opts, split, first_init, twa_holdout=opts.holdout)
    for init in other_inits:
        result[f"twa_{init}_accuracy"] = run_twa(task, seed, opts, split, init)
    return result


def run_twa(task: SentimentTask, seed: int, opts: argparse.Namespace, split: str, init: str, **extra: Any) -> float:
    """A further TWA run: (e) with ``twa_holdout`` (the collection phase trains on the rows left after the hold-out,
    the TWA phase on the held-out rows), or (f) from another ``twa_init``."""
    model = task.model(seed)
    with tempfile.TemporaryDirectory() as out:
        knobs = {**_twa_knobs(opts, init), **extra}
        args = _arguments(EfficientTrainingArguments, out, opts, seed, **knobs, max_steps=twa_run_steps(opts))
        trainer = EfficientTrainer(
            model=model, args=args, train_dataset=task.splits["train"], data_collator=task.collator
        )
        trainer.train()
    return task.accuracy(model, split)


def _twa_facts(steps_run: int, report: dict[str, Any], tap: BaselineTap) -> dict[str, Any]:
    """TWA phase cost (its steps + basis build) over the run's optimizer steps + collection (saves excluded)."""
    twa_time = tap.seconds["twa"] + report["build_seconds"]
    phase1 = tap.seconds["collect"] + report.get("collect_overhead_seconds", 0.0)
    return {
        "steps_run": steps_run,
        "checkpoints": report["checkpoints"],
        "basis_rank": report.get("basis_rank", report["checkpoints"]),
        "basis_memory_mb": report["basis_memory_mb"],
        "trust_radius": report.get("trust_radius"),
        "confined_steps": report.get("confined_steps", 0),
        "phase1_seconds": phase1,
        "twa_phase_seconds": twa_time,
        "twa_phase_time_fraction": twa_time / (phase1 + twa_time),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="N: budget of the full fine-tune")
    parser.add_argument("--twa-steps", type=int, default=10)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--collect-from", type=float, default=0.25)
    parser.add_argument("--form", default="subspace", choices=["subspace", "layerwise"])
    parser.add_argument("--twa-lr", type=float, default=1.0)
    parser.add_argument("--twa-momentum", type=float, default=0.9)
    parser.add_argument("--twa-trust", type=float, default=1.0, help="trust radius in checkpoint spreads (0 = off)")
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--bits", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr", type=float, default=RECIPE["learning_rate"], help="fine-tuning lr (all arms)")
    parser.add_argument("--batch-size", type=int, default=RECIPE["per_device_train_batch_size"])
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--holdout", type=float, default=0.1, help="TWA-v arm's held-out share (0 = no TWA-v arm)")
    parser.add_argument("--eval-samples", type=int, default=0, help="first reviews of the test split (0 = all)")
    parser.add_argument(
        "--inits",
        nargs="+",
        default=["average"],
        choices=["average", "last"],
        help="twa_init of the TWA run (first) and of one further run each (the others)",
    )
    parser.add_argument(
        "--compact",
        action="store_true",
        help="TWA runs on a schedule of their own budget, beside a plain run of that budget",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (every arm runs with the same)")
    parser.add_argument("--name", default="twa", help="result file name under benchmarks/results/")
    parser.add_argument("--budget-note", default="")
    parser.add_argument("--no-write", action="store_true", help="print only (quick sanity runs)")
    return parser


def _mean(runs: list[dict], key: str) -> float:
    return statistics.mean(r[key] for r in runs)


def main(argv: list[str] | None = None) -> None:
    opts = _parser().parse_args(argv)
    torch.set_num_threads(opts.threads)
    task = SentimentTask.load(max_length=opts.max_length)
    split = "test"
    if opts.eval_samples and opts.eval_samples < len(task.splits["test"]):
        split = f"test[:{opts.eval_samples}]"
        task.splits[split] = task.splits["test"].select(range(opts.eval_samples))
    runs = []
    for seed in opts.seeds:  # interleaved: load changes hit every arm of a seed alike
        row = {"seed": seed, **run_seed(task, seed, opts, split)}
        print(row, flush=True)
        runs.append(row)
    keys = ("full_accuracy", "twa_accuracy", "swa_accuracy", "last_accuracy")
    keys += ("twa_v_accuracy",) if opts.holdout else ()
    keys += ("short_accuracy",) if opts.compact else ()
    keys += tuple(f"twa_{init}_accuracy" for init in opts.inits[1:])
    twa_arms = [key for key in keys if key.startswith("twa_")]
    result: dict[str, Any] = {
        "seeds": opts.seeds,
        "steps": opts.steps,
        "max_length": opts.max_length,
        "eval_examples": len(task.splits[split]),
        **{key: _mean(runs, key) for key in keys},
        **{f"{key}_per_seed": [r[key] for r in runs] for key in keys},
    }
    result.update(
        twa_total_steps_ratio=(opts.steps // 2 + opts.twa_steps) / opts.steps,
        twa_phase_time_fraction=_mean(runs, "twa_phase_time_fraction"),
        basis_memory_mb=_mean(runs, "basis_memory_mb"),
        **{f"{key}_std": statistics.stdev(r[key] for r in runs) if len(runs) > 1 else 0.0 for key in keys},
        targets={
            "twa_total_steps_ratio <= 0.6": (opts.steps // 2 + opts.twa_steps) / opts.steps <= 0.6,
            **{
                f"{arm} >= {baseline}": result[arm] >= result[baseline]
                for arm in twa_arms
                for baseline in ("full_accuracy", "swa_accuracy", "short_accuracy")
                if baseline in result
            },
        },
        twa_run_steps=twa_run_steps(opts),
        settings={k: v for k, v in vars(opts).items() if k not in ("budget_note", "no_write")},
        recipe={**recipe(opts), "max_length": opts.max_length},
        eval_split=f"{split} ({len(task.splits[split])} reviews)",
        budget_note=opts.budget_note,
        per_seed=runs,
        **run_facts(seeds=opts.seeds),
    )
    if opts.no_write:
        print(result)
        return
    write_result(
        opts.name,
        result,
        "TWA vs full fine-tuning, SWA and last checkpoint (MiniLM, Rotten Tomatoes)",
        {"Per seed": runs},
    )


if __name__ == "__main__":
    main()
