"""MAT benchmark: plain Trainer vs EfficientTrainer + MAT, MiniLM-L6 fine-tuned on Rotten Tomatoes.

The shared recipe at its real size (max_length 64, batch 32, AdamW 5e-5 linearly decayed, 200 steps), 3 seeds,
the full 2,000-review test split. Every arm shares seeds, data order and step budget. The arms of one seed run
at the same time, each in its own single-threaded process (``benchmarks/mat_runs.py``), so load hits them alike;
time is each process's CPU time (what its wall-clock would be alone on a core; wall-clock is recorded too).
The accuracy curve (validation split, every 25 steps) gives the time to reach the baseline's final validation
accuracy. Backward FLOPs are counted by ``torch.utils.flop_counter`` on a recipe-sized batch under every gate
state a run went through, weighted by the steps each state was in force. Each finished run is kept under
``benchmarks/.work/mat/`` so an interrupted benchmark resumes. Writes ``benchmarks/results/mat.json`` and ``.md``::

    python -m benchmarks.mat                       # all seeds and arms
    python -m benchmarks.mat --run heads --seed 0  # one arm (what the orchestrator starts)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS_DIR, run_facts, write_result
from benchmarks.mat_runs import VARIANTS, run_sentiment_arm
from benchmarks.sentiment import RECIPE

WORK = Path(__file__).resolve().parent / ".work" / "mat"
DEFAULT_ARMS = ["heads", "heads+ffn+stop", "heads+ffn+stop@q0.75"]


def time_to(curve: list[dict], target: float, clock: str) -> float | None:
    """Training seconds at the first check whose accuracy reaches ``target`` (None if never)."""
    return next((p[clock] for p in curve if p["accuracy"] >= target - 1e-12), None)


def time_to_baseline(base: dict, mat: dict, clock: str = "cpu_seconds") -> dict[str, Any]:
    """MAT's time to the baseline's final validation accuracy over the baseline's own time to it.

    When MAT never gets there its whole run stands in (a lower bound on the ratio), flagged as not reached,
    with the shortfall in points: the ratio is never null.
    """
    target = base["curve"][-1]["accuracy"]
    t_base = time_to(base["curve"], target, clock)
    t_mat = time_to(mat["curve"], target, clock)
    reached = t_mat is not None
    best = max(p["accuracy"] for p in mat["curve"])
    return {
        "ratio": (t_mat if reached else mat["curve"][-1][clock]) / t_base,
        "reached": reached,
        "shortfall_points": 0.0 if reached else 100 * (target - best),
    }


def summarize(arm: str, pairs: list[tuple[dict, dict]]) -> dict[str, Any]:
    """The issue's keys for one MAT arm, from per-seed (baseline, arm) records."""
    ttb = [time_to_baseline(b, m) for b, m in pairs]
    ttb_wall = [time_to_baseline(b, m, "wall_seconds") for b, m in pairs]

    def mean_of(values: list[float]) -> float:
        return statistics.mean(values)

    return {
        "arm": arm,
        "baseline_accuracy": mean_of([b["accuracy"] for b, _ in pairs]),
        "mat_accuracy": mean_of([m["accuracy"] for _, m in pairs]),
        "accuracy_delta_points": mean_of([100 * (m["accuracy"] - b["accuracy"]) for b, m in pairs]),
        "time_to_baseline_accuracy_ratio": mean_of([t["ratio"] for t in ttb]),
        "time_to_baseline_accuracy_reached": all(t["reached"] for t in ttb),
        "time_to_baseline_accuracy_ratio_wall": mean_of([t["ratio"] for t in ttb_wall]),
        "backward_flops_ratio": mean_of([m["backward_flops"] / b["backward_flops"] for b, m in pairs]),
        "wall_clock_ratio": mean_of([m["train_wall_seconds"] / b["train_wall_seconds"] for b, m in pairs]),
        "cpu_time_ratio": mean_of([m["train_cpu_seconds"] / b["train_cpu_seconds"] for b, m in pairs]),
        "measurement_overhead": mean_of([m["measure_seconds"] / m["train_wall_seconds"] for _, m in pairs]),
        "measurements": mean_of([m["measurements"] for _, m in pairs]),
        "active_head_fraction": mean_of([m["active_head_fraction"] for _, m in pairs]),
        "per_seed": {
            "baseline_accuracy": [b["accuracy"] for b, _ in pairs],
            "mat_accuracy": [m["accuracy"] for _, m in pairs],
            "time_to_baseline_accuracy_ratio": [t["ratio"] for t in ttb],
            "time_to_baseline_accuracy_reached": [t["reached"] for t in ttb],
            "time_to_baseline_accuracy_shortfall_points": [t["shortfall_points"] for t in ttb],
            "backward_flops_ratio": [m["backward_flops"] / b["backward_flops"] for b, m in pairs],
            "cpu_time_ratio": [m["train_cpu_seconds"] / b["train_cpu_seconds"] for b, m in pairs],
        },
    }


