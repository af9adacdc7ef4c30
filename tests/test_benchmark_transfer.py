"""benchmarks/transfer.py's bookkeeping: scenarios run side by side in separate processes end in one file."""

from __future__ import annotations

import json

import pytest

transfer = pytest.importorskip("benchmarks.transfer")


def test_included_scenarios_keep_their_own_command_and_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "RESULTS_DIR", tmp_path)
    rows = [{"seed_source": 2, "seed_target": 0, "transferred_accuracy": 0.7}]
    s4 = {"transferred_accuracy": 0.7, "command": "python -m benchmarks.transfer --scenarios 4 --name s4", "date": "d"}
    other = {"scenario_4_minilm_finetuned": s4, "per_pair": {"scenario_4_minilm_finetuned": rows}, "command": "x"}
    (tmp_path / "s4.json").write_text(json.dumps(other))
    kept = [{"seed_source": 0, "transferred_accuracy": 0.5}]
    result, per_pair = {"scenario_1_scratch": {"transferred_accuracy": 0.5}}, {"scenario_1_scratch": kept}
    transfer.include_scenarios(result, per_pair, ["s4"])
    assert result["scenario_4_minilm_finetuned"] == s4 and per_pair["scenario_4_minilm_finetuned"] == rows
    assert per_pair["scenario_1_scratch"] == kept and "command" not in result


def test_including_a_missing_or_foreign_file_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "RESULTS_DIR", tmp_path)
    with pytest.raises(SystemExit, match="--include nothing: .* does not exist"):
        transfer.include_scenarios({}, {}, ["nothing"])
    (tmp_path / "twa.json").write_text(json.dumps({"twa_accuracy": 0.8}))
    with pytest.raises(SystemExit, match="holds no scenario of this benchmark"):
        transfer.include_scenarios({}, {}, ["twa"])
