"""Shared pieces of the TWA tests: a tiny learnable classification task and a Trainer factory."""

from __future__ import annotations

import torch
from datasets import Dataset

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.testing import VOCAB, tiny_model


def toy_dataset(n: int = 64, seq: int = 8, seed: int = 0) -> Dataset:
    """Token sequences labelled by whether their first token is in the upper half of the vocabulary."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, seq), generator=gen)
    labels = (ids[:, 0] >= VOCAB // 2).long()
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})


def toy_trainer(output_dir: str, seed: int = 0, model=None, eval_dataset=None, **overrides) -> EfficientTrainer:
    """EfficientTrainer on the toy task with a tiny BERT classifier; ``overrides`` go to the arguments."""
    settings = {
        "output_dir": output_dir,
        "max_steps": 12,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": seed,
        "use_cpu": True,
        "dataloader_num_workers": 0,
        **overrides,
    }
    args = EfficientTrainingArguments(**settings)
    model = model if model is not None else tiny_model("bert", task="classification", seed=seed).train()
    return EfficientTrainer(model=model, args=args, train_dataset=toy_dataset(), eval_dataset=eval_dataset)


def losses(trainer: EfficientTrainer) -> dict[int, float]:
    """Training loss logged at each step."""
    return {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}
