"""Adaptive gradual stacking (stages, LAG choice, optimizer carry, resume) and the mask-ramp callback."""

from __future__ import annotations

import shutil

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback, default_data_collator

from hf_efftrain.growth import copy_all, get_mask, masked_depth
from hf_efftrain.growth.stacking import PlateauStopCallback, StackingConfig, gradual_stack
from hf_efftrain.testing import tiny_model
from hf_efftrain.trainer import EfficientTrainer, EfficientTrainingArguments


def _data() -> Dataset:
    ids = torch.randint(1, 96, (48, 12), generator=torch.Generator().manual_seed(0))
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})


def _args(out, **extra) -> EfficientTrainingArguments:
    settings = {"save_strategy": "no", **extra}
    return EfficientTrainingArguments(
        output_dir=str(out), learning_rate=3e-3, per_device_train_batch_size=4, seed=0, use_cpu=True,
        disable_tqdm=True, report_to=[], logging_steps=1, **settings,
    )  # fmt: skip


CONFIG = StackingConfig(
    final_layers=3, grow_by=1, stage_steps=2, candidates=[{"strategy": "top_k", "k": 1}, {"strategy": "interleave"}],
    lag_steps=1,
)  # fmt: skip


@pytest.mark.slow
def test_gradual_stacking_grows_carries_moments_and_resumes_exactly(tmp_path):
    model, history = gradual_stack(tiny_model("gpt2", "causal-lm", layers=1), _data(), _args(tmp_path / "a"), CONFIG)
    assert [r["layers"] for r in history] == [1, 2, 3] and model.config.n_layer == 3
    assert history[0]["growth"] in ("strategy=top_k,k=1", "strategy=interleave")
    assert set(history[0]["lag"]["losses"]) == {"strategy=top_k,k=1", "strategy=interleave"}
    # copied layers take their source layer's moments: every tensor of the grown model has a source
    assert [r["carried_optimizer_tensors"] for r in history] == [0, 2 + 2 * 12 + 2, 2 + 3 * 12 + 2]
    assert history[-1]["plan"] is None

    out = tmp_path / "a"
    shutil.rmtree(out / "stage-2")  # as if killed during the last stage
    resumed, again = gradual_stack(tiny_model("gpt2", "causal-lm", layers=1), _data(), _args(out), CONFIG)
    assert again[-1]["train_losses"] == history[-1]["train_losses"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name


class _BatchRecorder:
    """A collator that remembers every batch it builds."""

    def __init__(self) -> None:
        self.batches: list[tuple] = []

    def __call__(self, features):
        self.batches.append(tuple(tuple(f["input_ids"]) for f in features))
        return default_data_collator(features)


@pytest.mark.slow
def test_stages_draw_new_batches_and_lag_scores_the_eval_set(tmp_path):
    recorder = _BatchRecorder()
    config = StackingConfig(final_layers=2, grow_by=1, stage_steps=3, candidates=CONFIG.candidates, lag_steps=1)
    model = tiny_model("llama", "causal-lm", layers=1)
    held_out = _data().select(range(8))
    _, history = gradual_stack(model, _data(), _args(tmp_path), config, eval_dataset=held_out, data_collator=recorder)
    assert history[0]["lag"]["metric"] == "held-out loss"
    # one stage draws 3 batches (+1 prefetched); a second stage replaying the same order would add none
    assert len(set(recorder.batches)) >= 6


def test_plateau_stops_and_restores_its_history():
    from transformers import TrainerControl, TrainerState

    callback = PlateauStopCallback(window=2, tolerance=0.05, min_steps=4)
    state, control = TrainerState(), TrainerControl()
    for step, loss in enumerate([5.0, 4.0, 3.0, 2.0, 1.99, 1.98, 1.97], start=1):
        state.global_step = step
        callback.on_log(None, state, control, logs={"loss": loss})
        if control.should_training_stop:
            break
    assert callback.stopped_at == 7  # mean(1.98, 1.97) within 5% of mean(2.0, 1.99)
    restored = PlateauStopCallback(window=2, tolerance=0.05, min_steps=4)
    state.stateful_callbacks = {"PlateauStopCallback": callback.state()}
    restored.on_train_begin(None, state, control)
    assert restored.losses == callback.losses


def _masked_run(out, steps: int, resume: bool = False) -> list[float]:
    torch.manual_seed(0)
    model = masked_depth(tiny_model("llama", "causal-lm"), copy_all(2, 4), fresh=True, ramp_steps=4)
    args = _args(out, max_steps=6, growth_mask_ramp_steps=4, save_strategy="steps", save_steps=3)
    trainer = EfficientTrainer(model=model, args=args, train_dataset=_data())
    if steps < 6:
        trainer.add_callback(_StopAt(steps))
    trainer.train(resume_from_checkpoint=resume or None)
    return [e["loss"] for e in trainer.state.log_history if "loss" in e], model


class _StopAt(TrainerCallback):
    """Stops training after ``step`` steps, as a kill would (a checkpoint exists at that step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.step


@pytest.mark.slow
def test_mask_ramp_resumes_exactly(tmp_path):
    full, model = _masked_run(tmp_path / "full", 6)
    assert get_mask(model) is None  # reached 1 at step 4 and removed its hooks
    first, half = _masked_run(tmp_path / "split", 3)
    assert get_mask(half).value == pytest.approx(0.5)
    second, _ = _masked_run(tmp_path / "split", 6, resume=True)
    assert first == full[:3]
    assert second == full  # the resumed log history holds the first three steps too


def test_plateau_trigger_ends_each_stage_early(tmp_path):
    config = StackingConfig(
        final_layers=2, grow_by=1, stage_steps=50, trigger="plateau", plateau_window=1, plateau_tolerance=1.0,
        min_stage_steps=3, candidates=[{"strategy": "copy_all"}],
    )  # fmt: skip
    model, history = gradual_stack(tiny_model("gpt2", "causal-lm", layers=1), _data(), _args(tmp_path), config)
    assert [r["steps"] for r in history] == [3, 3]  # tolerance 1: a plateau as soon as min_stage_steps allow
    assert model.config.n_layer == 2 and history[0]["growth"] == "strategy=copy_all"
