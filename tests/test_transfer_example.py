"""The example runs end to end on tiny settings: train A with snapshots, transfer onto B, report."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transfer.py"


@pytest.mark.slow
def test_example_runs_on_tiny_settings(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("transfer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    summary = module.main(
        [
            "--output_dir",
            str(tmp_path),
            "--max_steps",
            "4",
            "--snapshot_every",
            "2",
            "--hidden_size",
            "16",
            "--transfer_steps",
            "2",
            "--max_train_samples",
            "64",
            "--eval_samples",
            "32",
            "--per_device_train_batch_size",
            "8",
            "--disable_tqdm",
            "true",
            "--use_cpu",
            "true",
        ]
    )
    assert set(summary) == {"target_init", "transferred"}
    assert summary["transferred"]["step"] == 2 and 0.0 <= summary["transferred"]["accuracy"] <= 1.0
    assert (tmp_path / "b-transferred" / "checkpoint-2" / "config.json").is_file()
    assert len(list((tmp_path / "a" / "snapshots").iterdir())) == 3  # steps 0, 2, 4
