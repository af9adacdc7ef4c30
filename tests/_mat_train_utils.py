"""Shared tiny training setup of the MAT integration tests (also run by the torchrun worker)."""

from __future__ import annotations

import torch
from datasets import Dataset

from hf_efftrain import EfficientTrainingArguments
from hf_efftrain.testing import tiny_model

MAT_ARGS = {"mat": True, "mat_every": 2, "mat_warmup_steps": 4, "mat_probe_size": 4}


def tiny_classification_data(rows: int = 64, seq: int = 10) -> Dataset:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 96, (rows, seq), generator=gen)
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids[:, 0] % 2).tolist()})


def tiny_args(output_dir: str, **overrides) -> EfficientTrainingArguments:
    base = {
        "max_steps": 12,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        "weight_decay": 0.1,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "use_cpu": True,
        "seed": 0,
        **MAT_ARGS,
    }
    return EfficientTrainingArguments(output_dir, **{**base, **overrides})


def tiny_bert():
    return tiny_model("bert", task="classification").train()
