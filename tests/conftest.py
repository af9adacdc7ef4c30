"""Shared fixtures: tiny training data and a quiet, offline environment."""

from __future__ import annotations

import os

import pytest
import torch
from datasets import Dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_classification_data() -> Dataset:
    """64 random token sequences with a learnable label (first token parity)."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 96, (64, 8), generator=gen)
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids[:, 0] % 2).tolist()})


@pytest.fixture
def one_thread():
    """Tiny tensors: extra threads only add contention on a shared CPU (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
