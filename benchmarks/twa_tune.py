"""Choose the collection window, TWA form, learning rate and trust on validation data, with an unreported seed.

One fine-tuning run of the full N-step schedule (the full fine-tune arm, scored at step N), keeping θ at the
collection steps of every candidate window and the weights at N/2 (the last arm). For each collection
window (first step, every), SWA over its checkpoints is scored; the window is chosen by *SWA's* score, so
the baseline gets its best window. Then each TWA candidate (form, lr, trust) runs ``twa_steps`` TWA steps
from the checkpoints of each window (``--twa-windows all``) or of the chosen one only. All scores are on the
first validation reviews; run it once per fine-tuning lr to compare the full fine-tune across lrs. Writes
``benchmarks/results/twa_tuning.json`` (or ``--name``)::

    python -m benchmarks.twa_tune --steps 100 --twa-steps 10 --max-length 32 --lr 1e-4 --batch-size 16
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from benchmarks.harness import run_facts, write_result
from benchmarks.sentiment import SentimentTask
from benchmarks.twa import recipe
from hf_efftrain.twa import TrainableView, TWAConfig, train_twa

# (form, lr, trust): trust 0 is the unconstrained projected SGD of the first benchmark run
CANDIDATES = [
    ("subspace", 0.3, 1.0),
    ("subspace", 1.0, 1.0),
    ("subspace", 3.0, 1.0),
    ("subspace", 1.0, 2.0),
    ("subspace", 1.0, 0.0),
    ("layerwise", 0.3, 1.0),
]
WINDOWS = [(0.25, 10), (0.4, 4), (0.25, 4), (0.4, 2)]  # (collect_from as a fraction of N, every)


class _Keep(TrainerCallback):
    """Keeps θ at the collection steps and the whole state at the TWA start; training goes on to N."""

    def __init__(self, steps: list[int], start: int) -> None:
        self.steps, self.start, self.thetas = set(steps), start, {}
        self.last: dict[str, torch.Tensor] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            self.thetas[state.global_step] = TrainableView(model).vector()
        if state.global_step == self.start:
            self.last = {k: v.detach().clone() for k, v in model.state_dict().items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--twa-steps", type=int, default=8)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--collect-from", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-5, help="fine-tuning lr of phase 1")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-samples", type=int, default=500)
    parser.add_argument("--twa-windows", default="all", choices=["all", "chosen"], help="windows TWA is tried on")
    parser.add_argument("--name", default="twa_tuning", help="result file name in benchmarks/results")
    opts = parser.parse_args(argv)
    torch.set_num_threads(1)
    task = SentimentTask.load(max_length=opts.max_length)
    task.splits["val"] = task.splits["validation"].select(range(opts.eval_samples))
    start = opts.steps // 2
    windows = {
        w: TWAConfig(start=start, collect_from=w[0], every=w[1], steps=opts.twa_steps).collection_steps(opts.steps)
        for w in WINDOWS
    }
    keep = _Keep(sorted({s for steps in windows.values() for s in steps}), start)
    model = task.model(opts.seed)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=opts.steps, seed=opts.seed, logging_steps=10, **recipe(opts))
        trainer = Trainer(
            model, args, train_dataset=task.splits["train"], data_collator=task.collator, callbacks=[keep]
        )
        trainer.train()
        loader = iter(trainer.get_train_dataloader())
        batches = [next(loader) for _ in range(start + opts.twa_steps)][start:]
    rows: list[dict[str, Any]] = [{"arm": "full", "val_accuracy": task.accuracy(model, "val")}]
    model.load_state_dict(keep.last)
    rows.append({"arm": "last", "val_accuracy": task.accuracy(model, "val")})
    for window, steps in windows.items():
        TrainableView(model).assign(torch.stack([keep.thetas[s] for s in steps]).mean(0))
        rows.append({"arm": f"swa window={window}", "window": window, "val_accuracy": task.accuracy(model, "val")})
        print(rows[-1], flush=True)
    best_window = max((r for r in rows if "window" in r), key=lambda r: r["val_accuracy"])["window"]
    for window in windows if opts.twa_windows == "all" else [best_window]:
        thetas = [keep.thetas[s] for s in windows[window]]
        for form, lr, trust in CANDIDATES:
            model.load_state_dict(keep.last)
            set_seed(opts.seed)  # same dropout masks for every candidate: they differ only in their knobs
            config = TWAConfig(form=form, lr=lr, trust=trust, steps=opts.twa_steps)
            solver = train_twa(model, thetas, batches, config, max_grad_norm=args.max_grad_norm)
            arm = f"twa {form} lr={lr} trust={trust} window={window}"
            rows.append({"arm": arm, "val_accuracy": task.accuracy(model, "val"), "confined": solver.confined_steps})
            print(rows[-1], flush=True)
    chosen = [r for r in rows if r["arm"].startswith("twa") and r["arm"].endswith(f"window={best_window}")]
    best = max(chosen, key=lambda r: r["val_accuracy"])
    result = {"window": best_window, "best": best["arm"], "candidates": rows, **run_facts(**vars(opts))}
    write_result(opts.name, result, "TWA tuning on validation (seed not reported)", {"Candidates": rows})


if __name__ == "__main__":
    main()
