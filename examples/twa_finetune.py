"""Fine-tune with TWA: ordinary training for half the budget while collecting checkpoints, then a short
trainable-weight-averaging phase whose solution is the final model.

Defaults run offline (MiniLM-L6 on Rotten Tomatoes); any ``TrainingArguments`` or ``twa_*`` flag works::

    python examples/twa_finetune.py --max_steps 200 --twa_start 0.5 --twa_every 10 --twa_steps 20
    accelerate launch --num_processes 2 examples/twa_finetune.py --twa_form layerwise --twa_bits 4

With several processes each one stores only its share of the basis (see docs/twa.md).
"""

from __future__ import annotations

import sys

from hf_efftrain.finetune import DEMO_DEFAULTS, build_classification_trainer, parse_classification_args, report_metrics
from hf_efftrain.twa import TWACallback

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
    script, args = parse_classification_args(TWA_DEFAULTS, argv)
    trainer = build_classification_trainer(script, args)
    trainer.train()
    trainer.save_model()  # the TWA solution, saved like any model
    metrics = trainer.evaluate()
    twa = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TWACallback)), None)
    if twa is not None:
        metrics.update({f"twa_{k}": v for k, v in twa.report.items()})
    return report_metrics(trainer, metrics)


if __name__ == "__main__":
    main(sys.argv[1:])
