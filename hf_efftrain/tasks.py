"""Ready-made task plumbing shared by the examples, benchmarks and tests: tokenize, collate, score.

Example::

    splits = tokenize_classification(load_rotten_tomatoes(), tokenizer, max_length=64)
    trainer = EfficientTrainer(..., compute_metrics=accuracy_metric)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from datasets import DatasetDict, load_dataset
from datasets.exceptions import DatasetGenerationError
from transformers import EvalPrediction, PreTrainedTokenizerBase

from hf_efftrain.data import load_rotten_tomatoes, load_wikipedia
from hf_efftrain.errors import ArgumentsError

OFFLINE_DATASETS = {"rotten_tomatoes": load_rotten_tomatoes, "wikipedia": load_wikipedia}
OFFLINE = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")  # set: no Hub download may be attempted


def load_splits(name: str, seed: int = 0, need: tuple[str, str] | None = None) -> DatasetDict:
    """The offline copy for ``rotten_tomatoes``/``wikipedia``; any other name goes to ``datasets.load_dataset``.

    A local folder must hold data files; a Hub name needs the network, so with ``HF_DATASETS_OFFLINE`` or
    ``HF_HUB_OFFLINE`` set it is refused at once instead of failing deep inside ``datasets``. ``need``
    (split, column) is checked too. Every failure is one :class:`ArgumentsError` naming ``--dataset``.
    """
    if name in OFFLINE_DATASETS:
        return OFFLINE_DATASETS[name](seed=seed)
    offline = ", ".join(OFFLINE_DATASETS)
    if Path(name).is_dir() and not any(p.is_file() for p in Path(name).rglob("*")):
        raise ArgumentsError(f"--dataset {name} is an empty folder; put train/validation data files in it")
    if not Path(name).exists() and any(os.environ.get(v, "0").upper() in ("1", "ON", "YES", "TRUE") for v in OFFLINE):
        raise ArgumentsError(
            f"--dataset {name!r} is not an offline dataset ({offline}) or a local folder, and a Hub dataset "
            f"cannot be downloaded while {' or '.join(OFFLINE)} is set"
        )
    try:
        splits = load_dataset(name)
    except (DatasetGenerationError, OSError, ValueError) as err:  # not found, no access, unreadable files
        reason = " ".join(str(err).split())
        raise ArgumentsError(f"--dataset {name!r} cannot be loaded ({reason}); offline datasets: {offline}") from None
    if need and (need[0] not in splits or need[1] not in splits[need[0]].column_names):
        raise ArgumentsError(f"--dataset {name!r} has no {need[0]!r} split with a {need[1]!r} column")
    return splits


def tokenize_classification(
    splits: DatasetDict, tokenizer: PreTrainedTokenizerBase, max_length: int = 64, text_column: str = "text"
) -> DatasetDict:
    """Tokenize a text column (truncated to ``max_length``); padding is left to the collator, per batch."""

    def encode(batch):
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    removable = [c for c in splits["train"].column_names if c not in ("label", "labels")]
    return splits.map(encode, batched=True, remove_columns=removable)


def tokenize_lm_blocks(
    splits: DatasetDict, tokenizer: PreTrainedTokenizerBase, block_size: int = 128, separator: int | None = None
) -> DatasetDict:
    """Concatenate each split's texts and cut them into ``block_size`` token blocks (for MLM or causal LM).

    ``separator`` (a token id) is put after every text, so a block that spans two texts shows where one ends.
    The tail shorter than a block is dropped; blocks never mix splits.
    """

    def encode(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]  # cut into blocks next
        tail = [] if separator is None else [separator]
        flat = [token for doc in ids for token in (*doc, *tail)]
        usable = len(flat) // block_size * block_size
        return {"input_ids": [flat[i : i + block_size] for i in range(0, usable, block_size)]}

    return splits.map(encode, batched=True, batch_size=1000, remove_columns=splits["train"].column_names)


def causal_lm_blocks(splits: DatasetDict, tokenizer: PreTrainedTokenizerBase, block_size: int = 128) -> DatasetDict:
    """Packed causal-LM blocks: texts joined by the EOS token, ``labels`` = ``input_ids`` (the model shifts them).

    Every block is full, so ``default_data_collator`` batches them without padding and every token counts in
    the loss. With :func:`hf_efftrain.data.load_wikipedia` the validation blocks come from held-out articles only.
    Example::

        blocks = causal_lm_blocks(load_wikipedia(seed=0), AutoTokenizer.from_pretrained(smollm2_path()), 128)
    """
    if block_size < 2:
        raise ArgumentsError(
            f"--block_size must be at least 2 tokens (a causal LM predicts the next one), got {block_size}"
        )
    packed = tokenize_lm_blocks(splits, tokenizer, block_size, separator=tokenizer.eos_token_id)
    return packed.map(lambda batch: {"labels": batch["input_ids"]}, batched=True)


def accuracy_metric(prediction: EvalPrediction) -> dict[str, float]:
    """Accuracy of argmax logits (computed locally: ``evaluate.load`` would download its script)."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}
