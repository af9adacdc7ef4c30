"""TWA inside the Trainer: phase 1 is ordinary training, the TWA phase stays in the span, resume is exact.

A tiny BERT classifier on a toy task; every run takes about a second.
"""

from __future__ import annotations

import logging

import pytest
import torch
from _twa_support import losses, toy_dataset, toy_trainer
from peft import LoraConfig, get_peft_model
from transformers import HfArgumentParser, TrainerCallback

from hf_efftrain import EfficientTrainingArguments
from hf_efftrain.errors import BasisMemoryError, TWAError
from hf_efftrain.testing import tiny_model
from hf_efftrain.trajectory import Trajectory
from hf_efftrain.twa import SubspaceBasis, TrainableView, TWACallback

TWA = {"twa": True, "twa_start": 0.5, "twa_every": 2, "twa_steps": 4, "max_steps": 12}


def _twa_callback(trainer) -> TWACallback:
    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, TWACallback))


class _Recorder(TrainerCallback):
    """Keeps θ at the collection steps, as TWA saw it."""

    def __init__(self, steps):
        self.steps, self.thetas = set(steps), []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            self.thetas.append(TrainableView(model).vector())


def test_twa_phase_follows_ordinary_training_and_stays_in_the_span(tmp_path):
    plain = toy_trainer(str(tmp_path / "plain"))
    plain.train()
    trainer = toy_trainer(str(tmp_path / "twa"), twa_lr=0.5, **TWA)
    recorder = _Recorder([2, 4, 6])
    trainer.add_callback(recorder)
    trainer.train()
    report = _twa_callback(trainer).report
    assert trainer.state.global_step == 6 + 4  # stopped after the TWA phase, not at max_steps
    assert report["checkpoints"] == 3 and report["basis_rank"] == 3
    first = {s: v for s, v in losses(trainer).items() if s <= 6}
    assert first == {s: v for s, v in losses(plain).items() if s <= 6}  # collection does not perturb training
    basis = SubspaceBasis(dim=len(recorder.thetas[0]))
    for theta in recorder.thetas:
        basis.add(theta)
    final = TrainableView(trainer.model).vector()
    average = torch.stack(recorder.thetas).mean(0)
    assert torch.allclose(basis.project(final), final, atol=1e-5)  # AdamW did not step during TWA
    assert (final - average).norm() > 1e-3  # and TWA moved away from the plain average


class _Kill(TrainerCallback):
    """Simulates a killed job: raises right after the checkpoint of step ``at`` is written."""

    def __init__(self, at):
        self.at = at

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("form", "init"), [("subspace", "average"), ("layerwise", "average"), ("subspace", "last"), ("layerwise", "last")]
)
def test_resume_matches_an_uninterrupted_run(tmp_path, form, init):
    """Killed in the collection phase (step 4) and again in the TWA phase (step 8): same losses, same weights."""
    knobs = {**TWA, "twa_form": form, "twa_lr": 0.3 if form == "subspace" else 0.05, "twa_init": init}
    knobs.update(save_strategy="steps", save_steps=4)
    whole = toy_trainer(str(tmp_path / "whole"), **knobs)
    whole.train()
    pieces = {}
    for kill_at in (4, 8):
        broken = toy_trainer(str(tmp_path / "resumed"), **knobs)
        broken.add_callback(_Kill(kill_at))
        with pytest.raises(KeyboardInterrupt):
            broken.train(resume_from_checkpoint=kill_at > 4)
        pieces.update(losses(broken))
    resumed = toy_trainer(str(tmp_path / "resumed"), **knobs)
    resumed.train(resume_from_checkpoint=True)
    pieces.update(losses(resumed))
    assert sorted(pieces) == sorted(losses(whole)) == list(range(1, 11))
    assert pieces == pytest.approx(losses(whole), abs=1e-6)
    assert torch.allclose(TrainableView(whole.model).vector(), TrainableView(resumed.model).vector(), atol=1e-6)
    assert _twa_callback(resumed).phase == "done"
    # the spread survives the resume inside the TWA phase, so the movement is reported as in the whole run
    assert _twa_callback(resumed).report["moved_spreads"] == pytest.approx(_twa_callback(whole).report["moved_spreads"])


def test_snapshot_folder_and_existing_trajectory_give_the_in_memory_result(tmp_path):
    memory = toy_trainer(str(tmp_path / "memory"), twa_lr=0.5, **TWA)
    memory.train()
    folder = tmp_path / "snapshots"
    on_disk = toy_trainer(str(tmp_path / "disk"), twa_lr=0.5, twa_snapshot_dir=str(folder), **TWA)
    on_disk.train()
    expected = TrainableView(memory.model).vector()
    assert sorted(p.name for p in folder.iterdir()) == ["snapshot-2", "snapshot-4", "snapshot-6"]
    assert torch.allclose(TrainableView(on_disk.model).vector(), expected, atol=1e-6)
    # post-hoc: start at step 0 from the saved folder (TWA only, no collection)
    posthoc = toy_trainer(
        str(tmp_path / "posthoc"), twa=True, twa_start=0, twa_steps=4, twa_lr=0.5, twa_checkpoints_from=str(folder)
    )
    posthoc.train()
    assert posthoc.state.global_step == 4 and _twa_callback(posthoc).report["checkpoints"] == 3


