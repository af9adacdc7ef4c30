"""The demo behind ``bash scripts/demo.sh``: fine-tune the real MiniLM-L6 on Rotten Tomatoes with MAT, write the
run's HTML report, and end with a short summary of what the run measured next to the benchmarks' figures.

MAT is the method the benchmarks show at the plain baseline's accuracy (``benchmarks/results/combined.json``):
it skips the backward work of gated attention heads. The summary says what this run skipped, and, from the
benchmark, what that did and did not buy in wall-clock time. Any ``examples/finetune.py`` flag works::

    python examples/demo.py                        # 100 steps, MAT on, report in outputs/demo/report/
    python examples/demo.py --max_steps 300 --twa true
"""

from __future__ import annotations

import json
from pathlib import Path

from hf_efftrain.entrypoint import run_main
from hf_efftrain.finetune import (
    DEMO_DEFAULTS,
    build_classification_trainer,
    finish_run,
    parse_classification_args,
    report_metrics,
)
from hf_efftrain.run_folder import claim_run_folder

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ROOT / "benchmarks" / "results" / "combined.json"
# The demo's own folder is replaced on every run (only files a run writes; anything else there is refused).
DEFAULTS = {**DEMO_DEFAULTS, "output_dir": "outputs/demo", "mat": True, "mat_every": 0.1, "mat_warmup_steps": 0.2}


def benchmark_lines(path: Path = BENCHMARK) -> list[str]:
    """What the combined benchmark measured for MAT against plain fine-tuning (empty when the file is missing)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        arms = {arm["arm"]: arm for arm in result["arms"]}
        plain, mat = arms["plain"], arms["mat"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    seeds = len(result.get("seeds", [])) or "?"
    return [
        f"benchmark ({path.relative_to(ROOT)}: {seeds} seeds, {result['budget']['steps']} steps, "
        f"max_length {result['budget']['max_length']}): accuracy plain "
        f"{plain['accuracy']:.4f} vs MAT {mat['accuracy']:.4f} (within noise); MAT skipped "
        f"{mat['projection_backward_flops_saved']:.0%} of the attention projections' backward work, at "
        f"{mat['train_time_ratio']:.2f}x plain's wall-clock on CPU (its λmax probes cost about what it saved)",
    ]


def summary(metrics: dict, report: Path | None, steps: int) -> str:
    """The lines a user reads at the end: accuracy, what MAT skipped, the benchmark's context, the report."""
    lines = ["", f"== demo summary: MiniLM-L6 on Rotten Tomatoes, {steps} steps, MAT on =="]
    if "eval_accuracy" in metrics:
        lines.append(f"validation accuracy: {metrics['eval_accuracy']:.4f}")
    if "mat_active_fraction" in metrics:
        lines.append(
            f"MAT: {metrics['mat_active_fraction']:.0%} of the heads were still training at the end; "
            f"{metrics['mat_projection_backward_flops_saved']:.0%} of the attention projections' backward FLOPs "
            f"skipped over the run ({metrics['mat_measurements']} λmax measurements)"
        )
    lines += benchmark_lines()
    if report is not None:
        lines.append(f"report: {report}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    script, args = parse_classification_args(DEFAULTS, argv)
    overwrite = script.overwrite_output_dir or args.output_dir == DEFAULTS["output_dir"]
    resume = claim_run_folder(args, "demo.py", overwrite)
    trainer = build_classification_trainer(script, args)
    trainer.train(resume_from_checkpoint=resume)
    metrics = report_metrics(trainer, finish_run(trainer))
    if trainer.is_world_process_zero():
        from hf_efftrain.report import build_report

        page = build_report(args.output_dir)
        print(summary(metrics, page, trainer.state.global_step))
    return metrics


if __name__ == "__main__":
    run_main(main, prog="demo.py")
