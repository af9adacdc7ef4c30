"""Masked-LM data for comparing candidates fairly: seeded training masks, one fixed mask for evaluation.

Comparing growth candidates by held-out loss only makes sense if every candidate is scored on the *same*
masked tokens, and trained on the same masks in the same order. :class:`MlmCollator` masks training batches
with its own seeded generator (not the global RNG that dropout also draws from) and passes pre-masked
examples (with ``labels``) through untouched; :func:`fixed_mlm_eval` masks an evaluation set once. Example::

    collator = MlmCollator(tokenizer, seed=0)
    eval_set = fixed_mlm_eval(blocks["validation"], tokenizer, seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase


@dataclass
class MlmCollator(DataCollatorForLanguageModeling):
    """Seeded MLM masking for training; examples that already carry ``labels`` are only stacked."""

    def __call__(self, features, return_tensors=None):
        if features and "labels" in features[0]:
            return {
                "input_ids": torch.tensor([f["input_ids"] for f in features]),
                "labels": torch.tensor([f["labels"] for f in features]),
            }
        return super().__call__(features, return_tensors)


def fixed_mlm_eval(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, seed: int = 0, mlm_probability: float = 0.15
) -> Dataset:
    """``dataset`` (equal-length ``input_ids`` blocks) with one fixed random mask: ``input_ids`` + ``labels``."""
    collator = MlmCollator(tokenizer, mlm_probability=mlm_probability, seed=seed)
    batch = collator([{"input_ids": ids} for ids in dataset["input_ids"]])
    return Dataset.from_dict({"input_ids": batch["input_ids"].tolist(), "labels": batch["labels"].tolist()})
