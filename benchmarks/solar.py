"""Benchmark: SOLAR depth up-scaling of SmolLM2-135M, continued pre-training against the original model.

SmolLM2-135M-Instruct (dequantized 4-bit, instruct-tuned: ``hf_efftrain.data.smollm2_path``; 30 layers) is
up-scaled by :func:`hf_efftrain.growth.upscale_depth` (layers ``[0, L-m)`` then ``[m, L)``: 46 layers with the
default ``m = 7``), and both the up-scaled model and the original are trained, every weight, on the same
Wikipedia blocks (causal LM, 128 tokens) in the same order with the same optimizer, learning-rate schedule and
seed, for the same number of steps. The held-out loss of both (blocks of whole held-out articles) is recorded
at step 0 and every ``--eval-every`` steps: the curve shows what the seam costs at step 0 and whether the
deeper model catches up with and passes the original. Same steps and data, not same compute: an up-scaled step
costs about ``upscaled / original`` parameters more, and the result records both step times. Writes
``benchmarks/results/solar.json`` and ``.md``::

    python -m benchmarks.solar                                     # full size: 30 -> 46 layers (a GPU helps)
    python -m benchmarks.solar --layers 4 --m 1 --steps 4 --eval-every 2 --eval-blocks 8 --no-write   # smoke
    python -m benchmarks.solar --model tiny --steps 4 --eval-every 2 --no-write     # random Llama, no SmolLM2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch
from datasets import DatasetDict
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel, default_data_collator, set_seed

from benchmarks.causal_lm import load_task
from benchmarks.harness import run_facts, write_result
from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.growth import grow_depth, slices, upscale_depth
from hf_efftrain.growth.upscale import default_overlap
from hf_efftrain.testing import tiny_config

ARMS = ("original", "upscaled")
SMOLLM2 = "SmolLM2-135M-Instruct (dequantized Q4_1 GGUF, instruct-tuned)"


def load_source(folder: str, opts: argparse.Namespace, vocab: int) -> PreTrainedModel:
    """The model to up-scale (fp32), cut to its first ``--layers`` layers when asked (quick runs)."""
    if folder == "tiny":
        set_seed(0)
        layers = opts.layers or 4
        return AutoModelForCausalLM.from_config(tiny_config("llama", layers=layers, hidden_size=32, vocab_size=vocab))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if opts.layers and opts.layers < model.config.num_hidden_layers:
        model = grow_depth([model], slices([(0, 0, opts.layers)]))  # a new config: the cut model runs every layer
    return model


def source_depth(folder: str, opts: argparse.Namespace) -> int:
    """Layers of the model to up-scale, read from its config (nothing is loaded)."""
    if folder == "tiny":
        return opts.layers or 4
    layers = AutoConfig.from_pretrained(folder).num_hidden_layers
    return min(layers, opts.layers) if opts.layers else layers


def build_arm(arm: str, folder: str, opts: argparse.Namespace, vocab: int) -> PreTrainedModel:
    """The original (possibly cut) model, or its SOLAR up-scaling."""
    source = load_source(folder, opts, vocab)
    return source if arm == "original" else upscale_depth(source, m=opts.m)


def arm_arguments(out: str, opts: argparse.Namespace, seed: int) -> EfficientTrainingArguments:
    """The same training recipe for both arms: only the model differs."""
    return EfficientTrainingArguments(
        output_dir=out, max_steps=opts.steps, per_device_train_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum, per_device_eval_batch_size=opts.eval_batch_size,
        learning_rate=opts.lr, lr_scheduler_type=opts.scheduler, warmup_steps=opts.warmup_steps,
        weight_decay=opts.weight_decay, seed=seed, logging_steps=opts.eval_every, eval_strategy="steps",
        eval_steps=opts.eval_every, save_strategy="no", report_to="none", disable_tqdm=True, bf16=opts.bf16,
        use_cpu=not torch.cuda.is_available(),
    )  # fmt: skip


def run_arm(arm: str, folder: str, blocks: DatasetDict, opts: argparse.Namespace, seed: int, vocab: int) -> dict:
    """Train one arm; its held-out loss at step 0 and every ``--eval-every`` steps, and its timing."""
    model = build_arm(arm, folder, opts, vocab)
    row: dict[str, Any] = {"layers": model.config.num_hidden_layers, "parameters": model.num_parameters()}
    with tempfile.TemporaryDirectory() as out:
        trainer = EfficientTrainer(
            model=model, args=arm_arguments(out, opts, seed), train_dataset=blocks["train"],
            eval_dataset=blocks["validation"], data_collator=default_data_collator,
        )  # fmt: skip
        curve = {0: trainer.evaluate()["eval_loss"]}
        set_seed(seed)
        began = time.perf_counter()
        trainer.train()
        row["train_seconds"] = time.perf_counter() - began
        history = trainer.state.log_history
        curve |= {e["step"]: e["eval_loss"] for e in history if "eval_loss" in e}
        if opts.steps not in curve:
            curve[opts.steps] = trainer.evaluate()["eval_loss"]
        row["train_loss"] = {e["step"]: e["loss"] for e in history if "loss" in e}
    row["eval_loss"] = dict(sorted(curve.items()))
    row["step_seconds"] = row["train_seconds"] / opts.steps
    return row


def crossover(original: dict[int, float], upscaled: dict[int, float]) -> int | None:
    """The first evaluated step after 0 from which the up-scaled model's loss stays at or below the original's."""
    steps = [s for s in sorted(original) if s > 0 and s in upscaled]
    for index, step in enumerate(steps):
        if all(upscaled[s] <= original[s] for s in steps[index:]):
            return step
    return None


def summarize(runs: list[dict]) -> dict[str, Any]:
    """Means over seeds of the curves and the contract keys."""
    steps = sorted(runs[0]["original"]["eval_loss"])
    curve = [
        {
            "step": step,
            "original": statistics.mean(r["original"]["eval_loss"][step] for r in runs),
            "upscaled": statistics.mean(r["upscaled"]["eval_loss"][step] for r in runs),
        }
        for step in steps
    ]
    first, last = curve[0], curve[-1]
    mean = lambda arm, key: statistics.mean(r[arm][key] for r in runs)  # noqa: E731
    return {
        "original_layers": runs[0]["original"]["layers"],
        "upscaled_layers": runs[0]["upscaled"]["layers"],
        "original_parameters": runs[0]["original"]["parameters"],
        "upscaled_parameters": runs[0]["upscaled"]["parameters"],
        "original_eval_loss_at_0": first["original"],
        "upscaled_eval_loss_at_0": first["upscaled"],
        "original_final_eval_loss": last["original"],
        "upscaled_final_eval_loss": last["upscaled"],
        "final_gap": last["upscaled"] - last["original"],
        "crossover_step": crossover(
            {row["step"]: row["original"] for row in curve}, {row["step"]: row["upscaled"] for row in curve}
        ),
        "step_seconds_ratio": mean("upscaled", "step_seconds") / mean("original", "step_seconds"),
        "curve": curve,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2 (offline), a folder, or tiny (random, for tests)")
    parser.add_argument("--layers", type=int, default=None, help="cut the source to its first N layers (quick runs)")
    parser.add_argument("--m", type=int, default=None, help="layers dropped on each side of the seam (default L // 4)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--scheduler", default="cosine", help="learning-rate schedule (a transformers name)")
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--validation-articles", type=int, default=10)
    parser.add_argument("--eval-blocks", type=int, default=128, help="first blocks of the held-out articles")
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--budget-note", default="")
    parser.add_argument("--no-write", action="store_true", help="print only (quick sanity runs)")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = _parser().parse_args(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.steps < 1 or opts.eval_every < 1:
        raise SystemExit("--steps and --eval-every must be at least 1")
    tokenizer, blocks, folder = load_task(opts)
    vocab = len(tokenizer)
    depth = source_depth(folder, opts)
    opts.m = default_overlap(depth) if opts.m is None else opts.m
    if not 0 <= opts.m < depth:
        raise SystemExit(f"--m must be in 0..{depth - 1} (the source has {depth} layers), got {opts.m}")
    runs = []
    for seed in opts.seeds:
        row: dict[str, Any] = {"seed": seed}
        for arm in ARMS:
            row[arm] = run_arm(arm, folder, blocks, opts, seed, vocab)
            print({"seed": seed, "arm": arm, "eval_loss": row[arm]["eval_loss"]}, flush=True)
        runs.append(row)
    result = summarize(runs)
    tokens = opts.steps * opts.batch_size * opts.grad_accum * opts.block_size
    result |= {
        "model": SMOLLM2 if opts.model == "smollm2" else opts.model,
        "m": opts.m,
        "train_tokens_per_arm": tokens,
        "data": f"Wikipedia (gensim sample): {len(blocks['train'])} train blocks of {opts.block_size} tokens; "
        f"eval: first {len(blocks['validation'])} blocks of {opts.validation_articles} held-out articles",
        "settings": {k: v for k, v in vars(opts).items() if k not in ("budget_note", "no_write")},
        "budget_note": opts.budget_note,
        "per_seed": runs,
        **run_facts(seeds=opts.seeds),
    }
    if not opts.no_write:
        title = "SOLAR depth up-scaling: continued pre-training of the up-scaled model against the original"
        write_result("solar", result, title, {"Held-out loss (mean over seeds)": result["curve"]})
    return result


if __name__ == "__main__":
    main()
