"""Transfer a fine-tuning trajectory onto a new initialization, then keep training from there.

1. fine-tune model A (EfficientTrainer, ``--snapshot_every`` keeps θ_0…θ_T under ``<output_dir>/a/snapshots``);
2. transfer A's trajectory onto model B's initialization with FGMT (no training of B);
3. report the accuracy of B's init, the naive θ'_0 + (θ_T − θ_0) and the transferred point.

Defaults run offline on a small BERT-style model with the MiniLM tokenizer and Rotten Tomatoes::

    python examples/transfer.py --max_steps 200 --snapshot_every 50
    accelerate launch examples/transfer.py --max_steps 200
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    HfArgumentParser,
)

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.data import minilm_path
from hf_efftrain.tasks import load_splits, tokenize_classification
from hf_efftrain.transfer import TransferConfig
from hf_efftrain.transfer.tool import run_transfer

DEFAULTS = {
    "output_dir": "outputs/transfer",
    "max_steps": 200,
    "snapshot_every": 50,
    "per_device_train_batch_size": 32,
    "learning_rate": 1e-3,
    "warmup_steps": 20,
    "save_strategy": "no",
    "report_to": "none",
    "logging_steps": 50,
    "seed": 0,
}


@dataclass
class ScriptArguments:
    hidden_size: int = field(default=64, metadata={"help": "Hidden size of the small BERT-style models."})
    layers: int = field(default=2, metadata={"help": "Transformer layers."})
    target_seed: int = field(default=1, metadata={"help": "Seed of the target initialization B."})
    transfer_steps: int = field(default=10, metadata={"help": "Transferred points T (cosine spacing)."})
    transfer_method: str = field(default="fgmt", metadata={"help": "fgmt, gmt or naive."})
    max_length: int = field(default=64, metadata={"help": "Truncate reviews to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on at most this many reviews."})
    eval_samples: int = field(default=500, metadata={"help": "Validation reviews scored along the transfer."})


def small_bert(tokenizer, script: ScriptArguments, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=script.hidden_size,
        num_hidden_layers=script.layers,
        num_attention_heads=4,
        intermediate_size=4 * script.hidden_size,
        max_position_embeddings=max(64, script.max_length),
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ScriptArguments, EfficientTrainingArguments))
    parser.set_defaults(**DEFAULTS)
    script, args = parser.parse_args_into_dataclasses(args=argv)
    root = Path(args.output_dir)
    args.output_dir = str(root / "a")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    splits = load_splits("rotten_tomatoes", seed=0)
    if script.max_train_samples:
        splits["train"] = splits["train"].select(range(min(script.max_train_samples, len(splits["train"]))))
    train = tokenize_classification(splits, tokenizer, script.max_length)["train"]
    trainer = EfficientTrainer(
        model=small_bert(tokenizer, script, args.seed),
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    if not trainer.is_world_process_zero():
        return {}
    target = small_bert(tokenizer, script, script.target_seed)
    target.save_pretrained(root / "b-init")
    tokenizer.save_pretrained(root / "b-init")
    config = TransferConfig(method=script.transfer_method, steps=script.transfer_steps, seed=args.seed)
    report = run_transfer(
        args.resolved_snapshot_dir,
        root / "b-init",
        root / "b-transferred",
        config,
        max_length=script.max_length,
        eval_samples=script.eval_samples,
    )
    summary = {"target_init": report["points"][0], "transferred": report["points"][-1]}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
