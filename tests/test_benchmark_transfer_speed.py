"""benchmarks/transfer_speed.py's bookkeeping: the controlled timing becomes transfer.json's contract figure."""

from __future__ import annotations

import json

import pytest

transfer_speed = pytest.importorskip("benchmarks.transfer_speed")
harness = pytest.importorskip("benchmarks.harness")


def test_the_controlled_timing_replaces_the_figure_and_the_scenario_runs_mean_stays_beside(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "RESULTS_DIR", tmp_path)
    speed = {"minilm_seconds_per_step": 9.5, "command": "python -m benchmarks.transfer_speed", "date": "today"}
    (tmp_path / "transfer_speed.json").write_text(json.dumps({**speed, "device": "cpu: 2 cores"}))
    rows = [{"seed_source": 0, "seed_target": 1, "transferred_accuracy": 0.7}]
    transfer = {"minilm_seconds_per_step": 60.2, "per_pair": {"scenario_3_minilm_head": rows}, "command": "x"}
    (tmp_path / "transfer.json").write_text(json.dumps(transfer))
    for _ in range(2):  # a second link must not take the linked figure for the scenario runs' own
        transfer_speed.link_transfer_result()
        result = json.loads((tmp_path / "transfer.json").read_text())
        assert result["minilm_seconds_per_step"] == 9.5
        assert result["minilm_seconds_per_step_in_scenario_runs"] == 60.2
        assert "python -m benchmarks.transfer_speed" in result["minilm_seconds_per_step_source"]
        assert result["per_pair"] == transfer["per_pair"] and result["command"] == "x"
    markdown = (tmp_path / "transfer.md").read_text()
    assert "| minilm_seconds_per_step | 9.5 |" in markdown and "## scenario_3_minilm_head" in markdown


def test_smollm2_summary_splits_gradients_from_matching():
    runs = [
        {"code": "new", "step": 1, "seconds": 50.0, "matching_seconds": 40.0, "gradient_seconds": 10.0},
        {"code": "new", "step": 2, "seconds": 30.0, "matching_seconds": 22.0, "gradient_seconds": 8.0},
    ]
    opts = type("Opts", (), {"new": ".", "load": "idle", "repeats": 1, "steps": 2, "transfer_steps": 10})()
    opts.batch_size, opts.finetune_steps = 8, 4
    summary = transfer_speed.summarize_smollm2(runs, opts, {"device": "cpu"})
    assert summary["smollm2_seconds_per_step"] == 40.0 and summary["smollm2_seconds_per_step_after_the_first"] == 30.0
    assert summary["smollm2_matching_seconds_per_step"] == 31.0 and summary["smollm2_gradient_seconds_per_step"] == 9.0
    assert "1 batch of 8 x 64 Wikipedia tokens" in summary["budget_note"] and summary["device"] == "cpu"
    assert summary["prior"] == "plain" and "smollm2_seconds_per_step_plain" not in summary
    prior = {"stay": 1.0, "at": "identity", "warm_start": True, "similarity": 0.999, "related": True}
    runs = [r | {"resolved_prior": prior} for r in runs] + [{**runs[0], "code": "new_plain", "seconds": 60.0}]
    summary = transfer_speed.summarize_smollm2(runs, opts, {"device": "cpu"})
    assert summary["smollm2_seconds_per_step"] == 40.0 and summary["smollm2_seconds_per_step_plain"] == 60.0
    assert summary["prior"] == prior and "stay 1 at the identity" in summary["budget_note"]


def test_a_replaced_run_keeps_its_own_headline_figures(tmp_path, monkeypatch):
    """Each mode writes different keys; the run a new one replaces keeps its scalars, whatever the mode."""
    monkeypatch.setattr(harness, "RESULTS_DIR", tmp_path)
    older = {"smollm2_seconds_per_step": 21.2, "device": "cpu", "date": "then"}
    old = {"smollm2_seconds_per_step": 23.0, "device": "cpu: Xeon", "date": "now", "previous_runs": [older]}
    (tmp_path / "transfer_speed_smollm2.json").write_text(json.dumps({**old, "versions": {"torch": "2"}}))
    kept = transfer_speed._previous_runs("transfer_speed_smollm2")
    assert kept == [{"smollm2_seconds_per_step": 23.0, "device": "cpu: Xeon", "date": "now"}, older]


def test_memory_summary_reports_the_peak_and_the_growth_per_step():
    rows = [
        {"repeat": 0, "step": 1, "rss_mb": 1000.0, "run_peak_rss_mb": 2500.0},
        {"repeat": 0, "step": 2, "rss_mb": 1400.0, "run_peak_rss_mb": 2500.0},
        {"repeat": 0, "step": 3, "rss_mb": 1800.0, "run_peak_rss_mb": 2500.0},
        {"repeat": 1, "step": 1, "rss_mb": 900.0, "run_peak_rss_mb": 2000.0},
        {"repeat": 1, "step": 2, "rss_mb": 1100.0, "run_peak_rss_mb": 2000.0},
    ]
    assert transfer_speed._memory(rows, "smollm2_") == {
        "smollm2_peak_rss_mb": 2500.0,
        "smollm2_rss_growth_mb_per_step": 300.0,  # (400 + 200) / 2
    }
    assert transfer_speed._memory([{"step": 1, "seconds": 3.0}]) == {}  # runs recorded before RSS was


def test_minilm_summary_times_the_default_prior_and_keeps_plain_matching_beside(monkeypatch):
    monkeypatch.setattr(transfer_speed, "assignment_seconds", lambda: {})
    prior = {"stay": 1.0, "at": "identity", "warm_start": True, "similarity": 0.99, "related": True}

    def row(code: str, seconds: float, step: int = 1) -> dict:
        timing = {"seconds": seconds, "matching_seconds": seconds - 2.0, "gradient_seconds": 2.0}
        facts = {"permutation": code, "resolved_prior": prior if code == "new" else None}
        return {"code": code, "step": step, **timing, **facts}

    runs = [row("new", 4.0), row("new", 6.0, 2), row("old", 70.0), row("new_plain", 8.0)]
    opts = type("Opts", (), {"old": ".", "new": ".", "load": "idle", "repeats": 1, "steps": 2, "sweeps": [100]})()
    opts.finetune_steps = 16
    summary = transfer_speed.summarize(runs, opts, {"device": "cpu"})
    assert summary["minilm_seconds_per_step"] == 5.0 and summary["speedup"] == 14.0
    assert summary["minilm_seconds_per_step_plain"] == 8.0 and summary["speedup_plain"] == 70.0 / 8.0
    assert summary["prior"] == prior
    assert "stay 1 at the identity permutation, warm-started" in summary["budget_note"]
    plain_only = transfer_speed.summarize([r | {"resolved_prior": None} for r in runs[:3]], opts, {"device": "cpu"})
    assert plain_only["prior"] == "plain" and "minilm_seconds_per_step_plain" not in plain_only
