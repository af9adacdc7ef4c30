"""Shared tiny setups of the CMD tests: a synthetic trajectory with known modes and a tiny BERT training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.testing import tiny_model
from hf_efftrain.trajectory import save_snapshot

SHAPES = {"w1": (40, 20), "w2": (50,), "w3": (10, 30), "frozen": (7,)}


def synthetic_trajectory(root: Path, steps: int = 30, noise: float = 1e-4, seed: int = 0) -> dict:
    """θ_i(t) = a_i·mode_{m_i}(t) + b_i + noise for 3 known modes; ``frozen`` never moves. Returns the truth."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, steps)
    profiles = np.stack([np.exp(-3 * t), np.sin(4 * t), t**2])
    truth, snaps = {}, [{} for _ in range(steps)]
    for name, shape in SHAPES.items():
        k = int(np.prod(shape))
        labels, a, b = rng.integers(0, 3, k), rng.normal(size=k), rng.normal(size=k)
        if name == "frozen":
            a = np.zeros(k)
        values = a[None] * profiles[labels].T + b[None] + noise * rng.normal(size=(steps, k)) * (a[None] != 0)
        truth[name] = {"labels": labels, "values": values}
        for i in range(steps):
            snaps[i][name] = torch.tensor(values[i].reshape(shape), dtype=torch.float32)
    for i, snap in enumerate(snaps):
        save_snapshot(root, 5 * i, snap)
    return truth


def tiny_dataset(n: int = 64, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 96, (n, 8), generator=gen)
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids[:, 0] > 48).long().tolist()})


def tiny_args(output_dir: Path, **overrides) -> EfficientTrainingArguments:
    settings = {
        "output_dir": str(output_dir),
        "max_steps": 24,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-2,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "use_cpu": True,
        "logging_steps": 1,
        "seed": 0,
        **overrides,
    }
    return EfficientTrainingArguments(**settings)


def tiny_trainer(output_dir: Path, callbacks=None, **overrides) -> EfficientTrainer:
    model = tiny_model("bert", task="classification", seed=0)
    return EfficientTrainer(
        model=model, args=tiny_args(output_dir, **overrides), train_dataset=tiny_dataset(), callbacks=callbacks
    )
