"""Benchmark summary: growth's steps ratio with each side at its own best learning rate.

``growth_horizon.json`` trains base, candidates and scratch at the study's peak learning rate (2e-3). A ratio
against an under-tuned scratch model flatters growth, so ``growth_horizon --lr`` re-ran base, Net2Net width (the
best grown model) and scratch at other rates. This reads those result files, picks each side's rate by its
mean final held-out loss over the seeds it has, and measures the steps the grown model at its rate needs,
its base counted, to reach scratch's final loss at scratch's rate. Writes ``benchmarks/results/growth_lr_check.json``::

    python -m benchmarks.growth_lr_check growth_horizon growth_horizon_lr1e-3 growth_horizon_lr4e-3 \\
        growth_horizon_lr8e-3
"""

from __future__ import annotations

import argparse
import json

from benchmarks.growth_summary import curve, steps_to_reach
from benchmarks.harness import RESULTS_DIR, run_facts, write_result

GROWN = "net2net_width"


def rate_row(result: dict) -> dict:
    """One learning rate: base steps, scratch's and the grown model's finals (mean and per seed), the ratio."""
    grown = result["per_candidate"][GROWN]
    return {
        "lr": result["study"]["lr"],
        "seeds": result["seeds"],
        "base_steps": result["bases"]["a"]["steps"],
        "scratch_steps": result["scratch_steps"],
        "scratch_final": result["scratch_final_heldout_loss"],
        "scratch_per_seed_final": result["scratch_per_seed_final"],
        "grown_final": grown["final_heldout_loss"],
        "grown_per_seed_final": grown["per_seed_final"],
        "grown_mean_curve": grown["mean_curve"],
        "steps_ratio_at_this_lr": grown["steps_with_base_ratio"],
    }


def tuned_ratio(rows: list[dict]) -> dict:
    """Each side at the rate with its lowest mean final loss; the grown model's steps (base counted) to reach
    scratch's final there, over scratch's steps."""
    scratch = min(rows, key=lambda r: r["scratch_final"])
    grown = min(rows, key=lambda r: r["grown_final"])
    reach = steps_to_reach(curve(grown["grown_mean_curve"]), scratch["scratch_final"])
    return {
        "scratch_lr": scratch["lr"],
        "scratch_final": scratch["scratch_final"],
        "grown_lr": grown["lr"],
        "grown_final": grown["grown_final"],
        "grown_steps_after_growth_to_reach": reach,
        "steps_to_scratch_final_ratio": None
        if reach is None
        else (grown["base_steps"] + reach) / scratch["scratch_steps"],
        "either_best_at_the_grid_edge": any(
            best["lr"] in (min(r["lr"] for r in rows), max(r["lr"] for r in rows)) for best in (scratch, grown)
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="growth_horizon result files (without .json), one per rate")
    opts = parser.parse_args(argv)
    missing = [name for name in opts.names if not (RESULTS_DIR / f"{name}.json").is_file()]
    if missing:
        name = missing[0]
        parser.error(f"no {RESULTS_DIR}/{name}.json: run `python -m benchmarks.growth_horizon --name {name}` first")
    runs = [json.loads((RESULTS_DIR / f"{name}.json").read_text()) for name in opts.names]
    if any(GROWN not in run.get("per_candidate", {}) for run in runs):
        parser.error(f"every result file must hold {GROWN}'s runs (growth_horizon --candidates {GROWN})")
    rows = sorted((rate_row(run) for run in runs), key=lambda r: r["lr"])
    tuned = tuned_ratio(rows)
    result = {
        "grown_model": GROWN,
        "files": opts.names,
        "per_lr": rows,
        "tuned": tuned,
        "steps_to_scratch_final_ratio": tuned["steps_to_scratch_final_ratio"],
        "targets": {
            "grown_reaches_scratch_final_in_le_0.5_of_steps": tuned["steps_to_scratch_final_ratio"] is not None
            and tuned["steps_to_scratch_final_ratio"] <= 0.5
        },
        "seed_0_only": [r["lr"] for r in rows if r["seeds"] == [0]],
        "budget_note": "Assembled from the files named; each file's own command, budget and times are in it.",
        **run_facts(),
    }
    table = [
        {
            "lr": r["lr"],
            "seeds": len(r["seeds"]),
            "base steps": r["base_steps"],
            "scratch final": round(r["scratch_final"], 4),
            "scratch seed 0": round(r["scratch_per_seed_final"]["0"], 4),
            f"{GROWN} final": round(r["grown_final"], 4),
            f"{GROWN} seed 0": round(r["grown_per_seed_final"]["0"], 4),
            "steps ratio at this lr": r["steps_ratio_at_this_lr"],
        }
        for r in rows
    ]
    write_result(
        "growth_lr_check", result, "Growth against scratch, each at its own learning rate", {"Per learning rate": table}
    )


if __name__ == "__main__":
    main()