def run_file(arm: str, seed: int, steps: int) -> Path:
    return WORK / f"{arm}-seed{seed}-steps{steps}.json"


def run_seed(seed: int, arms: list[str], opts: argparse.Namespace) -> None:
    """Start every arm of ``seed`` that has no record yet, side by side, and wait for all of them."""
    WORK.mkdir(parents=True, exist_ok=True)
    todo = [arm for arm in ["baseline", *arms] if not run_file(arm, seed, opts.steps).is_file()]
    budget = ["--steps", str(opts.steps), "--lr", str(opts.lr), "--eval-every", str(opts.eval_every)]
    procs = [
        subprocess.Popen([sys.executable, "-m", "benchmarks.mat", "--run", arm, "--seed", str(seed), *budget])
        for arm in todo
    ]
    failed = [arm for arm, proc in zip(todo, procs, strict=True) if proc.wait() != 0]
    if failed:
        raise SystemExit(f"seed {seed}: arms {failed} failed; see their output above")


def headline(arms: list[dict], default: dict) -> dict[str, Any]:
    """The contract keys, from the documented default arm."""
    keys = ["baseline_accuracy", "mat_accuracy", "time_to_baseline_accuracy_ratio", "backward_flops_ratio"]
    keys += ["measurement_overhead", "wall_clock_ratio", "active_head_fraction"]
    result = {k: default[k] for k in keys}
    result["baseline_accuracy_per_seed"] = default["per_seed"]["baseline_accuracy"]
    result["mat_accuracy_per_seed"] = default["per_seed"]["mat_accuracy"]
    result["time_to_baseline_accuracy_ratio_per_seed"] = default["per_seed"]["time_to_baseline_accuracy_ratio"]
    result["time_to_baseline_accuracy_reached"] = default["time_to_baseline_accuracy_reached"]
    result["goals"] = {
        "time_to_baseline_accuracy_ratio_le_0.8": default["time_to_baseline_accuracy_ratio"] <= 0.8,
        "accuracy_ge_baseline_minus_0.5_points": default["accuracy_delta_points"] >= -0.5,
        "backward_flops_ratio_le_0.75": default["backward_flops_ratio"] <= 0.75,
        "measurement_overhead_le_0.05": default["measurement_overhead"] <= 0.05,
    }
    return result


