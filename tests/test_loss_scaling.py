"""With ``fix_loss_scaling=True``, EfficientTrainer corrects transformers 5's loss scaling for plain-mean losses.

Gradient accumulation over 2×4 examples must give the update of one batch of 8: same logged loss, same
gradient norm. transformers' own Trainer (and EfficientTrainer without the flag) skips the division by
accumulation steps for such models.
"""

from __future__ import annotations

import pytest
from transformers import TrainerCallback

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.testing import tiny_model
from hf_efftrain.trainer import loss_counts_tokens


class FirstLog(TrainerCallback):
    def __init__(self) -> None:
        self.logs: dict = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and not self.logs:
            self.logs = dict(logs)


def _first_step(data, out, batch: int, accumulation: int, fix: bool = True) -> dict:
    args = EfficientTrainingArguments(
        output_dir=str(out), max_steps=1, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        learning_rate=1e-3, logging_steps=1, seed=7, report_to="none", save_strategy="no", disable_tqdm=True,
        use_cpu=True, max_grad_norm=1e9, fix_loss_scaling=fix,
    )  # fmt: skip
    recorder = FirstLog()
    model = tiny_model("bert", task="classification", seed=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    EfficientTrainer(model=model, args=args, train_dataset=data, callbacks=[recorder]).train()
    return recorder.logs


def test_accumulation_equals_one_big_batch(tmp_path, tiny_classification_data):
    big = _first_step(tiny_classification_data, tmp_path / "big", batch=8, accumulation=1)
    accumulated = _first_step(tiny_classification_data, tmp_path / "acc", batch=4, accumulation=2)
    assert accumulated["loss"] == pytest.approx(big["loss"], rel=1e-4)
    assert accumulated["grad_norm"] == pytest.approx(big["grad_norm"], rel=1e-4)


def test_without_the_flag_the_trainer_scaling_is_kept(tmp_path, tiny_classification_data):
    big = _first_step(tiny_classification_data, tmp_path / "big", batch=8, accumulation=1, fix=False)
    accumulated = _first_step(tiny_classification_data, tmp_path / "acc", batch=4, accumulation=2, fix=False)
    assert accumulated["loss"] == pytest.approx(2 * big["loss"], rel=1e-4)  # transformers' own (documented) scaling


@pytest.mark.parametrize(
    ("family", "task", "counts"),
    [("bert", "classification", False), ("gpt2", "classification", False), ("bert", "masked-lm", False),
     ("gpt2", "causal-lm", True), ("llama", "causal-lm", True)],
)  # fmt: skip
def test_which_losses_divide_by_the_token_count(family, task, counts):
    assert loss_counts_tokens(tiny_model(family, task=task)) is counts
