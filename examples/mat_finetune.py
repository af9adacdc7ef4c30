"""Fine-tune a sequence classifier with MAT: only heads with a large modular-NTK λmax are trained.

Offline defaults: the real MiniLM-L6 on the real Rotten Tomatoes reviews. Every ``TrainingArguments`` flag works,
plus the ``--mat_*`` flags (see ``docs/mat.md``). The run folder gets ``mat_history.json`` and ``mat_heatmap.png``::

    python examples/mat_finetune.py --max_steps 200 --mat_every 10 --mat_warmup_steps 30
    accelerate launch examples/mat_finetune.py --mat_granularity heads+ffn --mat_stop_backprop false
"""

from __future__ import annotations

import sys

from hf_efftrain.finetune import DEMO_DEFAULTS, build_classification_trainer, parse_classification_args, report_metrics

MAT_DEFAULTS = {
    **DEMO_DEFAULTS,
    "output_dir": "outputs/mat_finetune",
    "max_steps": 200,
    "logging_steps": 10,
    "mat": True,
    "mat_every": 10,
    "mat_warmup_steps": 30,
}


def main(argv: list[str] | None = None) -> dict[str, float]:
    script, args = parse_classification_args(MAT_DEFAULTS, argv)
    trainer = build_classification_trainer(script, args)
    trainer.train()
    return report_metrics(trainer, trainer.evaluate())


if __name__ == "__main__":
    main(sys.argv[1:])
