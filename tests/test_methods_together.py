"""MAT and TWA in one run: MAT skips head gradients while TWA collects, then hands every head to TWA's phase.

TWA's projected gradient needs the whole gradient, so when its phase begins MAT releases its gates and stops
measuring. Resuming across that moment continues exactly.
"""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_efftrain import EfficientTrainer
from hf_efftrain.mat.callback import MATCallback
from hf_efftrain.twa.callback import TWACallback
from tests._mat_train_utils import tiny_args, tiny_bert, tiny_classification_data

TOGETHER = {
    "max_steps": 16, "mat_warmup_steps": 2, "mat_every": 2, "mat_threshold": 1.0,
    "twa": True, "twa_start": 0.5, "twa_every": 2, "twa_steps": 4,
}  # fmt: skip
ATTENTION = ("query.weight", "key.weight", "value.weight")
SHARED_ARGUMENTS = ("max_steps", "per_device_train_batch_size", "learning_rate", "weight_decay", "logging_steps",
                    "report_to", "save_strategy", "disable_tqdm", "use_cpu", "seed")  # fmt: skip


class SilentRows(TrainerCallback):
    """Per optimizer step: how many attention-weight rows got no gradient (MAT's skipped head work)."""

    def __init__(self, model) -> None:
        self.step, self.silent = 0, {}
        for name, param in model.named_parameters():
            if name.endswith(ATTENTION):
                param.register_hook(lambda grad, rows=param.shape[0]: self._count(grad, rows))

    def on_step_begin(self, args, state, control, **kwargs):
        self.step = state.global_step + 1
        self.silent.setdefault(self.step, 0)

    def _count(self, grad: torch.Tensor | None, rows: int) -> None:
        self.silent[self.step] += rows if grad is None else int((grad.abs().sum(dim=1) == 0).sum())


def _method(trainer, kind):
    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, kind))


def test_mat_gates_while_collecting_and_releases_for_the_twa_phase(tmp_path):
    model = tiny_bert()
    rows = SilentRows(model)
    args = tiny_args(str(tmp_path), **TOGETHER)
    trainer = EfficientTrainer(model=model, args=args, train_dataset=tiny_classification_data(), callbacks=[rows])
    trainer.train()
    mat, twa = _method(trainer, MATCallback), _method(trainer, TWACallback)
    start = twa.start_step
    assert twa.phase == "done" and trainer.state.global_step == start + TOGETHER["twa_steps"]
    assert mat.released
    assert max(entry["step"] for entry in mat.engine.history) <= start  # no measurement in the TWA phase
    assert any(not all(entry["active"]) for entry in mat.engine.history)  # MAT really gated heads
    assert any(rows.silent[s] > 0 for s in range(3, start + 1))  # ... and skipped their gradient work
    assert all(rows.silent[s] == 0 for s in range(start + 1, trainer.state.global_step + 1))  # TWA: whole grads
    assert all(entry for entry in mat.engine.active.tolist())


def test_resume_inside_the_twa_phase_continues_exactly(tmp_path):
    data = tiny_classification_data()
    straight = tiny_bert()
    EfficientTrainer(model=straight, args=tiny_args(str(tmp_path / "a"), **TOGETHER), train_dataset=data).train()

    save = {"save_strategy": "steps", "save_steps": 10}
    first = tiny_bert()
    stopped = tiny_args(str(tmp_path / "b"), **TOGETHER, **save)
    trainer = EfficientTrainer(model=first, args=stopped, train_dataset=data, callbacks=[_StopAt(10)])
    trainer.train()
    resumed_model = tiny_bert()
    resumed = EfficientTrainer(model=resumed_model, args=tiny_args(str(tmp_path / "b"), **TOGETHER, **save),
                               train_dataset=data)  # fmt: skip
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-10"))
    assert _method(resumed, MATCallback).released
    for (name, a), b in zip(straight.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("twa_first", [False, True])
def test_plain_callbacks_in_stock_trainer_link_like_efficient_trainer(tmp_path, twa_first):
    """No EfficientTrainer: TWA's phase finds MAT through the model, in either callback order."""
    reference = tiny_args(str(tmp_path / "ours"), **TOGETHER)
    data = tiny_classification_data()
    ours_model = tiny_bert()
    EfficientTrainer(model=ours_model, args=reference, train_dataset=data).train()

    model = tiny_bert()
    rows = SilentRows(model)
    plain = {name: getattr(reference, name) for name in SHARED_ARGUMENTS}
    mat, twa = MATCallback(reference.mat_config()), TWACallback(reference.twa_config())
    methods = [twa, mat] if twa_first else [mat, twa]
    trainer = Trainer(model=model, args=TrainingArguments(str(tmp_path / "plain"), **plain), train_dataset=data,
                      callbacks=[*methods, rows])  # fmt: skip
    trainer.train()
    start = twa.start_step
    assert twa.phase == "done" and mat.released
    assert any(rows.silent[s] > 0 for s in range(3, start + 1))  # MAT gated while TWA collected
    assert all(rows.silent[s] == 0 for s in range(start + 1, trainer.state.global_step + 1))  # released for TWA
    if not twa_first:  # EfficientTrainer's order: the same run, bit for bit
        for (name, a), b in zip(ours_model.state_dict().items(), model.state_dict().values(), strict=True):
            assert a.equal(b), name


class _StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.at = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            control.should_training_stop = True
