"""benchmarks/solar.py at a tiny size: both arms trained alike, the curve from step 0, the result files."""

from __future__ import annotations

import json

import pytest

solar = pytest.importorskip("benchmarks.solar")
TINY = ["--model", "tiny", "--layers", "4", "--m", "1", "--steps", "4", "--eval-every", "2", "--batch-size", "2"]
TINY += ["--block-size", "32", "--eval-blocks", "8", "--lr", "1e-3", "--warmup-steps", "0"]


@pytest.mark.slow
def test_tiny_run_compares_the_upscaled_model_with_the_original(tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr("benchmarks.harness.RESULTS_DIR", tmp_path)
    solar.main(TINY)
    result = json.loads((tmp_path / "solar.json").read_text())
    assert (result["original_layers"], result["upscaled_layers"], result["m"]) == (4, 6, 1)
    assert result["upscaled_parameters"] > result["original_parameters"]
    assert [row["step"] for row in result["curve"]] == [0, 2, 4]
    run = result["per_seed"][0]
    for arm in ("original", "upscaled"):
        losses = run[arm]["eval_loss"]
        assert list(losses) == ["0", "2", "4"] and losses["4"] < losses["0"]  # it trained
    assert result["original_eval_loss_at_0"] != result["upscaled_eval_loss_at_0"]  # the seam changes the function
    assert result["final_gap"] == pytest.approx(result["upscaled_final_eval_loss"] - result["original_final_eval_loss"])
    assert "Held-out loss" in (tmp_path / "solar.md").read_text()


def test_crossover_is_where_the_upscaled_model_stays_ahead():
    original = {0: 3.0, 2: 2.5, 4: 2.2, 6: 2.0}
    assert solar.crossover(original, {0: 4.0, 2: 2.6, 4: 2.1, 6: 1.9}) == 4
    assert solar.crossover(original, {0: 4.0, 2: 2.4, 4: 2.3, 6: 1.9}) == 6  # ahead at 2, behind at 4
    assert solar.crossover(original, {0: 4.0, 2: 2.6, 4: 2.3, 6: 2.1}) is None
