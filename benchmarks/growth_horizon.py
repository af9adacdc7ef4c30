"""Benchmark: growth against scratch when the run after growth is longer than the base's pre-training.

In ``growth.json`` a grown model pays its base's B steps, trains G = 400 steps after growth, and is compared with
scratch trained B + G steps. Its ratio (B + g)/(B + G), g its steps after growth to reach scratch's final loss,
is at least B/(B + G) = 0.70 even at g = 0: the issue's ≤ 0.5 needs G ≥ B + 2g, a run after growth longer than
the base's pre-training. This measures that regime: the base(s) pre-trained as in the study, the chosen
candidates trained ``--after`` steps after growth, scratch trained B + ``--after`` steps, each with its own cosine
schedule, the study's data, recipe and held-out tokens, 3 seeds. Writes ``benchmarks/results/growth_horizon.json``::

    python -m benchmarks.growth_horizon --after 1600 --jobs 2    # the seven single-base candidates
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks.growth import WORK_ROOT, one_core_per_process, run_jobs
from benchmarks.growth_jobs import BASE_SEEDS, Job, read_records
from benchmarks.growth_scratch_long import compare
from benchmarks.growth_setup import BUILDERS, CANDIDATES, SMOKE, TWO_BASES, Study, prepare_data
from benchmarks.growth_summary import candidate_table, curve, mean_curve, measured_lags, ranking_at, std
from benchmarks.harness import run_facts, stopwatch, write_result

TITLE = "Growth against scratch with a long run after growth (Llama 6 -> 12 layers, causal LM)"


def candidate_summary(records: dict[str, dict], names: list[str], seeds: tuple[int, ...]) -> dict[str, dict]:
    """Per candidate: the seed-mean held-out curve, final loss and its std over seeds, parameters."""
    out = {}
    for name in names:
        runs = {seed: records[Job("candidate", name, seed).key] for seed in seeds}
        curves = {seed: curve(r["losses"]) for seed, r in runs.items()}
        means = mean_curve(curves)
        last = max(means)
        out[name] = {
            "mean_curve": {str(k): v for k, v in means.items()},
            "final_heldout_loss": means[last],
            "final_std": std([c[last] for c in curves.values()]),
            "per_seed_final": {str(s): c[last] for s, c in curves.items()},
            "params": next(iter(runs.values()))["params"],
        }
    return out


def ranking(study: Study, records: dict[str, dict]) -> dict:
    """LAG at this horizon, over the candidates run (at least 3): Spearman of the seed-mean loss at each measured
    step k (0 = right after growth) against the seed-mean final loss, and the finals' spread in seed std."""
    table = candidate_table(study, records)
    means = {name: mean_curve(per_seed) for name, per_seed in table.items()}
    finals = [m[study.steps] for m in means.values()]
    seed_std = statistics.fmean(std([c[study.steps] for c in per_seed.values()]) for per_seed in table.values())
    steps = sorted({*measured_lags(study), *(k for k in (50, 100, 150) if k <= study.steps // 10)})
    headline, init = ranking_at(means, study.lag, study.steps), ranking_at(means, 0, study.steps)
    return {
        "spearman_lag_vs_final": headline["spearman"],
        "spearman_init_vs_final": init["spearman"],
        "lag_steps": study.lag,
        "lag_cost_fraction": study.lag / study.steps,
        "lag_pick": headline["pick"],
        "best_final": min(means, key=lambda n: means[n][study.steps]),
        "lag_pick_final_gap_nats": headline["pick_final_gap_nats"],
        "final_spread_over_seed_std": (max(finals) - min(finals)) / seed_std if seed_std else None,
        "spearman_vs_k": [ranking_at(means, k, study.steps) for k in steps],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=int, default=1600, help="G: training steps after growth")
    single_base = [name for name in CANDIDATES if name not in TWO_BASES]  # fusion pays both bases: floor 0.71
    parser.add_argument("--candidates", nargs="+", default=single_base, choices=sorted(BUILDERS))
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (one single-threaded job each)")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="toy sizes: proves the pipeline end to end")
    parser.add_argument("--budget-note", default="")
    parser.add_argument("--name", default="growth_horizon", help="result file name under benchmarks/results/")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate of every run, base included")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds of the candidates and scratch")
    parser.add_argument(
        "--warmup-after-growth", type=float, default=None, help="the candidates' warm-up: steps, or a fraction < 1"
    )
    opts = parser.parse_args(argv)
    preset = SMOKE if opts.smoke else Study()
    study = replace(
        preset,
        steps=opts.after,
        candidates=tuple(opts.candidates),
        lr=opts.lr or preset.lr,
        seeds=tuple(opts.seeds or preset.seeds),
        warmup_after_growth=opts.warmup_after_growth,
    )
    work = opts.work_dir or WORK_ROOT / f"growth-horizon-{study.key()}"
    one_core_per_process()
    prepare_data(study, work)
    letters = ("a", "b") if any(n in TWO_BASES for n in opts.candidates) else ("a",)
    bases = [Job("base", x, BASE_SEEDS[x]) for x in letters]
    with stopwatch() as clock:
        failed = run_jobs(study, bases, work, opts.jobs)
        if failed:
            raise SystemExit(f"failed: {failed} (logs in {work / 'logs'})")
        base_records = read_records(work, bases)
        base = {x: base_records[Job("base", x, BASE_SEEDS[x]).key] for x in letters}
        scratch_steps = base["a"]["steps"] + opts.after
        jobs = [Job("candidate", name, seed) for name in opts.candidates for seed in study.seeds]
        jobs += [Job("scratch_long", str(scratch_steps), seed) for seed in study.seeds]
        failed = run_jobs(study, bases + jobs, work, opts.jobs)
    if failed:
        raise SystemExit(f"failed: {failed} (logs in {work / 'logs'})")
    records = read_records(work, jobs)
    long_runs = {seed: records[Job("scratch_long", str(scratch_steps), seed).key] for seed in study.seeds}
    summary = {
        "bases": {x: {"steps": r["steps"], "flops": r["flops"]} for x, r in base.items()},
        "candidates": candidate_summary(records, opts.candidates, study.seeds),
    }
    section = compare(summary, long_runs, scratch_steps, study.batch * study.block)
    for name, row in section["candidates"].items():
        row["final_std"] = summary["candidates"][name]["final_std"]
        row["per_seed_final"] = summary["candidates"][name]["per_seed_final"]
        row["mean_curve"] = summary["candidates"][name]["mean_curve"]
    lag = ranking(study, records) if len(opts.candidates) >= 3 else None
    best = section["best_grown_steps_with_base_ratio"]
    result = {
        "seeds": list(study.seeds),
        "candidates": opts.candidates,
        "steps_after_growth": opts.after,
        "bases": summary["bases"],
        "scratch_steps": scratch_steps,
        "steps_to_scratch_final_ratio": best,
        "ratio_floor_at_step_0": base["a"]["steps"] / scratch_steps,
        **{k: v for k, v in section.items() if k != "candidates"},
        "per_candidate": section["candidates"],
        **({"ranking": lag} if lag else {}),
        "targets": {
            "grown_reaches_scratch_final_in_le_0.5_of_steps": best is not None and best <= 0.5,
            **({"spearman_lag_ge_0.8_and_above_init": _lag_goal(lag)} if lag else {}),
        },
        "study": asdict(study),
        "wall_seconds": round(clock["seconds"], 1),
        "cpu_seconds": {key: round(r["cpu_seconds"], 1) for key, r in {**base_records, **records}.items()},
        "budget_note": (
            f"{opts.jobs} single-threaded workers. The study's sizes and recipe (Study() with steps={opts.after}"
            f"{', smoke sizes' if opts.smoke else ''}); "
            f"bases pre-trained afresh here until their training loss flattened; held-out loss every "
            f"{study.eval_every} steps on {study.eval_blocks} blocks of {study.block} tokens. " + opts.budget_note
        ),
        **run_facts(),
    }
    rows = [
        {"candidate": name, **{k: v for k, v in row.items() if k not in ("mean_curve", "per_seed_final")}}
        for name, row in section["candidates"].items()
    ]
    write_result(opts.name, result, TITLE, {"Grown against scratch trained base + run after growth": rows})


def _lag_goal(lag: dict) -> bool:
    rho, init = lag["spearman_lag_vs_final"], lag["spearman_init_vs_final"]
    return rho is not None and rho >= 0.8 and (init is None or rho > init)


if __name__ == "__main__":
    main()
