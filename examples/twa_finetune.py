"""Fine-tune with TWA: ordinary training for half the budget while collecting checkpoints, then a short
trainable-weight-averaging phase whose solution is the final model.

Defaults run offline (MiniLM-L6 on Rotten Tomatoes); any ``TrainingArguments`` or ``twa_*`` flag works::

    python examples/twa_finetune.py --max_steps 200 --twa_start 0.5 --twa_every 10 --twa_steps 20
    accelerate launch --num_processes 2 examples/twa_finetune.py --twa_form layerwise --twa_bits 4

With several processes each one stores only its share of the basis (see docs/twa.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, HfArgumentParser

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune import DEMO_DEFAULTS, ScriptArguments  # noqa: E402  (the shared demo's arguments)

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments  # noqa: E402
from hf_efftrain.data import minilm_path  # noqa: E402
from hf_efftrain.tasks import accuracy_metric, load_splits, tokenize_classification  # noqa: E402
from hf_efftrain.twa import TWACallback  # noqa: E402

TWA_DEFAULTS = {
    **DEMO_DEFAULTS,
    "output_dir": "outputs/twa_finetune",
    "max_steps": 200,
    "twa": True,
    "twa_start": 0.5,
    "twa_every": 10,
    "twa_steps": 20,
}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = HfArgumentParser((ScriptArguments, EfficientTrainingArguments))
    parser.set_defaults(**TWA_DEFAULTS)
    script, args = parser.parse_args_into_dataclasses(args=argv)
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
    trainer.save_model()  # the TWA solution, saved like any model
    metrics = trainer.evaluate()
    twa = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TWACallback)), None)
    if twa is not None:
        metrics.update({f"twa_{k}": v for k, v in twa.report.items()})
    if trainer.is_world_process_zero():
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, indent=2))
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
