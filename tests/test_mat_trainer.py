"""MAT inside Trainer: logs, heat map, exact resume, and a clear refusal for LoRA adapters it cannot gate."""

from __future__ import annotations

import json

import pytest
from _mat_train_utils import tiny_args, tiny_bert, tiny_classification_data
from transformers import Trainer, TrainerCallback

from hf_efftrain import EfficientTrainer
from hf_efftrain.errors import MATConfigError
from hf_efftrain.mat import MATCallback, MATConfig
from hf_efftrain.testing import tiny_model


class StopAt(TrainerCallback):
    """Simulates a killed run: training stops right after the checkpoint of ``step`` is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def _losses(trainer) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}


def _mat_callback(trainer) -> MATCallback:
    return next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, MATCallback))


class LogRecorder(TrainerCallback):
    """Stands for TensorBoard/W&B: a reporting callback that only sees what reaches ``on_log``."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.seen.append(dict(logs))


def test_efficient_trainer_logs_gates_and_saves_heatmap(tmp_path):
    recorder = LogRecorder()
    trainer = EfficientTrainer(
        model=tiny_bert(),
        args=tiny_args(str(tmp_path), mat_stable_backoff=1),
        train_dataset=tiny_classification_data(),
        callbacks=[recorder],
    )
    trainer.train()
    assert [logs for logs in recorder.seen if "loss" in logs]
    assert all("mat/active_fraction" in logs for logs in recorder.seen if "loss" in logs)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert all("mat/active_fraction" in h for h in logs)
    assert logs[0]["mat/active_fraction"] == 1.0  # warm-up
    assert logs[-1]["mat/active_fraction"] < 1.0
    assert logs[-1]["mat/projection_backward_flops_saved"] > 0
    assert not any(key.startswith("mat/lambda/") for h in logs for key in h)  # no per-head keys by default
    summary = [h for h in logs if "mat/lambda_median" in h]
    assert summary and all(h["mat/lambda_min"] <= h["mat/lambda_median"] <= h["mat/lambda_max"] for h in summary)
    assert all(0 < h["mat/measure_share"] < 1 for h in logs[1:])
    history = json.loads((tmp_path / "mat_history.json").read_text())
    assert [h["step"] for h in history["history"]] == [2, 4, 6, 8, 10, 12]
    assert (tmp_path / "mat_heatmap.png").stat().st_size > 1000
    model = trainer.model  # patches are undone after training
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_resume_continues_with_same_gates_and_losses(tmp_path):
    data = tiny_classification_data()
    save = {"save_strategy": "steps", "save_steps": 6}
    full = EfficientTrainer(model=tiny_bert(), args=tiny_args(str(tmp_path / "full"), **save), train_dataset=data)
    full.train()
    cut_args = tiny_args(str(tmp_path / "cut"), **save)
    cut = EfficientTrainer(model=tiny_bert(), args=cut_args, train_dataset=data, callbacks=[StopAt(6)])
    cut.train()
    assert max(_losses(cut)) == 6
    resumed = EfficientTrainer(model=tiny_bert(), args=cut_args, train_dataset=data)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-6"))
    want = {s: v for s, v in _losses(full).items() if s > 6}
    got = {s: v for s, v in _losses(resumed).items() if s > 6}
    assert got == want
    a, b = _mat_callback(full).engine, _mat_callback(resumed).engine
    assert a.history == b.history  # same λmax and gates at every measurement, before and after the cut
    assert a.active.tolist() == b.active.tolist() and not all(a.active.tolist())


def test_callback_works_with_plain_trainer(tmp_path):
    args = tiny_args(str(tmp_path), mat=False, max_steps=6)
    callback = MATCallback(
        MATConfig(every=2, warmup_steps=2, probe_size=4, threshold_rule="max", threshold=0.9, stable_backoff=1)
    )
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=tiny_classification_data(), callbacks=[callback])
    trainer.train()
    assert len(callback.engine.history) == 3
    assert sum(callback.engine.history[-1]["active"]) < 8


def test_peft_lora_without_attention_adapters_is_refused_clearly(tmp_path):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(
        tiny_model("bert", task="classification"), peft.LoraConfig(r=2, target_modules=["intermediate.dense"])
    )
    with pytest.raises(MATConfigError, match="target_modules"):  # when the trainer is built, before train()
        EfficientTrainer(model=model, args=tiny_args(str(tmp_path)), train_dataset=tiny_classification_data())


def test_bad_arguments_fail_at_parse_time(tmp_path):
    with pytest.raises(MATConfigError, match="threshold_rule"):
        tiny_args(str(tmp_path), mat_threshold_rule="median")


def test_cli_summary_and_heatmap(tmp_path):
    from typer.testing import CliRunner

    from hf_efftrain.cli import app, main

    trainer = EfficientTrainer(
        model=tiny_bert(), args=tiny_args(str(tmp_path), max_steps=4), train_dataset=tiny_classification_data()
    )
    trainer.train()
    runner = CliRunner()
    result = runner.invoke(app, ["mat", "summary", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "L1.H3" in result.output and "measurements: 2" in result.output
    result = runner.invoke(app, ["mat", "heatmap", str(tmp_path), "--out", str(tmp_path / "h.png")])
    assert result.exit_code == 0 and (tmp_path / "h.png").is_file()
    with pytest.raises(SystemExit) as exit_info:  # a user error: one line, exit code 2
        main(["mat", "summary", str(tmp_path / "nothing")])
    assert exit_info.value.code == 2
