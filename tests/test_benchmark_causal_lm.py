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
    assert (tmp_path / "causal_lm.md").is_file()