def causal_lm_figures(path: Path) -> dict[str, Any] | None:
    """The causal-LM arm, read from ``python -m benchmarks.causal_lm`` (SmolLM2-135M + LoRA, same steps and data)."""
    if not path.is_file():
        return None
    lm = json.loads(path.read_text())
    if lm.get("lora_mat_eval_loss") is None:
        return None
    return {
        "source": "benchmarks/results/causal_lm.json (lora vs lora+mat arms)",
        "model": lm["model"],
        "seeds": lm["seeds"],
        "baseline_eval_loss": lm["lora_eval_loss"],
        "mat_eval_loss": lm["lora_mat_eval_loss"],
        "eval_loss_ratio": lm["lora_mat_eval_loss"] / lm["lora_eval_loss"],
        "measurement_overhead": lm["lora_mat_measurement_overhead"],
        "backward_flops_ratio": lm["lora_mat_backward_flops_ratio"],
        "wall_clock_ratio": lm["lora_mat_wall_clock_ratio"],
        "kv_group": {
            "mat_eval_loss": lm.get("lora_mat_kv_eval_loss"),
            "backward_flops_ratio": lm.get("lora_mat_kv_backward_flops_ratio"),
            "measurement_overhead": lm.get("lora_mat_kv_measurement_overhead"),
        },
    }


def aggregate(opts: argparse.Namespace) -> None:
    records = {
        (a, s): json.loads(run_file(a, s, opts.steps).read_text()) for a in ["baseline", *opts.arms] for s in opts.seeds
    }
    arms = [summarize(arm, [(records["baseline", s], records[arm, s]) for s in opts.seeds]) for arm in opts.arms]
    default = next(a for a in arms if a["arm"] == opts.default_arm)
    causal_lm = causal_lm_figures(RESULTS_DIR / "causal_lm.json")
    result = {
        "seeds": opts.seeds,
        "steps": opts.steps,
        "max_length": 64,
        **headline(arms, default),
        "default_arm": default["arm"],
        "arms": arms,
        "causal_lm": causal_lm,
        "recipe": {**RECIPE, "max_length": 64, "learning_rate": opts.lr, "max_steps": opts.steps},
        "budget": {"eval_every": opts.eval_every, "curve_split": "validation (1,000)", "test_split": "test (2,000)"},
        "timing": "CPU seconds of each arm's single-threaded process (torch threads 1), arms of a seed run "
        "concurrently; *_wall keys are wall-clock under that shared load",
        "note": opts.note,
        "per_run": [{k: v for k, v in r.items() if k not in ("history", "units")} for r in records.values()],
        "gate_histories": {f"{a}/seed{s}": r["history"] for (a, s), r in records.items() if "history" in r},
        **run_facts(seeds=opts.seeds),
    }
    columns = ["arm", "mat_accuracy", "accuracy_delta_points", "time_to_baseline_accuracy_ratio"]
    columns += ["time_to_baseline_accuracy_reached", "backward_flops_ratio", "cpu_time_ratio", "wall_clock_ratio"]
    columns += ["measurement_overhead", "measurements", "active_head_fraction"]
    table = [{k: a[k] for k in columns} for a in arms]
    write_result(opts.name, result, "MAT vs plain Trainer: MiniLM-L6 on Rotten Tomatoes", tables={"Arms": table})


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(VARIANTS))
    parser.add_argument("--default-arm", default="heads+ffn+stop", help="the arm whose figures are the headline")
    parser.add_argument("--lr", type=float, default=RECIPE["learning_rate"])
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--name", default="mat", help="result file name under benchmarks/results/")
    parser.add_argument("--note", default="", help="free text stored with the result (e.g. the code's commit)")
    parser.add_argument("--run", help="train one arm (baseline or a MAT variant) and store its record")
    parser.add_argument("--seed", type=int, default=0, help="with --run: the seed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    if opts.run:
        row = run_sentiment_arm(opts.run, opts.seed, opts.steps, opts.lr, opts.eval_every)
        WORK.mkdir(parents=True, exist_ok=True)
        run_file(opts.run, opts.seed, opts.steps).write_text(json.dumps(row))
        print(f"{opts.run} seed {opts.seed}: accuracy {row['accuracy']:.4f}, cpu {row['train_cpu_seconds']:.0f} s")
        return
    for seed in opts.seeds:
        run_seed(seed, opts.arms, opts)
    aggregate(opts)


if __name__ == "__main__":
    main()
