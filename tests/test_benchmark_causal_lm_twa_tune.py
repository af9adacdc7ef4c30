"""benchmarks/causal_lm_twa_tune.py at a tiny size: scored on blocks the contract never scores, every candidate."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("peft")
tune = pytest.importorskip("benchmarks.causal_lm_twa_tune")
TINY = ["--model", "tiny", "--steps", "6", "--batch-size", "2", "--block-size", "32", "--eval-blocks", "4"]
TINY += ["--twa-steps", "2", "--twa-every", "1", "--twa-collect-from", "0.5", "--lr", "1e-2", "--threads", "1"]


@pytest.mark.slow
def test_tiny_tuning_scores_each_candidate_on_blocks_the_contract_does_not_score(tmp_path, monkeypatch):
    monkeypatch.setattr("benchmarks.harness.RESULTS_DIR", tmp_path)
    still = ["subspace:1e-9:1:last", "subspace:1e-9:1:average", "layerwise:0.1:1:last"]
    tune.main([*TINY, "--candidates", *still])
    result = json.loads((tmp_path / "causal_lm_twa_tuning.json").read_text())
    rows = {row["arm"]: row for row in result["candidates"]}
    assert result["collection_steps"] == [3, 4] and result["seeds"] == [2]
    assert result["tuning_blocks"].startswith("held-out blocks 4..") and "blocks 0..3" in result["tuning_blocks"]
    start, average = rows["adapter at step 4 (the TWA start)"], rows["plain average of the 2 adapters (SWA)"]
    # a TWA phase that cannot move stays where its init puts it: the last adapter, or the plain average
    assert rows["twa subspace lr=1e-09 trust=1.0 init=last"]["tuning_eval_loss"] == pytest.approx(
        start["tuning_eval_loss"], abs=1e-5
    )
    assert rows["twa subspace lr=1e-09 trust=1.0 init=average"]["tuning_eval_loss"] == pytest.approx(
        average["tuning_eval_loss"], abs=1e-5
    )
    assert rows["twa subspace lr=1e-09 trust=1.0 init=last"]["moved_spreads"] < 1e-4  # in checkpoint spreads
    assert rows["twa layerwise lr=0.1 trust=1.0 init=last"]["moved_spreads"] > 1e-3
    assert rows["lora, 6 steps"]["minus_lora"] == 0 and result["best"].startswith("twa ")
    assert "| twa layerwise lr=0.1 trust=1.0 init=last |" in (tmp_path / "causal_lm_twa_tuning.md").read_text()


def test_a_candidate_is_written_form_lr_trust_init():
    assert tune.parse_candidate("subspace:0.2:1:last") == ("subspace", 0.2, 1.0, "last")
