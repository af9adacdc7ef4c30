"""Benchmark: LoRA fine-tuning of a decoder LLM alone, with MAT, with TWA; CMD of the adapter trajectory.

SmolLM2-135M-Instruct (dequantized 4-bit, instruct-tuned: ``hf_efftrain.data.smollm2_path``), LoRA rank 8 on
q/k/v/o, Wikipedia packed into 128-token blocks; evaluation loss on blocks of whole held-out articles. Per seed,
every arm gets the same LoRA initialization, the same data order and the same number of optimizer steps:

* ``lora``: plain LoRA fine-tuning; its adapter is snapshotted every ``--snapshot-every`` steps and post-hoc
  CMD is fitted to those snapshots (relative reconstruction error, and the eval loss of the reconstructed
  final adapter);
* ``lora+mat``: ``EfficientTrainer(mat=True)`` on the LoRA model: heads gated on their adapter slices (rows of
  lora_B of q/k/v, columns of lora_A of o), a k/v slice gated when all query heads reading it are;
* ``lora+mat_kv``: the same with ``mat_gqa_unit="kv_group"`` (a k/v head and its query heads are one module);
* ``lora+twa``: ordinary steps collecting the adapter every ``--twa-every`` steps, then the last
  ``--twa-steps`` steps are TWA steps in the span of the collected adapters, starting from their plain
  average (the paper);
* ``lora+twa_last``: the same, starting from (and trusting a region around) the last collected adapter
  (``twa_init="last"``).

FLOPs of forward + backward are counted with ``torch.utils.flop_counter`` on the same steps of every arm;
the backward share is that minus one forward (same shapes in every arm). Defaults aim at ~20-25 min on 2 CPU
cores (LoRA steps cost less than the ~4.8 s of a full fine-tuning step at 4 × 128 tokens). Writes
``benchmarks/results/causal_lm.json`` and ``.md``::

    python -m benchmarks.causal_lm                                   # all arms, seeds 0 1
    python -m benchmarks.causal_lm --arms lora lora+twa --steps 48
    python -m benchmarks.causal_lm --model tiny --steps 4 --no-write  # a random 2-layer Llama: seconds
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, default_data_collator, set_seed

from benchmarks.harness import run_facts, write_result
from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.adapters import ADAPTER_WEIGHTS
from hf_efftrain.causal_lm import add_lora
from hf_efftrain.cmd import fit_cmd
from hf_efftrain.data import load_wikipedia, minilm_path, smollm2_path
from hf_efftrain.errors import HfEfftrainError
from hf_efftrain.tasks import causal_lm_blocks
from hf_efftrain.testing import tiny_config
from hf_efftrain.trainer import check_model_fits_methods
from hf_efftrain.trajectory import Trajectory
from hf_efftrain.twa import TWACallback

ARMS = ("lora", "lora+mat", "lora+mat_kv", "lora+twa", "lora+twa_last")
TWA_ARMS = {"lora+twa": "average", "lora+twa_last": "last"}
MAT_ARMS = {"lora+mat": "query_head", "lora+mat_kv": "kv_group"}
MB = 2**20


class FlopTap(TrainerCallback):
    """FLOPs of each counted step's forward + backward (from step begin to the optimizer step), and its wall time."""

    def __init__(self, every: int) -> None:
        self.every, self.flops, self.seconds = every, [], 0.0
        self._mode: FlopCounterMode | None = None
        self._began = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._began = time.perf_counter()
        if state.global_step % self.every == 0:  # the step about to run is global_step + 1
            self._mode = FlopCounterMode(display=False)
            self._mode.__enter__()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self.flops.append(float(self._mode.get_total_flops()))
            self._mode = None

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self._began


