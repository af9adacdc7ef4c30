"""TWA-v: held-out rows leave ordinary training, feed the TWA phase, and a resumed run gets the same batches."""

from __future__ import annotations

import pytest
import torch
from _twa_support import losses, toy_dataset, toy_trainer
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_efftrain import EfficientTrainingArguments
from hf_efftrain.errors import TWAError
from hf_efftrain.testing import tiny_model
from hf_efftrain.twa import TWACallback, TWAConfig
from hf_efftrain.twa.holdout import split_holdout

TWA_V = {"twa": True, "twa_start": 0.5, "twa_every": 2, "twa_steps": 4, "max_steps": 12, "twa_holdout": 0.25}


def _rows(dataset) -> set[tuple[int, ...]]:
    return {tuple(row["input_ids"]) for row in dataset}


class _SeenRows(TrainerCallback):
    """The input rows of every training forward, by the step they belong to."""

    def __init__(self, model):
        self.step, self.rows = 0, {}
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        if module.training:
            self.rows.setdefault(self.step, set()).update(tuple(r) for r in kwargs["input_ids"].tolist())

    def on_step_begin(self, args, state, control, **kwargs):
        self.step = state.global_step + 1


def test_split_is_seeded_disjoint_and_keeps_the_dataset_type():
    data = toy_dataset(40)
    train, held = split_holdout(data, 0.25, seed=3)
    assert (len(train), len(held)) == (30, 10) and type(train) is type(data)
    assert not _rows(train) & _rows(held) and _rows(train) | _rows(held) == _rows(data)
    assert _rows(split_holdout(data, 0.25, seed=3)[1]) == _rows(held) != _rows(split_holdout(data, 0.25, seed=4)[1])


def test_twa_phase_trains_on_held_out_rows_only(tmp_path):
    trainer = toy_trainer(str(tmp_path), twa_lr=0.5, **TWA_V)
    seen = _SeenRows(trainer.model)
    trainer.add_callback(seen)
    held = _rows(split_holdout(toy_dataset(), 0.25, seed=0)[1])
    assert len(trainer.train_dataset) == 48 and not _rows(trainer.train_dataset) & held
    trainer.train()
    assert trainer.state.global_step == 10
    phase1 = set().union(*(seen.rows[s] for s in range(1, 7)))
    twa_phase = set().union(*(seen.rows[s] for s in range(7, 11)))
    assert not phase1 & held  # ordinary training never saw the held-out rows
    assert twa_phase <= held and len(twa_phase) == len(held)  # the TWA phase saw them, and only them


class _Kill(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 8:
            raise KeyboardInterrupt


def test_resume_inside_the_twa_phase_continues_with_the_same_held_out_batches(tmp_path):
    knobs = {**TWA_V, "twa_lr": 0.5, "save_strategy": "steps", "save_steps": 4}
    whole = toy_trainer(str(tmp_path / "whole"), **knobs)
    whole.train()
    broken = toy_trainer(str(tmp_path / "cut"), **knobs)
    broken.add_callback(_Kill())
    with pytest.raises(KeyboardInterrupt):
        broken.train()
    resumed = toy_trainer(str(tmp_path / "cut"), **knobs)
    resumed.train(resume_from_checkpoint=True)
    pieces = {**losses(broken), **losses(resumed)}
    assert pieces == pytest.approx(losses(whole), abs=1e-6) and len(pieces) == 10
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_holdout_is_refused_where_it_cannot_work(tmp_path):
    with pytest.raises(TWAError, match="twa is off"):
        EfficientTrainingArguments(output_dir=str(tmp_path), twa_holdout=0.1, report_to="none")
    with pytest.raises(TWAError, match="twa_holdout"):
        EfficientTrainingArguments(output_dir=str(tmp_path), twa=True, twa_holdout=1.0, report_to="none")
    plain = Trainer(
        model=tiny_model("bert", task="classification", seed=0),
        args=TrainingArguments(str(tmp_path), max_steps=4, report_to="none", use_cpu=True),
        train_dataset=toy_dataset(),
        callbacks=[TWACallback(TWAConfig(start=2, every=1, steps=2, holdout=0.2))],
    )
    with pytest.raises(TWAError, match="needs EfficientTrainer"):
        plain.train()
