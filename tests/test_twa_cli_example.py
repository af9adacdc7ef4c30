"""The ``hf-efftrain twa memory`` command, and TWA through the fine-tuning example on the real MiniLM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hf_efftrain.cli import app, main
from hf_efftrain.trajectory import save_snapshot

ROOT = Path(__file__).resolve().parents[1]


def test_memory_command_reports_the_share_of_each_process(tmp_path):
    for step in (10, 20, 30):
        save_snapshot(tmp_path, step, {"w": torch.zeros(1024, 256), "b": torch.zeros(256)})
    result = CliRunner().invoke(app, ["twa", "memory", str(tmp_path), "--world-size", "2"])
    assert result.exit_code == 0, result.output
    assert "checkpoints: 3  parameters per checkpoint: 262,400" in result.output
    assert f"basis per process: {2 * 262_400 * 4 / 2**20:,.1f} MiB (2 rows" in result.output


def test_memory_command_on_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["twa", "memory", str(tmp_path / "nope")])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("hf-efftrain: error:") and len(error.splitlines()) == 1


@pytest.mark.slow
def test_twa_example_runs_on_real_minilm(tmp_path):
    command = [sys.executable, "examples/finetune.py", "--twa", "true", "--output_dir", str(tmp_path)]
    command += ["--disable_tqdm", "true", "--max_length", "32"]
    command += ["--max_steps", "6", "--twa_start", "3", "--twa_every", "1", "--twa_steps", "2"]
    command += ["--max_eval_samples", "32", "--per_device_train_batch_size", "8", "--logging_steps", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"eval_accuracy"' in done.stdout and '"twa_checkpoints": 3' in done.stdout
    assert (tmp_path / "model.safetensors").is_file()
