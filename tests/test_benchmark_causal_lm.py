"""benchmarks/causal_lm.py at a tiny size: every contract key and per-seed values, MAT on LoRA included."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("peft")
causal_lm = pytest.importorskip("benchmarks.causal_lm")
TINY = ["--model", "tiny", "--steps", "4", "--batch-size", "2", "--block-size", "32", "--eval-blocks", "8"]
TINY += ["--twa-steps", "2", "--twa-every", "1", "--twa-collect-from", "0", "--snapshot-every", "1"]
TINY += ["--flops-every", "1", "--cmd-modes", "2", "--lr", "1e-2"]
CONTRACT = (
    "model", "seeds", "lora_eval_loss", "lora_mat_eval_loss", "lora_mat_backward_flops_ratio", "lora_twa_eval_loss",
    "adapter_mb", "twa_checkpoints", "twa_basis_mb", "cmd_adapter_relative_reconstruction_error",
    "lora_mat_wall_clock_ratio", "lora_twa_wall_clock_ratio", "per_seed",
)  # fmt: skip


@pytest.mark.slow
def test_tiny_run_writes_every_contract_key(tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr("benchmarks.harness.RESULTS_DIR", tmp_path)
    arms = ["lora", "lora+mat", "lora+twa", "lora+twa_last"]
    causal_lm.main([*TINY, "--seeds", "0", "1", "--arms", *arms, "--mat-every", "1"])
    result = json.loads((tmp_path / "causal_lm.json").read_text())
    assert set(CONTRACT) <= set(result) and result["seeds"] == [0, 1] and len(result["per_seed"]) == 2
    assert result["lora_mat_eval_loss"] > 0 and result["lora_mat_backward_flops_ratio"] < 1.0  # gated adapter work
    assert result["twa_checkpoints"] == 2 and 0 < result["twa_basis_mb"] < 1  # the adapter at steps 1 and 2
    assert result["lora_twa_backward_flops_ratio"] == pytest.approx(1.0)  # TWA steps back-propagate as usual
    assert result["lora_twa_last_eval_loss"] > 0 and "lora+twa_last/twa_checkpoints" in result["per_seed"][0]
    assert 0 <= result["cmd_adapter_relative_reconstruction_error"] < 0.5
    assert all(row["lora/eval_loss"] < row["base_eval_loss"] for row in result["per_seed"])
    assert len(result["lora_mat_lambda_by_layer"]) == 2 and 0 <= result["lora_mat_lowest_active_layer"] <= 2
    assert "lambda_max" in (tmp_path / "causal_lm.md").read_text()


def test_depth_figures_read_where_the_gates_fall():
    """Past warm-up only: the deepest lowest-active layer over the probes, fully gated layers, λ by layer."""
    from hf_efftrain.mat.layout import build_layout
    from hf_efftrain.testing import tiny_model

    layout = build_layout(tiny_model("llama", task="causal-lm"))  # 2 layers of 4 heads
    assert [u.layer for u in layout.units] == [0] * 4 + [1] * 4
    history = [
        {"step": 1, "active": [False] * 4 + [True] * 4, "lambda": [1.0] * 8},  # warm-up: not counted
        {"step": 4, "active": [True, False, False, False] + [False] * 4, "lambda": [4.0, 2, 2, 2, 1, 1, 1, 3]},
        {"step": 6, "active": [False] * 4 + [True, False, False, False], "lambda": [1.0] * 4 + [3.0] * 4},
    ]
    figures = causal_lm.depth_figures(layout, history, warmup_steps=2)
    assert figures["lowest_active_layer"] == 1  # the probe at step 6 gated all of layer 0
    assert figures["fully_gated_layers"] == 1.0
    assert figures["lambda_by_layer"] == pytest.approx([(1.25 + 0.5) / 2, (0.75 + 1.5) / 2], abs=1e-3)
    assert causal_lm.depth_figures(layout, history[:1], warmup_steps=2)["lowest_active_layer"] == 0
