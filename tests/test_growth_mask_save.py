"""A masked-growth model saved mid-ramp reloads as the same function; a run resumed from it continues the ramp."""

from __future__ import annotations

import json

import pytest
import torch
import transformers as tf
from datasets import Dataset
from torch import nn
from transformers import TrainerCallback

from hf_efftrain.growth import (
    GrowthError,
    copy_all,
    get_mask,
    grow_depth,
    masked_depth,
    masked_width,
    restore_mask,
    set_mask,
)
from hf_efftrain.growth.mask_state import CONFIG_KEY
from hf_efftrain.growth.recipe import load_source_config
from hf_efftrain.model_folder import load_model
from hf_efftrain.testing import tiny_inputs, tiny_model
from hf_efftrain.trainer import EfficientTrainer, EfficientTrainingArguments

AUTO = {"masked-lm": tf.AutoModelForMaskedLM, "causal-lm": tf.AutoModelForCausalLM}


def _logits(model: nn.Module, batch) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**batch).logits


def _masked(kind: str, family: str, task: str):
    source = tiny_model(family, task)
    if kind == "depth":
        return masked_depth(source, copy_all(2, 4), fresh=True, ramp_steps=8)
    extra = {"num_heads": 8, "num_kv_heads": 4} if family == "llama" else {}
    return masked_width(source, intermediate_size=96, ramp_steps=8, **extra)


@pytest.mark.parametrize("kind", ["depth", "width"])
@pytest.mark.parametrize(("family", "task"), [("bert", "masked-lm"), ("llama", "causal-lm")])
def test_a_model_saved_mid_ramp_reloads_as_the_same_function(kind, family, task, tmp_path):
    grown = _masked(kind, family, task)
    set_mask(grown, 0.5)
    batch = tiny_inputs(grown)
    expected = _logits(grown, batch)
    grown.save_pretrained(tmp_path)
    record = json.loads((tmp_path / "config.json").read_text())[CONFIG_KEY]
    assert record["value"] == 0.5 and record["ramp_steps"] == 8

    plain = AUTO[task].from_pretrained(tmp_path)  # transformers alone: the hooks are not there yet
    assert not torch.allclose(_logits(plain, batch), expected, atol=1e-4)
    assert restore_mask(plain).value == 0.5
    assert torch.equal(_logits(plain, batch), expected)
    assert restore_mask(plain) is get_mask(plain)  # a second call adds no second set of hooks
    assert torch.equal(_logits(plain, batch), expected)

    ours = load_model(tmp_path, AUTO[task])  # hf_efftrain's loader restores on its own
    assert torch.equal(_logits(ours, batch), expected)


def test_the_record_goes_when_the_ramp_ends_or_the_model_is_grown_again(tmp_path):
    grown = _masked("depth", "llama", "causal-lm")
    set_mask(grown, 0.25)
    deeper = grow_depth([grown], copy_all(4, 6))
    assert not hasattr(deeper.config, CONFIG_KEY)  # the new model has no hooks, so no record either
    set_mask(grown, 1.0)
    grown.save_pretrained(tmp_path)
    assert CONFIG_KEY not in json.loads((tmp_path / "config.json").read_text())
    assert restore_mask(tf.AutoModelForCausalLM.from_pretrained(tmp_path)) is None


def test_a_bad_record_and_a_mid_ramp_source_are_user_errors(tmp_path):
    grown = _masked("depth", "llama", "causal-lm")
    grown.save_pretrained(tmp_path)
    with pytest.raises(GrowthError, match="masked-growth ramp"):
        load_source_config(str(tmp_path))  # growing it further would drop the mask
    model = tiny_model("llama", "causal-lm")
    setattr(model.config, CONFIG_KEY, {"value": 0.5, "ramp_steps": 4, "new_layers": [7], "new_units": {}})
    with pytest.raises(GrowthError, match="has 2 layers"):
        restore_mask(model)
    setattr(model.config, CONFIG_KEY, {"value": 0.5})
    with pytest.raises(GrowthError, match="not a growth-mask record"):
        restore_mask(model)


def _data() -> Dataset:
    ids = torch.randint(1, 96, (48, 12), generator=torch.Generator().manual_seed(0))
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})


class _StopAt(TrainerCallback):
    """Stops training after ``step`` steps, as a kill would (a checkpoint exists at that step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.step


def _train(model, out, stop: int | None = None, resume: bool = False) -> list[float]:
    args = EfficientTrainingArguments(
        output_dir=str(out), learning_rate=3e-3, per_device_train_batch_size=4, seed=0, use_cpu=True,
        disable_tqdm=True, report_to=[], logging_steps=1, max_steps=6, growth_mask_ramp_steps=4,
        save_strategy="steps", save_steps=3,
    )  # fmt: skip
    trainer = EfficientTrainer(model=model, args=args, train_dataset=_data())
    if stop:
        trainer.add_callback(_StopAt(stop))
    trainer.train(resume_from_checkpoint=resume or None)
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


@pytest.mark.slow
def test_a_run_resumed_from_a_reloaded_mid_ramp_checkpoint_continues_the_ramp(tmp_path):
    def grown():
        torch.manual_seed(0)
        return masked_depth(tiny_model("llama", "causal-lm"), copy_all(2, 4), fresh=True, ramp_steps=4)

    full = _train(grown(), tmp_path / "full")
    first = _train(grown(), tmp_path / "split", stop=3)
    checkpoint = tmp_path / "split" / "checkpoint-3"
    assert json.loads((checkpoint / "config.json").read_text())[CONFIG_KEY]["value"] == 0.5
    # a new process: the model comes from the checkpoint alone, not from re-running masked_depth
    reloaded = tf.AutoModelForCausalLM.from_pretrained(checkpoint)
    second = _train(reloaded, tmp_path / "split", resume=True)
    assert first == full[:3]
    assert second == full  # the resumed log history holds the first three steps too
    assert get_mask(reloaded) is None and not hasattr(reloaded.config, CONFIG_KEY)  # ramp ended at step 4
