"""EfficientTrainer with no method enabled must be transformers.Trainer, bit for bit."""

from __future__ import annotations

import pytest
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.testing import tiny_model
from hf_efftrain.trajectory import SnapshotCallback


class LossRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def _train(trainer_cls, args_cls, data, out, accumulation: int = 1) -> tuple[list[float], dict]:
    args = args_cls(
        output_dir=str(out),
        max_steps=6,
        per_device_train_batch_size=8 // accumulation,
        gradient_accumulation_steps=accumulation,
        learning_rate=1e-3,
        logging_steps=1,
        seed=7,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    model = tiny_model("bert", task="classification", seed=3)
    recorder = LossRecorder()
    trainer_cls(model=model, args=args, train_dataset=data, callbacks=[recorder]).train()
    return recorder.losses, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("accumulation", [1, 2])
def test_no_method_trains_exactly_like_trainer(tmp_path, tiny_classification_data, accumulation):
    data = tiny_classification_data
    plain_losses, plain_state = _train(Trainer, TrainingArguments, data, tmp_path / "a", accumulation)
    ours_losses, ours_state = _train(EfficientTrainer, EfficientTrainingArguments, data, tmp_path / "b", accumulation)
    assert len(plain_losses) == 6
    assert ours_losses == plain_losses  # exact float equality, not approx
    for name, tensor in plain_state.items():
        assert ours_state[name].equal(tensor), name


def test_arguments_parse_from_command_line():
    (args,) = HfArgumentParser(EfficientTrainingArguments).parse_args_into_dataclasses(
        args=["--output_dir", "x", "--snapshot_every", "5", "--max_steps", "3"]
    )
    assert args.snapshot_every == 5 and args.max_steps == 3
    assert str(args.resolved_snapshot_dir).endswith("x/snapshots")


def test_negative_snapshot_interval_is_rejected():
    with pytest.raises(ValueError, match="snapshot_every"):
        EfficientTrainingArguments(output_dir="x", snapshot_every=-1)


def test_snapshot_argument_adds_callback(tmp_path):
    args = EfficientTrainingArguments(output_dir=str(tmp_path), snapshot_every=2, report_to="none")
    trainer = EfficientTrainer(model=tiny_model("bert", task="classification"), args=args)
    assert any(isinstance(cb, SnapshotCallback) for cb in trainer.callback_handler.callbacks)
    plain = EfficientTrainer(
        model=tiny_model("bert", task="classification"),
        args=EfficientTrainingArguments(output_dir=str(tmp_path), report_to="none"),
    )
    assert not any(isinstance(cb, SnapshotCallback) for cb in plain.callback_handler.callbacks)
