"""The standard sequence-classification fine-tuning recipe behind the examples.

Every example fine-tunes the same way (offline MiniLM on Rotten Tomatoes by default, or any Hub model and
dataset) and differs only in which methods its ``EfficientTrainingArguments`` switch on; keeping the recipe
here means one place to fix. Example::

    script, args = parse_classification_args(DEMO_DEFAULTS)
    trainer = build_classification_trainer(script, args)
    trainer.train()
    report_metrics(trainer, finish_run(trainer))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from datasets import DatasetDict
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, set_seed

from hf_efftrain.cmd.callback import CMDCallback
from hf_efftrain.data import minilm_path
from hf_efftrain.entrypoint import parse_arguments
from hf_efftrain.loading import from_pretrained_with_head
from hf_efftrain.log import preparation_output
from hf_efftrain.mat.callback import MATCallback
from hf_efftrain.run_folder import RunFolderArguments
from hf_efftrain.tasks import accuracy_metric, load_splits, tokenize_classification
from hf_efftrain.trainer import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.twa.callback import TWACallback

DEMO_DEFAULTS = {
    "output_dir": "outputs/finetune",
    "max_steps": 100,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 128,
    "learning_rate": 5e-5,
    "lr_scheduler_type": "linear",
    "logging_steps": 20,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 0,
    # the examples opt in: MiniLM's classifier loss is a plain mean, which transformers 5 would scale by the
    # number of processes and accumulation steps (EfficientTrainer itself keeps Trainer's behaviour by default)
    "fix_loss_scaling": True,
}


@dataclass
class ClassificationArguments(RunFolderArguments):
    """What to fine-tune on what (the ``TrainingArguments`` say how)."""

    model_name_or_path: str = field(
        default="minilm", metadata={"help": "'minilm' (offline MiniLM-L6), a local folder, or a Hub model id."}
    )
    dataset_name: str = field(
        default="rotten_tomatoes", metadata={"help": "'rotten_tomatoes' (offline copy) or a Hub dataset id."}
    )
    max_length: int = field(default=64, metadata={"help": "Truncate texts to this many tokens."})
    eval_split: str = field(default="validation", metadata={"help": "Split used for the evaluation."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on at most this many."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many."})


def parse_classification_args(
    defaults: dict, argv: list[str] | None = None
) -> tuple[ClassificationArguments, EfficientTrainingArguments]:
    """Read the script's and the trainer's flags (``HfArgumentParser``), with an example's own defaults."""
    return parse_arguments((ClassificationArguments, EfficientTrainingArguments), defaults, argv)


def build_classification_trainer(script: ClassificationArguments, args: EfficientTrainingArguments) -> EfficientTrainer:
    """Tokenizer, data (subsampled before tokenizing), a 2-label classifier and an ``EfficientTrainer``."""
    set_seed(args.seed)
    if args.ddp_find_unused_parameters is None and not (args.mat or args.cmd_embed_every):
        # every parameter gets a gradient: spare DDP its per-step graph search (and torch's warning about it)
        args.ddp_find_unused_parameters = False
    model_dir = str(minilm_path()) if script.model_name_or_path == "minilm" else script.model_name_or_path
    with preparation_output(args):  # --log_level and --disable_tqdm apply already; one process draws the bars
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        loaded = load_splits(script.dataset_name, seed=args.seed)
        splits = DatasetDict({name: loaded[name] for name in ("train", script.eval_split)})  # no unused split
        for name, limit in (("train", script.max_train_samples), (script.eval_split, script.max_eval_samples)):
            if limit:
                splits[name] = splits[name].select(range(min(limit, len(splits[name]))))
        splits = tokenize_classification(splits, tokenizer, script.max_length)
        model = from_pretrained_with_head(AutoModelForSequenceClassification, model_dir, num_labels=2)
    return EfficientTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits[script.eval_split],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy_metric,
    )


def finish_run(trainer: EfficientTrainer) -> dict:
    """Save the final model (the TWA solution when TWA ran), evaluate it and add each method's own figures."""
    trainer.save_model()
    metrics = trainer.evaluate()
    for callback in trainer.callback_handler.callbacks:
        metrics.update(_method_figures(trainer, callback))
    return metrics


def _method_figures(trainer: EfficientTrainer, callback) -> dict:
    if isinstance(callback, TWACallback):
        return {f"twa_{k}": v for k, v in callback.report.items()}
    if isinstance(callback, MATCallback) and callback.engine is not None:
        engine = callback.engine
        return {
            "mat_active_fraction": float(engine.active.float().mean()),
            "mat_projection_backward_flops_saved": engine.counter.saved_fraction,
            "mat_measurements": engine.measurements,
        }
    if isinstance(callback, CMDCallback) and callback.ready and trainer.args.world_size == 1:
        with callback.swapped(trainer.model):  # CMD weights evaluated like an EMA, then the last weights return
            figures = trainer.evaluate(metric_key_prefix="eval_cmd")
        report = callback.report(trainer.model)
        return {**figures, **{f"cmd_{k}": v for k, v in report.items() if k != "embedding_history"}}
    return {}


def report_metrics(trainer: EfficientTrainer, metrics: dict) -> dict:
    """Print the metrics as JSON once (main process only), save ``trainer_state.json`` and return the metrics."""
    trainer.save_state()  # the log history (losses, eval, method figures) `hf-efftrain report` plots
    if trainer.is_world_process_zero():
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, indent=2))
    return metrics
