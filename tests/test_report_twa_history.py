"""``twa_history.json``: the coefficients TWA trained, per TWA step, in both forms; kept across a resume."""

from __future__ import annotations

import json

import pytest
import torch
from _twa_support import toy_trainer
from transformers import TrainerCallback

from hf_efftrain.report import build_report
from hf_efftrain.twa import TrainableView

TWA = {"twa": True, "twa_start": 0.5, "twa_every": 2, "twa_steps": 4, "max_steps": 12}


def _history(folder):
    return json.loads((folder / "twa_history.json").read_text())


def test_subspace_coordinates_stay_in_the_trust_region(tmp_path):
    trainer = toy_trainer(str(tmp_path), twa_lr=0.3, **TWA)
    trainer.train()
    record = _history(tmp_path)
    assert record["form"] == "subspace" and record["collected_steps"] == [2, 4, 6]
    assert [h["step"] for h in record["history"]] == [7, 8, 9, 10]
    rank = record["report"]["basis_rank"]
    assert all(len(h["coefficients"]) == rank for h in record["history"])
    final = torch.tensor(record["final_coefficients"])
    assert final.tolist() == pytest.approx(record["history"][-1]["coefficients"], abs=1e-7)
    # coordinates of θ − average in an orthonormal basis: their norm is ‖θ − average‖ ≤ trust radius, and > 0
    assert 1e-4 < float(final.norm()) <= record["report"]["trust_radius"] * (1 + 1e-4)


def test_layerwise_coefficients_per_checkpoint_and_tensor(tmp_path):
    trainer = toy_trainer(str(tmp_path), twa_form="layerwise", twa_lr=0.05, **TWA)
    trainer.train()
    record = _history(tmp_path)
    final = torch.tensor(record["final_coefficients"])
    names = TrainableView(trainer.model).names
    assert record["tensor_names"] == names and final.shape == (3, len(names))
    assert final.abs().max() > 0  # X starts at 0 (the plain average): AdamW moved it
    assert record["history"][-1]["coefficients"] == pytest.approx(final.mean(dim=1).tolist(), abs=1e-6)
    page = build_report(tmp_path, fmt="markdown")
    assert "twa_layerwise.png" in page.read_text() and (page.parent / "twa_layerwise.png").stat().st_size > 0
    assert "| checkpoint (step) | mean coefficient over tensors |" in page.read_text()


class _Kill(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 8:  # inside the TWA phase (steps 7-10)
            raise KeyboardInterrupt


def test_history_survives_a_resume(tmp_path):
    knobs = {**TWA, "twa_lr": 0.3, "save_strategy": "steps", "save_steps": 4}
    toy_trainer(str(tmp_path / "whole"), **{**knobs, "save_strategy": "no"}).train()  # saving changes no number
    broken = toy_trainer(str(tmp_path / "resumed"), **knobs)
    broken.add_callback(_Kill())
    with pytest.raises(KeyboardInterrupt):
        broken.train()
    toy_trainer(str(tmp_path / "resumed"), **knobs).train(resume_from_checkpoint=True)
    whole, resumed = _history(tmp_path / "whole"), _history(tmp_path / "resumed")
    assert [h["step"] for h in resumed["history"]] == [7, 8, 9, 10]
    for a, b in zip(whole["history"], resumed["history"], strict=True):
        assert a["coefficients"] == pytest.approx(b["coefficients"], abs=1e-6)