def forward_flops(model, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs of one forward pass (the same in every arm: MAT and TWA change only the backward and the update)."""
    with torch.no_grad(), FlopCounterMode(display=False) as mode:
        model(**batch)
    return float(mode.get_total_flops())


def load_task(opts: argparse.Namespace) -> tuple[Any, DatasetDict, str]:
    """(tokenizer, packed blocks, model folder or "tiny"), with the evaluation blocks capped."""
    if opts.model == "tiny":
        tokenizer, folder = AutoTokenizer.from_pretrained(minilm_path()), "tiny"
        tokenizer.eos_token = tokenizer.sep_token  # MiniLM has no EOS; any separator marks article ends
    else:
        folder = str(smollm2_path()) if opts.model == "smollm2" else opts.model
        tokenizer = AutoTokenizer.from_pretrained(folder)
    splits = load_wikipedia(seed=0, validation_articles=opts.validation_articles)
    blocks = causal_lm_blocks(splits, tokenizer, opts.block_size)
    blocks["validation"] = blocks["validation"].select(range(min(opts.eval_blocks, len(blocks["validation"]))))
    return tokenizer, blocks, folder


def load_lora_model(folder: str, opts: argparse.Namespace, vocab: int, seed: int):
    """The base model with a fresh LoRA adapter; the same seed gives the same adapter initialization."""
    set_seed(seed)
    if folder == "tiny":
        base = AutoModelForCausalLM.from_config(tiny_config("llama", hidden_size=32, vocab_size=vocab))
    else:
        base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return add_lora(base, r=opts.rank, alpha=2 * opts.rank)


def arm_arguments(arm: str, out: str, opts: argparse.Namespace, seed: int) -> EfficientTrainingArguments:
    knobs: dict[str, Any] = {}
    if arm == "lora":
        knobs = {"snapshot_every": opts.snapshot_every}
    elif arm in MAT_ARMS:
        knobs = {"mat": True, "mat_gqa_unit": MAT_ARMS[arm], "mat_every": opts.mat_every}
        knobs |= {"mat_warmup_steps": opts.mat_warmup, "mat_probe_size": opts.batch_size}
    elif arm in TWA_ARMS:
        knobs = {"twa": True, "twa_start": opts.steps - opts.twa_steps, "twa_steps": opts.twa_steps}
        knobs |= {"twa_init": TWA_ARMS[arm]}
        knobs |= {"twa_every": opts.twa_every, "twa_collect_from": opts.twa_collect_from, "twa_lr": opts.twa_lr}
        knobs |= {"twa_form": opts.twa_form, "twa_trust": opts.twa_trust}
    return EfficientTrainingArguments(
        output_dir=out, max_steps=opts.steps, per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.eval_batch_size, learning_rate=opts.lr, lr_scheduler_type="linear",
        warmup_steps=opts.warmup_steps, seed=seed, logging_steps=10, save_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=not torch.cuda.is_available(), **knobs,
    )  # fmt: skip


def run_arm(arm: str, folder: str, blocks: DatasetDict, opts: argparse.Namespace, seed: int, vocab: int) -> dict:
    """Train one arm; its eval loss, wall time, FLOPs and the method's own figures."""
    model = load_lora_model(folder, opts, vocab, seed)
    with tempfile.TemporaryDirectory() as out:
        tap = FlopTap(opts.flops_every)
        trainer = EfficientTrainer(
            model=model, args=arm_arguments(arm, out, opts, seed), train_dataset=blocks["train"],
            eval_dataset=blocks["validation"], data_collator=default_data_collator, callbacks=[tap],
        )  # fmt: skip
        began, cpu_began = time.perf_counter(), time.process_time()
        trainer.train()
        row = {"train_seconds": time.perf_counter() - began, "step_seconds": tap.seconds / opts.steps}
        row["train_cpu_seconds"] = time.process_time() - cpu_began  # the process's work, whatever else runs
        row |= {"eval_loss": trainer.evaluate()["eval_loss"], "step_flops": statistics.mean(tap.flops)}
        batch = default_data_collator([blocks["train"][i] for i in range(opts.batch_size)])
        row["forward_flops"] = forward_flops(model, {k: v.to(model.device) for k, v in batch.items()})
        if arm == "lora":
            row |= adapter_figures(trainer, Path(out), opts)
        if arm in TWA_ARMS:
            report = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TWACallback)).report
            row |= {"twa_checkpoints": report["checkpoints"], "twa_basis_mb": report["basis_memory_mb"]}
        if arm in MAT_ARMS:
            row |= _mat_figures(trainer, row["train_seconds"])
    return row


