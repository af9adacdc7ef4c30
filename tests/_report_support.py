"""A tiny run with MAT, TWA and online CMD together (plus eval), shared by the report tests."""

from __future__ import annotations

from pathlib import Path

from _twa_support import toy_dataset

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.testing import tiny_model

ALL_METHODS = {
    "mat": True,
    "mat_every": 2,
    "mat_warmup_steps": 2,
    "mat_probe_size": 4,
    "twa": True,
    "twa_start": 8,
    "twa_every": 2,
    "twa_steps": 4,
    "cmd_online": True,
    "cmd_every": 1,
    "cmd_warmup": 4,
    "cmd_modes": 2,
    "cmd_candidates": 50,
    "cmd_save_model": False,
}


def tiny_run(output_dir: Path, **overrides) -> EfficientTrainer:
    """Train a tiny BERT classifier for a few steps with eval every 4 steps; returns the trainer after training."""
    settings = {
        "output_dir": str(output_dir),
        "max_steps": 16,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_steps": 4,
        "per_device_eval_batch_size": 16,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": True,
        "seed": 0,
        **ALL_METHODS,
        **overrides,
    }
    model = tiny_model("bert", task="classification", seed=0).train()
    trainer = EfficientTrainer(
        model=model,
        args=EfficientTrainingArguments(**settings),
        train_dataset=toy_dataset(),
        eval_dataset=toy_dataset(n=32, seed=1),
        compute_metrics=accuracy,
    )
    trainer.train()
    trainer.save_state()  # trainer_state.json: the log history the report plots
    return trainer


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}
