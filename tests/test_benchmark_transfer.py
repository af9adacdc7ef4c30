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


def test_a_scenario_split_by_pairs_is_joined_with_means_over_every_pair(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "RESULTS_DIR", tmp_path)
    name = "scenario_3_minilm_head"

    def part(file: str, pairs: list[tuple[int, int]], accuracy: float, date: str) -> None:
        rows = [dict.fromkeys(transfer.KEYS, accuracy) | {"seed_source": a, "seed_target": b} for a, b in pairs]
        summary = {"command": f"cmd {file}", "device": "cpu", "budget": "b", "date": date}
        (tmp_path / f"{file}.json").write_text(json.dumps({name: summary, "per_pair": {name: rows}}))

    part("first", [(0, 1), (1, 2)], 0.7, "2026-12-03T10:00")
    part("second", [(2, 0)], 0.4, "2026-12-03T11:00")
    result, per_pair = {}, {}
    transfer.include_scenarios(result, per_pair, ["first", "second"])
    assert [(r["seed_source"], r["seed_target"]) for r in per_pair[name]] == [(0, 1), (1, 2), (2, 0)]
    assert result[name]["transferred_accuracy"] == pytest.approx(0.6)  # (0.7 + 0.7 + 0.4) / 3
    assert result[name]["command"] == "cmd first ; cmd second" and result[name]["date"] == "2026-12-03T11:00"
    with pytest.raises(SystemExit, match="same pair in more than one file"):
        transfer.include_scenarios({}, {}, ["first", "first"])


def test_including_a_missing_or_foreign_file_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "RESULTS_DIR", tmp_path)
    with pytest.raises(SystemExit, match="--include nothing: .* does not exist"):
        transfer.include_scenarios({}, {}, ["nothing"])
    (tmp_path / "twa.json").write_text(json.dumps({"twa_accuracy": 0.8}))
    with pytest.raises(SystemExit, match="holds no scenario of this benchmark"):
        transfer.include_scenarios({}, {}, ["twa"])


analyze_example = pytest.importorskip("benchmarks.analyze_example")


def test_analyze_example_reads_the_printed_summary_and_puts_the_default_arm_first():
    stdout = 'saving...\n{\n  "checkpoints": 11,\n  "transfer_final_accuracy": 0.71\n}\n'
    assert analyze_example.summary_of(stdout) == {"checkpoints": 11, "transfer_final_accuracy": 0.71}
    rows = [
        {"transfer_steps": 20, "seconds": 300.0, "peak_rss_mb": 4000.0, "transfer_final_accuracy": 0.7},
        {"transfer_steps": 10, "seconds": 200.0, "peak_rss_mb": 3500.0, "transfer_final_accuracy": 0.6},
        {"transfer_steps": 20, "seconds": 320.0, "peak_rss_mb": 4100.0, "transfer_final_accuracy": 0.7},
    ]
    opts = type("Opts", (), {"run_dir": None, "repeats": 2})()
    result = analyze_example.summarize(rows, [20, 10], 90.0, opts, {"device": "cpu"})
    assert result["analyze_seconds"] == 310.0 and result["analyze_peak_rss_mb"] == 4100.0
    assert result["transfer_steps"] == 20 and result["analyze_seconds_T10"] == 200.0
    assert result["seconds_ratio_T20_over_T10"] == 1.55 and result["per_arm"]["T10"]["transfer_final_accuracy"] == 0.6
    assert "run by this script" in result["budget_note"] and result["device"] == "cpu"


def test_timed_children_keep_stdout_in_the_log_and_fail_with_their_stderr(tmp_path):
    """``analyze_example.timed`` runs through ``startup.measure``: stdout kept, a failure is one line naming it."""
    import sys

    seconds, rss, stdout = analyze_example.timed([sys.executable, "-c", "print('{\"a\": 1}')"], tmp_path / "ok.log")
    assert seconds > 0 and rss > 0 and analyze_example.summary_of(stdout) == {"a": 1}
    with pytest.raises(SystemExit, match="failed: .*boom"):
        analyze_example.timed([sys.executable, "-c", "raise SystemExit('boom')"], tmp_path / "bad.log")
