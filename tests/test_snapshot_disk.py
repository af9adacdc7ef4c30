"""Snapshots on disk: in a chosen precision, announced with their size before the first write."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainingArguments
from transformers.utils import logging as transformers_logging

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.errors import ArgumentsError
from hf_efftrain.testing import tiny_model
from hf_efftrain.trajectory import SnapshotCallback, Trajectory, snapshot_dtype, trainable_state


def test_snapshot_dtype_names(tmp_path):
    assert snapshot_dtype("auto") is None and snapshot_dtype("bfloat16") is torch.bfloat16
    assert snapshot_dtype("auto", TrainingArguments(str(tmp_path), bf16=True, use_cpu=True)) is torch.bfloat16
    with pytest.raises(ArgumentsError, match="--snapshot_dtype"):
        EfficientTrainingArguments(str(tmp_path), snapshot_every=1, snapshot_dtype="int4")


def test_trainable_state_casts_floats_only():
    model = tiny_model("bert")
    model.register_parameter("steps", torch.nn.Parameter(torch.zeros(2, dtype=torch.int64), requires_grad=False))
    state = trainable_state(model, torch.bfloat16)
    assert {t.dtype for t in state.values()} == {torch.bfloat16}
    assert state["embeddings.word_embeddings.weight"].equal(
        model.embeddings.word_embeddings.weight.detach().to(torch.bfloat16)
    )


def test_bfloat16_snapshots_half_the_disk_and_announced(tmp_path, tiny_classification_data, capsys):
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_info()
    try:
        args = EfficientTrainingArguments(
            str(tmp_path / "run"), max_steps=4, snapshot_every=2, snapshot_dtype="bfloat16",
            per_device_train_batch_size=8, report_to="none", disable_tqdm=True, save_strategy="no",
        )  # fmt: skip
        trainer = EfficientTrainer(
            model=tiny_model("bert", task="classification"), args=args, train_dataset=tiny_classification_data
        )
        callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, SnapshotCallback))
        count, planned = callback.planned_bytes(trainer.model, 0, 4)
        trainer.train()
    finally:
        transformers_logging.set_verbosity(verbosity)
    traj = Trajectory(tmp_path / "run" / "snapshots")
    assert traj.steps == [0, 2, 4] and count == 3
    assert set(traj.dtypes.values()) == {"BF16"}
    stored = sum(c.files[0].stat().st_size for c in traj.checkpoints)
    assert planned <= stored < planned + 8192 * count  # the estimate is the tensor bytes; headers add a little
    assert f"snapshots: 3 of {planned / 3 / 2**20:.1f} MiB each" in capsys.readouterr().err
