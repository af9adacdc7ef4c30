"""Fine-tune a sequence classifier with MAT: only heads with a large modular-NTK λmax are trained.

Offline defaults: the real MiniLM-L6 on the real Rotten Tomatoes reviews. Every ``TrainingArguments`` flag works,
plus the ``--mat_*`` flags (see ``docs/mat.md``). The run folder gets ``mat_history.json`` and ``mat_heatmap.png``::

    python examples/mat_finetune.py --max_steps 200 --mat_every 10 --mat_warmup_steps 30
    accelerate launch examples/mat_finetune.py --mat_granularity heads+ffn --mat_stop_backprop false
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
    "output_dir": "outputs/mat_finetune",
    "max_steps": 200,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 128,
    "learning_rate": 5e-5,
    "lr_scheduler_type": "linear",
    "logging_steps": 10,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 0,
    "mat": True,
    "mat_every": 10,
    "mat_warmup_steps": 30,
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
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on at most this many."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many."})


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = HfArgumentParser((ScriptArguments, EfficientTrainingArguments))
    parser.set_defaults(**DEMO_DEFAULTS)
    script, args = parser.parse_args_into_dataclasses(args=argv)
    set_seed(args.seed)
    model_dir = str(minilm_path()) if script.model_name_or_path == "minilm" else script.model_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    splits = load_splits(script.dataset_name, seed=args.seed)
    for name, limit in (("train", script.max_train_samples), ("validation", script.max_eval_samples)):
        if limit:  # select before tokenizing: small runs stay fast
            splits[name] = splits[name].select(range(min(limit, len(splits[name]))))
    splits = tokenize_classification(splits, tokenizer, script.max_length)
    train, evaluation = splits["train"], splits["validation"]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    trainer = EfficientTrainer(
        model=model,
        args=args,
        train_dataset=train,
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
