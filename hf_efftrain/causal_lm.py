"""The decoder-LLM fine-tuning recipe behind ``examples/finetune_causal_lm.py`` and ``benchmarks/causal_lm.py``.

Offline by default: SmolLM2-135M-Instruct (:func:`hf_efftrain.data.smollm2_path`; dequantized 4-bit,
instruct-tuned) on Wikipedia packed into blocks, with whole articles held out for evaluation. Any Hub or local
causal LM and any dataset with a ``text`` column work online. LoRA (PEFT) on the attention projections is the
default; ``--lora false`` fine-tunes every weight. Example::

    script, args = parse_causal_lm_args({"output_dir": "out", "max_steps": 20})
    trainer = build_causal_lm_trainer(script, args)
    trainer.train()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from datasets import DatasetDict
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, default_data_collator, set_seed

from hf_efftrain.architectures import get_architecture
from hf_efftrain.data import smollm2_path
from hf_efftrain.entrypoint import parse_arguments
from hf_efftrain.errors import ArgumentsError
from hf_efftrain.extras import require
from hf_efftrain.log import preparation_output
from hf_efftrain.run_folder import RunFolderArguments
from hf_efftrain.tasks import causal_lm_blocks, load_splits
from hf_efftrain.trainer import EfficientTrainer, EfficientTrainingArguments

CAUSAL_LM_DEFAULTS = {
    "output_dir": "outputs/finetune_causal_lm",
    "max_steps": 60,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "learning_rate": 5e-4,  # LoRA; full fine-tuning wants ~5e-5 (--learning_rate)
    "lr_scheduler_type": "linear",
    "warmup_steps": 5,
    "logging_steps": 10,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 0,
    # TWA over the LoRA adapter: its phase starts at the last adapter, with a learning rate chosen on SmolLM2's
    # held-out tuning blocks (benchmarks/results/causal_lm_twa_tuning*.json; 0.05, the library default, barely
    # moves an adapter in 8 steps). With --lora false pass your own --twa_lr (MiniLM full fine-tuning: 1.0).
    "twa_lr": 4.0,
    "twa_init": "last",
}


@dataclass
class CausalLMArguments(RunFolderArguments):
    """What to fine-tune on what, and whether through a LoRA adapter (the ``TrainingArguments`` say how)."""

    model_name_or_path: str = field(
        default="smollm2", metadata={"help": "'smollm2' (offline SmolLM2-135M-Instruct), a local folder, or a Hub id."}
    )
    dataset_name: str = field(
        default="wikipedia", metadata={"help": "'wikipedia' (offline, whole articles held out) or a Hub dataset id."}
    )
    block_size: int = field(default=128, metadata={"help": "Tokens per packed training/evaluation block."})
    eval_split: str = field(default="validation", metadata={"help": "Split evaluated (held-out articles)."})
    max_train_blocks: int | None = field(default=None, metadata={"help": "Train on at most this many blocks."})
    max_eval_blocks: int | None = field(default=200, metadata={"help": "Evaluate on at most this many blocks."})
    lora: bool = field(default=True, metadata={"help": "Train a LoRA adapter (PEFT) instead of every weight."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scale numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: str = field(
        default="attention",
        metadata={"help": "'attention' (the q/k/v/o projections from the architecture registry) or module names, "
                  "comma-separated."},
    )  # fmt: skip


def parse_causal_lm_args(
    defaults: dict, argv: list[str] | None = None
) -> tuple[CausalLMArguments, EfficientTrainingArguments]:
    """Read the script's and the trainer's flags (``HfArgumentParser``), with a script's own defaults."""
    return parse_arguments((CausalLMArguments, EfficientTrainingArguments), {**CAUSAL_LM_DEFAULTS, **defaults}, argv)


def model_folder(name: str) -> str:
    """``smollm2`` → the converted offline checkpoint; anything else is passed to ``from_pretrained`` as is."""
    return str(smollm2_path()) if name == "smollm2" else name


def attention_targets(model: nn.Module) -> list[str]:
    """Names of the q/k/v/o projection modules of ``model``'s family, from the architecture registry."""
    arch = get_architecture(model)
    return sorted({projection.path.rsplit(".", 1)[-1] for projection in arch.projections().values()})


def add_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.0, targets: str = "attention"):
    """Wrap ``model`` in a PEFT LoRA adapter; only the adapter trains (``peft`` comes with the ``lora`` extra).

    Example::

        model = add_lora(AutoModelForCausalLM.from_pretrained(folder), r=8)   # q/k/v/o of every layer
    """
    peft = require("peft", extra="lora")
    if r < 1:
        raise ArgumentsError(f"--lora_r must be a positive rank, got {r}")
    modules = attention_targets(model) if targets == "attention" else [t.strip() for t in targets.split(",") if t]
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, task_type="CAUSAL_LM")
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:  # PEFT names the modules it could not find
        raise ArgumentsError(f"--lora_target_modules {targets!r}: {' '.join(str(err).split())}") from None


def load_blocks(script: CausalLMArguments, tokenizer, seed: int) -> DatasetDict:
    """Train and evaluation splits as packed blocks, each capped by ``--max_*_blocks``."""
    loaded = load_splits(script.dataset_name, seed=seed, need=("train", "text"))
    if script.eval_split not in loaded:
        raise ArgumentsError(f"--eval_split {script.eval_split!r} is not a split of {script.dataset_name!r}")
    splits = DatasetDict({name: loaded[name] for name in ("train", script.eval_split)})
    blocks = causal_lm_blocks(splits, tokenizer, script.block_size)
    for name, limit in (("train", script.max_train_blocks), (script.eval_split, script.max_eval_blocks)):
        if limit:
            blocks[name] = blocks[name].select(range(min(limit, len(blocks[name]))))
    return blocks


def build_causal_lm_trainer(script: CausalLMArguments, args: EfficientTrainingArguments) -> EfficientTrainer:
    """Tokenizer, packed blocks, the model (LoRA-wrapped unless ``--lora false``) and an ``EfficientTrainer``."""
    set_seed(args.seed)
    folder = model_folder(script.model_name_or_path)
    with preparation_output(args):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        blocks = load_blocks(script, tokenizer, args.seed)
        model = AutoModelForCausalLM.from_pretrained(folder)
    if script.lora:
        model = add_lora(model, script.lora_r, script.lora_alpha, script.lora_dropout, script.lora_target_modules)
    return EfficientTrainer(
        model=model,
        args=args,
        train_dataset=blocks["train"],
        eval_dataset=blocks[script.eval_split],
        processing_class=tokenizer,
        data_collator=default_data_collator,
    )


def perplexity(eval_loss: float) -> float:
    """exp(mean token cross-entropy); ``inf`` past float range rather than an OverflowError."""
    return math.exp(eval_loss) if eval_loss < 700 else math.inf
