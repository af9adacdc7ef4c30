"""Ready-made task plumbing shared by the examples, benchmarks and tests: tokenize, collate, score.

Example::

    splits = tokenize_classification(load_rotten_tomatoes(), tokenizer, max_length=64)
    trainer = EfficientTrainer(..., compute_metrics=accuracy_metric)
"""

from __future__ import annotations

import numpy as np
from datasets import DatasetDict, load_dataset
from transformers import EvalPrediction, PreTrainedTokenizerBase

from hf_efftrain.data import load_rotten_tomatoes, load_wikipedia

OFFLINE_DATASETS = {"rotten_tomatoes": load_rotten_tomatoes, "wikipedia": load_wikipedia}


def load_splits(name: str, seed: int = 0) -> DatasetDict:
    """The offline copy for ``rotten_tomatoes``/``wikipedia``; any other name goes to ``datasets.load_dataset``."""
    if name in OFFLINE_DATASETS:
        return OFFLINE_DATASETS[name](seed=seed)
    return load_dataset(name)


def tokenize_classification(
    splits: DatasetDict, tokenizer: PreTrainedTokenizerBase, max_length: int = 64, text_column: str = "text"
) -> DatasetDict:
    """Tokenize a text column (truncated to ``max_length``); padding is left to the collator, per batch."""

    def encode(batch):
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    removable = [c for c in splits["train"].column_names if c not in ("label", "labels")]
    return splits.map(encode, batched=True, remove_columns=removable)


def tokenize_lm_blocks(splits: DatasetDict, tokenizer: PreTrainedTokenizerBase, block_size: int = 128) -> DatasetDict:
    """Concatenate each split's texts and cut them into ``block_size`` token blocks (for MLM or causal LM)."""

    def encode(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        flat = [token for doc in ids for token in doc]
        usable = len(flat) // block_size * block_size
        return {"input_ids": [flat[i : i + block_size] for i in range(0, usable, block_size)]}

    return splits.map(encode, batched=True, batch_size=1000, remove_columns=splits["train"].column_names)


def accuracy_metric(prediction: EvalPrediction) -> dict[str, float]:
    """Accuracy of argmax logits (computed locally: ``evaluate.load`` would download its script)."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}