def test_basis_too_large_fails_before_training(tmp_path):
    trainer = toy_trainer(str(tmp_path), twa_max_basis_mb=0.01, **TWA)
    with pytest.raises(BasisMemoryError, match="MiB per process"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_arguments_parse_and_validate(tmp_path):
    (args,) = HfArgumentParser(EfficientTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--twa", "--twa_steps", "7", "--twa_form", "layerwise", "--twa_bits", "4"]
    )
    config = args.twa_config()
    assert (config.steps, config.form, config.bits) == (7, "layerwise", 4)
    with pytest.raises(TWAError, match="load_best_model_at_end"):
        EfficientTrainingArguments(
            output_dir=str(tmp_path),
            twa=True,
            load_best_model_at_end=True,
            eval_strategy="steps",
            save_strategy="steps",
        )
    with pytest.raises(TWAError, match="twa_form"):
        EfficientTrainingArguments(output_dir=str(tmp_path), twa=True, twa_form="sgd")


def test_peft_adapters_only_and_twa_from_existing_adapter_checkpoints(tmp_path):
    def lora_model():
        base = tiny_model("bert", task="classification", seed=0)
        config = LoraConfig(r=2, target_modules=["query", "value"], modules_to_save=["classifier"], task_type="SEQ_CLS")
        return get_peft_model(base, config).train()

    model = lora_model()
    view = TrainableView(model)
    assert view.names and all("lora_" in n or "classifier" in n for n in view.names)
    assert view.dim < sum(p.numel() for p in model.parameters()) / 10
    saving = toy_trainer(str(tmp_path / "run"), model=model, max_steps=6, save_strategy="steps", save_steps=2)
    saving.train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    posthoc = toy_trainer(
        str(tmp_path / "twa"),
        model=model,
        twa=True,
        twa_start=0,
        twa_steps=3,
        twa_lr=0.5,
        twa_checkpoints_from=str(tmp_path / "run"),
    )
    posthoc.train()
    assert _twa_callback(posthoc).report["checkpoints"] == 3  # adapter_model.safetensors of checkpoint-2/4/6
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)
    trajectory = Trajectory(tmp_path / "run")
    basis = SubspaceBasis(view.dim)
    for index in range(len(trajectory)):
        basis.add(view.vector_from_state(trajectory.load(index)))
    final = view.vector()
    assert torch.allclose(basis.project(final), final, atol=1e-5)


def test_early_stop_is_announced_and_still_saves_and_evaluates(tmp_path):
    """TWA ends the run at step 10 of 12: the logs say so, and the last checkpoint and evaluation still happen."""
    knobs = {**TWA, "save_strategy": "steps", "save_steps": 100, "eval_strategy": "steps", "eval_steps": 100}
    trainer = toy_trainer(str(tmp_path), twa_lr=0.5, eval_dataset=toy_dataset(16, seed=1), **knobs)
    logger = logging.getLogger("hf_efftrain.twa")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    try:
        trainer.train()
    finally:
        logger.removeHandler(handler)
    assert trainer.state.global_step == 10
    assert "TWA: phase done at step 10 of 12, stopping early" in records
    assert [e["step"] for e in trainer.state.log_history if "eval_loss" in e] == [10]
    assert [e["step"] for e in trainer.state.log_history if "twa_stopped_early_at_step" in e] == [10]
    assert (tmp_path / "checkpoint-10" / "model.safetensors").is_file()
    assert (tmp_path / "checkpoint-10" / "twa_state-rank0.pt").is_file()
    saved = torch.load(tmp_path / "checkpoint-10" / "twa_state-rank0.pt", weights_only=True)
    assert saved["phase"] == "done"


def test_a_phase_that_barely_moves_says_so_in_one_warning(tmp_path, caplog):
    from hf_efftrain.log import get_logger

    logger = get_logger("hf_efftrain.twa")  # hf_efftrain's loggers do not propagate (like transformers')
    logger.addHandler(caplog.handler)
    try:
        still = toy_trainer(str(tmp_path / "still"), twa_lr=1e-6, **TWA)
        still.train()
        warned = [r for r in caplog.records if "moved the weights only" in r.getMessage()]
        caplog.clear()
        moving = toy_trainer(str(tmp_path / "moving"), twa_lr=0.5, **TWA)
        moving.train()
    finally:
        logger.removeHandler(caplog.handler)
    assert _twa_callback(still).report["moved_spreads"] < 0.1 and len(warned) == 1
    assert "twa_lr=1e-06" in warned[0].getMessage() and warned[0].levelno == logging.WARNING
    assert _twa_callback(moving).report["moved_spreads"] > 0.1
    assert "moved the weights only" not in caplog.text
