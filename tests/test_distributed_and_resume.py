"""EfficientTrainer + snapshots under torchrun (gloo, 2 processes) and across a kill-and-resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_efftrain.trajectory import Trajectory

SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"
ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], launcher: list[str] | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*(launcher or [sys.executable]), str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_write_one_snapshot_sequence_and_train_like_trainer(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ours, plain = tmp_path / "ours", tmp_path / "plain"
    _run([str(ours), "--max_steps", "4", "--accumulation", "2"], launcher=torchrun)
    _run([str(plain), "--max_steps", "4", "--accumulation", "2", "--plain"], launcher=torchrun)
    result = json.loads((ours / "losses.json").read_text())
    assert result["world_size"] == 2
    assert Trajectory(ours / "snapshots").steps == [0, 2, 4]
    assert not list((ours / "snapshots").glob(".*"))  # no temp leftovers from a second writer
    # no method switched on: transformers.Trainer bit for bit, with 2 processes and gradient accumulation
    assert result["losses"] == json.loads((plain / "losses.json").read_text())["losses"]
    weights, reference = (torch.load(folder / "weights.pt", weights_only=True) for folder in (ours, plain))
    assert weights.keys() == reference.keys()
    assert all(weights[name].equal(reference[name]) for name in reference)


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    _run([str(tmp_path / "whole")])
    _run([str(tmp_path / "split"), "--stop_after", "3"])
    _run([str(tmp_path / "split"), "--resume"])
    whole = json.loads((tmp_path / "whole" / "losses.json").read_text())["losses"]
    resumed = json.loads((tmp_path / "split" / "losses.json").read_text())["losses"]
    assert set(resumed) == {"4", "5", "6"}
    assert all(resumed[step] == whole[step] for step in resumed)  # exact
    a, b = Trajectory(tmp_path / "whole" / "snapshots"), Trajectory(tmp_path / "split" / "snapshots")
    assert a.steps == [0, 2, 4, 6]
    assert b.steps == [0, 2, 3, 4, 6]  # the stopped run also saved its final weights (step 3)
    keep = [b.steps.index(step) for step in a.steps]
    for name in a.names:
        assert a.tensor(name).equal(b.tensor(name)[keep]), name
