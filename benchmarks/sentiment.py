"""The shared benchmark task: real MiniLM-L6 fine-tuned on real Rotten Tomatoes, offline.

Every method benchmark that fine-tunes uses this one setup so baselines agree across benchmarks.
Example::

    task = SentimentTask.load(max_length=64)
    model = task.model(seed=0)
    accuracy = task.accuracy(model, split="test")
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from datasets import DatasetDict
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    set_seed,
)

from hf_efftrain.data import load_rotten_tomatoes, minilm_path
from hf_efftrain.tasks import tokenize_classification

# The recipe measured in shared/data/README.md: batch 32, max_len 64, AdamW lr 5e-5, linear decay.
RECIPE = {
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 256,
    "learning_rate": 5e-5,
    "lr_scheduler_type": "linear",
    "weight_decay": 0.0,
    "report_to": "none",
    "save_strategy": "no",
    "disable_tqdm": True,
    "dataloader_num_workers": 0,
}


@dataclass
class SentimentTask:
    tokenizer: PreTrainedTokenizerBase
    splits: DatasetDict
    max_length: int

    @classmethod
    def load(cls, max_length: int = 64, data_seed: int = 0) -> SentimentTask:
        """Tokenized splits (train ≈ 9,750, validation 1,000, test 2,000) with a fixed split seed."""
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        splits = tokenize_classification(load_rotten_tomatoes(seed=data_seed), tokenizer, max_length)
        return cls(tokenizer, splits, max_length)

    @property
    def collator(self) -> DataCollatorWithPadding:
        return DataCollatorWithPadding(self.tokenizer)

    def first_batch(self, size: int) -> dict[str, torch.Tensor]:
        """The first ``size`` training rows, collated: the fixed batch FLOP counts and step timings are taken on."""
        rows = self.splits["train"]
        return self.collator([rows[i] for i in range(size)])

    def model(self, seed: int) -> PreTrainedModel:
        """MiniLM with a fresh 2-class head whose initialization depends only on ``seed``."""
        set_seed(seed)
        return AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)

    @torch.no_grad()
    def accuracy(self, model: PreTrainedModel, split: str = "test", batch_size: int = 256) -> float:
        """Accuracy on a split, computed in a plain loop (no Trainer state involved).

        Reviews are scored in order of length, so each padded batch wastes little compute on padding
        (accuracy does not depend on the order; on 2 CPU cores this halves the cost of a 2,000-review pass)."""
        model.eval()
        data = self.splits[split]
        order = np.argsort([len(ids) for ids in data["input_ids"]], kind="stable")
        device = next(model.parameters()).device
        correct = 0
        for start in range(0, len(data), batch_size):
            rows = data.select(order[start : start + batch_size])[:]
            labels = np.asarray(rows.pop("label"))
            batch = self.collator([dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)])
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            correct += int((logits.argmax(-1).cpu().numpy() == labels).sum())
        return correct / len(data)
