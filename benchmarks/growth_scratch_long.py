"""Benchmark: a scratch model trained as long as growth's whole pipeline (base + growth), against the grown models.

``growth.json``'s scratch arm trains the 12-layer model the same 400 steps as the candidates get after growth, so
every grown model, which starts from a base pre-trained ~900 steps, is ahead of it before its first step. This
trains the same scratch model (same initialization seeds, data order, held-out tokens, recipe, its own cosine
schedule) for a base's steps plus the run after growth, and asks what the issue asks: how many steps (and FLOPs)
the grown models need, their bases counted, to reach that scratch model's final held-out loss. The data folder is
rebuilt from the study's settings; each seed's step-0 loss must equal the one ``growth.json`` recorded for the
same scratch seed, which proves the tokenizer, the held-out blocks and the initialization are the study's own.
Updates ``benchmarks/results/growth.json`` (``growth_vs_scratch_long``; the contract keys ``scratch_steps`` and
``steps_to_scratch_final_ratio`` then compare with this run; the 400-step comparison stays in
``growth_vs_scratch``)::

    python -m benchmarks.growth_scratch_long --jobs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

from benchmarks.growth import WORK_ROOT, one_core_per_process, run_jobs
from benchmarks.growth_jobs import Job, read_records
from benchmarks.growth_setup import TWO_BASES, Study, prepare_data
from benchmarks.growth_summary import curve, mean_curve, std, steps_to_reach
from benchmarks.harness import RESULTS_DIR, run_facts, stopwatch, write_result


def compare(result: dict, long_runs: dict[int, dict], steps: int, tokens_per_step: int) -> dict:
    """Every candidate's steps and FLOPs (bases counted) to reach the long scratch run's final loss, as ratios.

    A candidate's training FLOPs per step are 6 × its parameters × tokens per step (embeddings are tied), the
    formula of ``growth_setup.train_flops_per_token``; a base's FLOPs are its record's."""
    per_seed = {seed: curve(r["losses"]) for seed, r in long_runs.items()}
    means = mean_curve(per_seed)
    final = means[steps]
    flops_per_step = next(iter(long_runs.values()))["flops_per_step"]
    scratch_flops = steps * flops_per_step
    bases, rows = result["bases"], {}
    for name, cand in result["candidates"].items():
        letters = ("a", "b") if name in TWO_BASES else ("a",)
        reach = steps_to_reach(curve(cand["mean_curve"]), final)
        base_steps = sum(bases[x]["steps"] for x in letters)
        base_flops = sum(bases[x]["flops"] for x in letters)
        rows[name] = {
            "final_heldout_loss": cand["final_heldout_loss"],
            "minus_scratch_long_final": cand["final_heldout_loss"] - final,
            "steps_after_growth_to_reach": reach,
            "steps_with_base_ratio": None if reach is None else (base_steps + reach) / steps,
            "flops_with_base_ratio": None
            if reach is None
            else (base_flops + reach * 6.0 * cand["params"] * tokens_per_step) / scratch_flops,
        }
    best = min(rows, key=lambda n: rows[n]["final_heldout_loss"])
    reached = [n for n in rows if rows[n]["flops_with_base_ratio"] is not None]
    cheapest = min(reached, key=lambda n: rows[n]["flops_with_base_ratio"]) if reached else None
    return {
        "scratch_steps": steps,
        "scratch_final_heldout_loss": final,
        "scratch_final_std": std([c[steps] for c in per_seed.values()]),
        "scratch_per_seed_final": {str(s): c[steps] for s, c in per_seed.items()},
        "scratch_mean_curve": {str(k): v for k, v in means.items()},
        "scratch_flops_per_step": flops_per_step,
        "best_grown": best,
        "best_grown_steps_with_base_ratio": rows[best]["steps_with_base_ratio"],
        "best_grown_flops_with_base_ratio": rows[best]["flops_with_base_ratio"],
        "cheapest_grown": cheapest,
        "candidates": rows,
    }


def check_same_setup(result: dict, long_runs: dict[int, dict]) -> dict[str, float]:
    """Step-0 held-out loss of each seed against growth.json's scratch run of the same seed (must be equal)."""
    gaps = {}
    for seed, record in long_runs.items():
        recorded = result["scratch"]["per_seed"][str(seed)]["heldout_curve"]["0"]
        gaps[str(seed)] = abs(curve(record["losses"])[0] - recorded)
    if max(gaps.values()) > 1e-4:
        raise SystemExit(f"step-0 losses differ from growth.json's scratch run ({gaps}): not the study's data")
    return gaps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (one single-threaded job each)")
    parser.add_argument("--steps", type=int, default=None, help="scratch steps (default: base a's steps + 400)")
    parser.add_argument("--work-dir", type=Path, default=None)
    opts = parser.parse_args(argv)
    path = RESULTS_DIR / "growth.json"
    result = json.loads(path.read_text())
    study = Study()
    if result["study"] != json.loads(json.dumps(asdict(study))):
        raise SystemExit("growth.json was produced with other settings than Study()'s defaults; rerun it first")
    steps = opts.steps or result["bases"]["a"]["steps"] + study.steps
    work = opts.work_dir or WORK_ROOT / f"growth-{study.key()}"
    one_core_per_process()
    prepare_data(study, work)
    jobs = [Job("scratch_long", str(steps), seed) for seed in study.seeds]
    with stopwatch() as clock:
        failed = run_jobs(study, jobs, work, opts.jobs)
    if failed:
        raise SystemExit(f"failed: {failed} (logs in {work / 'logs'})")
    records = read_records(work, jobs)
    long_runs = {job.seed: records[job.key] for job in jobs}
    gaps = check_same_setup(result, long_runs)
    section = compare(result, long_runs, steps, study.batch * study.block)
    cpu = [r["cpu_seconds"] for r in long_runs.values()]
    section.update(
        step_0_loss_gap_to_growth_json=gaps,
        command="python -m benchmarks.growth_scratch_long " + " ".join(argv if argv is not None else sys.argv[1:]),
        wall_seconds=round(clock["seconds"], 1),
        cpu_seconds_per_seed=statistics.fmean(cpu),
        **{k: v for k, v in run_facts().items() if k in ("device", "versions", "date")},
    )
    result["growth_vs_scratch_long"] = section
    result["scratch_steps"] = steps
    result["steps_to_scratch_final_ratio"] = section["best_grown_steps_with_base_ratio"]
    result["targets"]["grown_reaches_scratch_final_in_le_0.5_of_steps"] = (
        section["best_grown_steps_with_base_ratio"] is not None and section["best_grown_steps_with_base_ratio"] <= 0.5
    )
    result["targets_met"] = result["targets"]
    title = "LAG growth study (Llama 6 -> 12 layers, causal LM)"
    write_result("growth", result, title, _tables(result))


def _tables(result: dict) -> dict[str, list[dict]]:
    from benchmarks.growth_summary import tables

    rows = [{"candidate": name, **row} for name, row in result["growth_vs_scratch_long"]["candidates"].items()]
    return {**tables(result), "Against scratch trained as long as base + growth": rows}


if __name__ == "__main__":
    main()
