"""Shared fixtures: tiny training data, the ``hf-efftrain`` command in-process, a quiet, offline environment."""

from __future__ import annotations

import os
from collections.abc import Callable

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


@pytest.fixture
def run_cli(capsys) -> Callable[[list[str]], tuple[int, str, str]]:
    """Run ``hf-efftrain ARGS`` in-process; returns its exit code, stdout and stderr."""
    from hf_efftrain.cli import main

    def run(args: list[str]) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as done:
            main(args)
        captured = capsys.readouterr()
        return done.value.code, captured.out, captured.err

    return run
