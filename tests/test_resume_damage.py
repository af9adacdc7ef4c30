"""Resuming from a damaged or foreign checkpoint is one clear error, for the Trainer's files and every method's state.

Silently resuming without a method's state would continue a different run; a raw ``JSONDecodeError`` or
``SafetensorError`` would not tell the user which file to fix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cmd_tiny import tiny_trainer

from hf_efftrain.errors import CheckpointError, CMDFitError, MATConfigError, TWAError
from hf_efftrain.run_folder import check_resume_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> Path:
    """A run of no method with checkpoint-4 and checkpoint-8 (no method state in them)."""
    out = tmp_path_factory.mktemp("plain")
    tiny_trainer(out, max_steps=8, save_strategy="steps", save_steps=4).train()
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    return folder


METHODS = {
    "mat": ({"mat": True, "mat_every": 2}, MATConfigError, "holds no MAT state"),
    "twa": ({"twa": True, "twa_start": 0.5, "twa_steps": 2, "twa_every": 1}, TWAError, "twa_state-rank0.pt is missing"),
    "cmd": ({"cmd_online": True, "cmd_every": 1, "cmd_warmup": 3, "cmd_modes": 2}, CMDFitError, "has no CMD state"),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_resuming_a_method_from_a_checkpoint_without_its_state_is_refused(plain_run, tmp_path, method):
    run = _copy(plain_run, tmp_path)
    settings, error, words = METHODS[method]
    trainer = tiny_trainer(run, max_steps=8, save_strategy="steps", save_steps=4, **settings)
    with pytest.raises(error, match=words):
        trainer.train(resume_from_checkpoint=str(run / "checkpoint-4"))


def test_damaged_method_state_files_are_refused(plain_run, tmp_path):
    run = _copy(plain_run, tmp_path)
    checkpoint = run / "checkpoint-4"
    (checkpoint / "twa_state-rank0.pt").write_bytes(b"PK\x03\x04 truncated")
    trainer = tiny_trainer(run, max_steps=8, twa=True, twa_start=0.5, twa_steps=2, twa_every=1)
    with pytest.raises(TWAError, match="twa_state-rank0.pt is unreadable"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    (checkpoint / "cmd_state.json").write_text('{"snapshots": 3, "hist')
    torch.save({}, checkpoint / "cmd_state.safetensors")
    trainer = tiny_trainer(run, max_steps=8, cmd_online=True, cmd_every=1, cmd_warmup=3, cmd_modes=2)
    with pytest.raises(CMDFitError, match="unreadable CMD state"):
        trainer.train(resume_from_checkpoint=str(checkpoint))


def test_cmd_state_from_two_different_saves_is_refused(tmp_path):
    run = tmp_path / "cmd"
    settings = {"cmd_online": True, "cmd_every": 1, "cmd_warmup": 3, "cmd_modes": 2, "cmd_candidates": 50}
    tiny_trainer(run, max_steps=8, save_strategy="steps", save_steps=4, **settings).train()
    shutil.copy(run / "checkpoint-8" / "cmd_state.json", run / "checkpoint-4" / "cmd_state.json")  # a torn save
    trainer = tiny_trainer(run, max_steps=8, **settings)
    with pytest.raises(CMDFitError, match="come from different saves"):
        trainer.train(resume_from_checkpoint=str(run / "checkpoint-4"))


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda c: (c / "trainer_state.json").write_text('{"global_step": 4, "log_hi'), "truncated or not JSON"),
        (lambda c: (c / "trainer_state.json").unlink(), "has no trainer_state.json"),
        (lambda c: (c / "trainer_state.json").write_text("[1, 2]"), "holds no global_step"),
        (lambda c: (c / "model.safetensors").unlink(), "holds no model weights"),
        (lambda c: _truncate(c / "model.safetensors"), "model.safetensors is damaged"),
        (lambda c: shutil.rmtree(c), "is not a folder"),
    ],
    ids=["truncated-state", "no-state", "state-not-a-dict", "no-weights", "truncated-weights", "missing-folder"],
)
def test_damaged_trainer_checkpoints_are_named(plain_run, tmp_path, damage, words):
    checkpoint = _copy(plain_run, tmp_path) / "checkpoint-4"
    damage(checkpoint)
    with pytest.raises(CheckpointError, match=words):
        check_resume_checkpoint(checkpoint)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_the_example_names_a_damaged_checkpoint_before_loading_anything(plain_run, tmp_path):
    run = _copy(plain_run, tmp_path)
    from hf_efftrain.run_folder import start_run_folder

    start_run_folder(run, "finetune.py", remove_earlier=False)
    (run / "checkpoint-8" / "trainer_state.json").write_text("{")
    argv = [str(REPO / "examples" / "finetune.py"), "--output_dir", str(run), "--resume_from_checkpoint", "true"]
    done = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("finetune.py: error: ") and "checkpoint-8/trainer_state.json is truncated" in line