def adapter_figures(trainer: EfficientTrainer, out: Path, opts: argparse.Namespace) -> dict[str, Any]:
    """Adapter size on disk; CMD of the adapter snapshots and the eval loss of its reconstructed last adapter."""
    trainer.save_model(str(out / "adapter"))
    trajectory = Trajectory(out / "snapshots")
    result = fit_cmd(trajectory, modes=opts.cmd_modes, seed=0)
    last = trajectory.steps[-1]
    trainer.model.load_state_dict(result.reconstruct(last), strict=False)  # adapter tensors only
    return {
        "adapter_mb": (out / "adapter" / ADAPTER_WEIGHTS).stat().st_size / MB,
        "cmd_snapshots": len(trajectory),
        "cmd_adapter_relative_reconstruction_error": result.stats["relative_reconstruction_error"],
        "cmd_adapter_eval_loss": trainer.evaluate()["eval_loss"],
    }


def _mat_figures(trainer: EfficientTrainer, train_seconds: float) -> dict[str, Any]:
    """MAT's own counts: projection backward FLOPs skipped, probe time and its share, mean active fraction, and
    where in depth the gates fall (a back-propagation stop can skip only layers below every active head)."""
    from hf_efftrain.mat import MATCallback

    engine = next(c for c in trainer.callback_handler.callbacks if isinstance(c, MATCallback)).engine
    fractions = [sum(h["active"]) / len(h["active"]) for h in engine.history]
    return {
        "mat_projection_backward_flops_saved": engine.counter.saved_fraction,
        "measure_seconds": engine.measure_seconds,
        "measurement_overhead": engine.measure_seconds / train_seconds,
        "measurements": engine.measurements,
        "active_fraction_at_probes": statistics.mean(fractions) if fractions else 1.0,
        **depth_figures(engine.layout, engine.history, engine.config.warmup_steps),
    }


def depth_figures(layout, history: list[dict[str, Any]], warmup_steps: int) -> dict[str, Any]:
    """Over the probes that gated (past warm-up): the deepest "lowest layer with an active head" (how far down a
    back-propagation stop could ever cut), the mean number of fully gated layers, and each layer's mean λmax
    relative to the model's mean (the depth profile that decides both)."""
    gated = [h for h in history if h["step"] >= warmup_steps]
    if not gated:
        return {"lowest_active_layer": 0, "fully_gated_layers": 0.0, "lambda_by_layer": []}
    layers = [[i for i, u in enumerate(layout.units) if u.layer == layer] for layer in range(layout.num_layers)]
    lowest, fully, profile = [], [], []
    for probe in gated:
        on = [any(probe["active"][i] for i in ids) for ids in layers]
        lowest.append(on.index(True) if any(on) else layout.num_layers)
        fully.append(on.count(False))
        lam = torch.tensor(probe["lambda"], dtype=torch.float64)
        profile.append([float(lam[ids].mean() / lam.mean()) for ids in layers])
    return {
        "lowest_active_layer": max(lowest),
        "fully_gated_layers": statistics.mean(fully),
        "lambda_by_layer": _column_means(profile),
    }


def _mean_profile(runs: list[dict], arm: str) -> list[float]:
    """Each layer's relative λmax, averaged over seeds."""
    return _column_means([r[f"{arm}/lambda_by_layer"] for r in runs if r[f"{arm}/lambda_by_layer"]])


def _column_means(rows: list[list[float]]) -> list[float]:
    """Mean of each column over ``rows`` (equal lengths), to 3 decimals; empty for no rows."""
    return [round(statistics.mean(column), 3) for column in zip(*rows, strict=True)]


def check_arms(arms: list[str], folder: str, opts: argparse.Namespace, vocab: int) -> None:
    """Refuse, before anything trains, an arm the library refuses for this model (e.g. MAT on an unsliceable one)."""
    if "lora+mat" in arms:
        with tempfile.TemporaryDirectory() as out:
            args = arm_arguments("lora+mat", out, opts, 0)
            try:
                check_model_fits_methods(args, load_lora_model(folder, opts, vocab, 0))
            except HfEfftrainError as err:
                raise SystemExit(f"the lora+mat arm cannot run: {err} (leave it out: --arms lora lora+twa)") from None


