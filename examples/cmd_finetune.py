"""Fine-tune with online CMD riding along, then compare the last weights with the CMD weights.

Defaults run offline: MiniLM-L6 on Rotten Tomatoes. Online CMD takes a snapshot every ``--cmd_every`` steps,
freezes its modes after ``--cmd_warmup`` snapshots and keeps θ̂ = a·r(t) + b up to date (saved to
``<output_dir>/cmd_model``). ``--cmd_embed_every N`` also embeds converged tensors (they stop training).
With ``--snapshot_every K`` the run's trajectory is decomposed post-hoc at the end (``<output_dir>/cmd_posthoc``)::

    python examples/cmd_finetune.py --max_steps 200 --cmd_every 4 --cmd_warmup 10 --snapshot_every 4
    python examples/cmd_finetune.py --cmd_embed_every 5          # embedded CMD
    accelerate launch examples/cmd_finetune.py --max_steps 200    # CMD state on the main process
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    set_seed,
)

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments, Trajectory
from hf_efftrain.cmd import CMDCallback, fit_cmd
from hf_efftrain.cmd.plots import plot_all
from hf_efftrain.data import minilm_path
from hf_efftrain.tasks import accuracy_metric, load_splits, tokenize_classification

DEMO_DEFAULTS = {
    "output_dir": "outputs/cmd_finetune",
    "max_steps": 200,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 128,
    "learning_rate": 5e-5,
    "lr_scheduler_type": "linear",
    "logging_steps": 20,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 0,
    "cmd_online": True,
    "cmd_every": 4,
    "cmd_warmup": 10,
    "cmd_modes": 5,
}


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(
        default="minilm", metadata={"help": "'minilm' (offline MiniLM-L6), a local folder, or a Hub model id."}
    )
    dataset_name: str = field(
        default="rotten_tomatoes", metadata={"help": "'rotten_tomatoes' (offline copy) or a Hub dataset id."}
    )
    max_length: int = field(default=64, metadata={"help": "Truncate reviews to this many tokens."})
    eval_split: str = field(default="validation", metadata={"help": "Split used for the final evaluation."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many."})


def build_trainer(script: ScriptArguments, args: EfficientTrainingArguments) -> EfficientTrainer:
    model_dir = str(minilm_path()) if script.model_name_or_path == "minilm" else script.model_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    splits = tokenize_classification(load_splits(script.dataset_name, seed=args.seed), tokenizer, script.max_length)
    evaluation = splits[script.eval_split]
    if script.max_eval_samples:
        evaluation = evaluation.select(range(min(script.max_eval_samples, len(evaluation))))
    return EfficientTrainer(
        model=AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2),
        args=args,
        train_dataset=splits["train"],
        eval_dataset=evaluation,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy_metric,
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = HfArgumentParser((ScriptArguments, EfficientTrainingArguments))
    parser.set_defaults(**DEMO_DEFAULTS)
    script, args = parser.parse_args_into_dataclasses(args=argv)
    set_seed(args.seed)
    trainer = build_trainer(script, args)
    trainer.train()
    metrics = trainer.evaluate()
    callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, CMDCallback)), None)
    if callback is not None and callback.ready and args.world_size == 1:
        with callback.swapped(trainer.model):  # CMD weights evaluated like an EMA, then the last weights return
            metrics.update(trainer.evaluate(metric_key_prefix="eval_cmd"))
        metrics.update({f"cmd_{k}": v for k, v in callback.report(trainer.model).items() if k != "embedding_history"})
    if args.snapshot_every and trainer.is_world_process_zero():
        trainer.save_model(args.output_dir)  # the base folder `hf-efftrain cmd reconstruct` rebuilds models from
        traj = Trajectory(args.resolved_snapshot_dir)
        result = fit_cmd(traj, modes=args.cmd_modes, candidates=args.cmd_candidates, base_model=args.output_dir)
        result.save(Path(args.output_dir) / "cmd_posthoc")
        plot_all(result, Path(args.output_dir) / "cmd_posthoc" / "plots")
        metrics["posthoc_relative_displacement_error"] = result.stats["relative_displacement_error"]
    if trainer.is_world_process_zero():
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, indent=2))
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
