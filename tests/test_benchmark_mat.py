"""benchmarks/mat.py's arithmetic on synthetic run records: time to the baseline's accuracy is never null."""

from __future__ import annotations

import pytest

mat_bench = pytest.importorskip("benchmarks.mat")


def record(arm: str, curve: list[tuple[int, float, float]], flops: float, measure: float = 0.0) -> dict:
    points = [{"step": s, "cpu_seconds": t, "wall_seconds": 2 * t, "accuracy": a} for s, t, a in curve]
    return {
        "arm": arm, "accuracy": curve[-1][2], "curve": points, "backward_flops": flops, "measure_seconds": measure,
        "train_cpu_seconds": curve[-1][1], "train_wall_seconds": 2 * curve[-1][1], "measurements": 3,
        "active_head_fraction": 0.5,
    }  # fmt: skip


def test_time_to_baseline_uses_the_first_crossing_of_the_baselines_final_accuracy():
    base = record("baseline", [(50, 10.0, 0.70), (100, 20.0, 0.80), (150, 30.0, 0.79), (200, 40.0, 0.80)], 10.0)
    mat = record("heads", [(50, 8.0, 0.72), (100, 16.0, 0.81), (150, 24.0, 0.80), (200, 32.0, 0.80)], 7.0, 1.0)
    got = mat_bench.time_to_baseline(base, mat)
    assert got == {"ratio": 16.0 / 20.0, "reached": True, "shortfall_points": 0.0}


def test_a_run_that_never_reaches_the_target_counts_its_whole_time_and_the_shortfall():
    base = record("baseline", [(100, 20.0, 0.78), (200, 40.0, 0.80)], 10.0)
    mat = record("heads", [(100, 15.0, 0.75), (200, 30.0, 0.79)], 7.0, 1.0)
    got = mat_bench.time_to_baseline(base, mat)
    assert got["ratio"] == pytest.approx(30.0 / 40.0) and not got["reached"]
    assert got["shortfall_points"] == pytest.approx(1.0)
    summary = mat_bench.summarize("heads", [(base, mat)])
    assert summary["time_to_baseline_accuracy_ratio"] is not None and not summary["time_to_baseline_accuracy_reached"]
    assert summary["backward_flops_ratio"] == pytest.approx(0.7) and summary["measurement_overhead"] == pytest.approx(
        1 / 60
    )