def summarize(runs: list[dict], arms: list[str]) -> dict[str, Any]:
    """The contract keys: means over seeds (per-seed values are in ``per_seed``); None for arms not run."""
    mean = lambda key: statistics.mean(r[key] for r in runs) if runs and runs[0].get(key) is not None else None  # noqa: E731

    def ratio(arm: str, key: str) -> float | None:
        if arm not in arms:
            return None
        return statistics.mean(r[f"{arm}/{key}"] / r[f"lora/{key}"] for r in runs)

    def backward_ratio(arm: str) -> float | None:
        if arm not in arms:
            return None
        backward = lambda r, a: r[f"{a}/step_flops"] - r[f"{a}/forward_flops"]  # noqa: E731
        return statistics.mean(backward(r, arm) / backward(r, "lora") for r in runs)

    return {
        "base_eval_loss": mean("base_eval_loss"),
        "lora_eval_loss": mean("lora/eval_loss"),
        "lora_mat_eval_loss": mean("lora+mat/eval_loss") if "lora+mat" in arms else None,
        "lora_twa_eval_loss": mean("lora+twa/eval_loss") if "lora+twa" in arms else None,
        "lora_twa_last_eval_loss": mean("lora+twa_last/eval_loss") if "lora+twa_last" in arms else None,
        "lora_mat_backward_flops_ratio": backward_ratio("lora+mat"),
        "lora_mat_wall_clock_ratio": ratio("lora+mat", "train_seconds"),
        "lora_mat_cpu_time_ratio": ratio("lora+mat", "train_cpu_seconds"),
        "lora_twa_cpu_time_ratio": ratio("lora+twa", "train_cpu_seconds"),
        "lora_twa_last_cpu_time_ratio": ratio("lora+twa_last", "train_cpu_seconds"),
        "lora_mat_measurement_overhead": mean("lora+mat/measurement_overhead") if "lora+mat" in arms else None,
        "lora_mat_lowest_active_layer": max(r["lora+mat/lowest_active_layer"] for r in runs)
        if "lora+mat" in arms
        else None,
        "lora_mat_fully_gated_layers": mean("lora+mat/fully_gated_layers") if "lora+mat" in arms else None,
        "lora_mat_lambda_by_layer": _mean_profile(runs, "lora+mat") if "lora+mat" in arms else None,
        "lora_mat_kv_eval_loss": mean("lora+mat_kv/eval_loss") if "lora+mat_kv" in arms else None,
        "lora_mat_kv_backward_flops_ratio": backward_ratio("lora+mat_kv"),
        "lora_mat_kv_wall_clock_ratio": ratio("lora+mat_kv", "train_seconds"),
        "lora_mat_kv_cpu_time_ratio": ratio("lora+mat_kv", "train_cpu_seconds"),
        "lora_mat_kv_measurement_overhead": mean("lora+mat_kv/measurement_overhead") if "lora+mat_kv" in arms else None,
        "lora_twa_wall_clock_ratio": ratio("lora+twa", "train_seconds"),
        "lora_twa_backward_flops_ratio": backward_ratio("lora+twa"),
        "lora_twa_last_wall_clock_ratio": ratio("lora+twa_last", "train_seconds"),
        "lora_twa_last_backward_flops_ratio": backward_ratio("lora+twa_last"),
        "adapter_mb": mean("lora/adapter_mb"),
        "twa_checkpoints": mean("lora+twa/twa_checkpoints") if "lora+twa" in arms else None,
        "twa_basis_mb": mean("lora+twa/twa_basis_mb") if "lora+twa" in arms else None,
        "cmd_adapter_relative_reconstruction_error": mean("lora/cmd_adapter_relative_reconstruction_error"),
        "cmd_adapter_eval_loss": mean("lora/cmd_adapter_eval_loss"),
        "lora_step_seconds": mean("lora/step_seconds"),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2 (offline), a folder, or tiny (random, for tests)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = 2 × rank)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup-steps", type=int, default=4)
    parser.add_argument("--validation-articles", type=int, default=10)
    parser.add_argument("--eval-blocks", type=int, default=128, help="first blocks of the held-out articles")
    parser.add_argument("--eval-batch-size", type=int, default=8)
    parser.add_argument("--flops-every", type=int, default=8, help="count FLOPs on every N-th step (all arms)")
    parser.add_argument("--snapshot-every", type=int, default=4, help="lora arm: adapter snapshots for CMD")
    parser.add_argument("--cmd-modes", type=int, default=5)
    parser.add_argument("--mat-every", type=float, default=0.1, help="MAT probe interval (fraction of --steps)")
    parser.add_argument("--mat-warmup", type=float, default=0.2, help="MAT warm-up (fraction of --steps)")
    parser.add_argument("--twa-every", type=int, default=4)
    parser.add_argument("--twa-collect-from", type=float, default=0.25)
    parser.add_argument("--twa-steps", type=int, default=8, help="the last N of --steps are TWA steps")
    parser.add_argument("--twa-lr", type=float, default=0.05)
    parser.add_argument("--twa-form", choices=("subspace", "layerwise"), default="subspace")
    parser.add_argument("--twa-trust", type=float, default=1.0, help="trust radius in checkpoint spreads (0 = off)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time measures each arm's work)")
    parser.add_argument("--budget-note", default="")
    parser.add_argument("--no-write", action="store_true", help="print only (quick sanity runs)")
    parser.add_argument("--name", default="causal_lm", help="result name (benchmarks/results/)")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = _parser().parse_args(argv)
    torch.set_num_threads(opts.threads)
    if not 0 < opts.twa_steps < opts.steps:
        raise SystemExit(f"--twa-steps must be in 1..{opts.steps - 1} (the last steps of --steps)")
    tokenizer, blocks, folder = load_task(opts)
    vocab = len(tokenizer)
    arms = [arm for arm in ARMS if arm in opts.arms]  # lora first: the ratios are relative to it
    if "lora" not in arms:
        raise SystemExit("--arms must include lora: every ratio is relative to it")
    check_arms(arms, folder, opts, vocab)
    base = load_lora_model(folder, opts, vocab, opts.seeds[0])  # LoRA B = 0: the base model's function
    with tempfile.TemporaryDirectory() as out:
        evaluator = EfficientTrainer(
            model=base, args=arm_arguments("base", out, opts, 0), eval_dataset=blocks["validation"],
            data_collator=default_data_collator,
        )  # fmt: skip
        base_loss = evaluator.evaluate()["eval_loss"]
    del base, evaluator
    runs = []
    for seed in opts.seeds:  # interleaved: load changes hit every arm of a seed alike
        row: dict[str, Any] = {"seed": seed, "base_eval_loss": base_loss}
        for arm in arms:
            row |= {f"{arm}/{key}": value for key, value in run_arm(arm, folder, blocks, opts, seed, vocab).items()}
        print(row, flush=True)
        runs.append(row)
    result = summarize(runs, arms)
    result |= {
        "model": "SmolLM2-135M-Instruct (dequantized Q4_1 GGUF, instruct-tuned)"
        if opts.model == "smollm2"
        else opts.model,
        "arms": arms,
        "data": f"Wikipedia (gensim sample): {len(blocks['train'])} train blocks of {opts.block_size} tokens; "
        f"eval: first {len(blocks['validation'])} blocks of {opts.validation_articles} held-out articles",
        "settings": {k: v for k, v in vars(opts).items() if k not in ("budget_note", "no_write", "name")},
        "budget_note": opts.budget_note,
        "per_seed": runs,
        **run_facts(seeds=opts.seeds),
    }
    if not opts.no_write:
        write_result(opts.name, result, "LoRA on a decoder LLM: alone, with MAT, with TWA; CMD of the adapter",
                     {"Per seed": [_scalars(r) for r in runs], **depth_table(result)})  # fmt: skip
    return result


def _scalars(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not isinstance(v, list)}


def depth_table(result: dict[str, Any]) -> dict[str, list[dict]]:
    """The λmax depth profile as a table (one row per layer), when a MAT arm ran."""
    profile = result.get("lora_mat_lambda_by_layer") or []
    rows = [{"layer": layer, "mean lambda_max / model mean": value} for layer, value in enumerate(profile)]
    return {"MAT: each layer's mean lambda_max relative to the model's (lora+mat, past warm-up)": rows} if rows else {}


if __name__ == "__main__":
    main()
