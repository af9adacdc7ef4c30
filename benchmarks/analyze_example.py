"""Benchmark: how long the README's trajectory analysis takes at its defaults, and what T buys.

The README's journey fine-tunes with MAT and TWA on 2 processes, keeping a snapshot every 10 steps, then runs
``python examples/analyze_trajectory.py --run_dir outputs/finetune`` (post-hoc CMD, then a FGMT transfer of the
trajectory onto the example's default target, the run's first checkpoint with its task head re-drawn, each
point scored on 500 validation reviews). This script runs that
fine-tuning once, exactly as the README writes it, then times the analysis in fresh processes for each
``--transfer-steps`` value (the first is the default, ``TransferConfig().steps``), interleaved over ``--repeats``
rounds so that load hits every arm alike: wall seconds, the child's peak RSS, and the accuracy the transfer
reaches. Writes ``benchmarks/results/analyze_example.json`` and ``.md``::

    python -m benchmarks.analyze_example                       # T = 20 (default) and T = 10, 1 round
    python -m benchmarks.analyze_example --run-dir outputs/finetune --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.startup import measure

ROOT = Path(__file__).resolve().parents[1]
FINETUNE = [
    "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "examples/finetune.py",
    "--mat", "true", "--twa", "true", "--snapshot_every", "10",
]  # fmt: skip


def timed(command: list[str], log: Path) -> tuple[float, float, str]:
    """Wall seconds, the child's own peak RSS (MiB) and its stdout (:func:`benchmarks.startup.measure`)."""
    try:
        seconds, rss = measure(command, log)
    except RuntimeError as error:
        raise SystemExit(str(error)) from None
    return seconds, rss, log.read_text()


def summary_of(stdout: str) -> dict:
    """The JSON summary ``analyze_trajectory.py`` prints last."""
    return json.loads(stdout[stdout.rindex("\n{") + 1 :] if "\n{" in stdout else stdout[stdout.index("{") :])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="an existing run of the README's fine-tuning (default: run it)")
    parser.add_argument("--transfer-steps", type=int, nargs="+", help="T of each arm (default: the default T, then 10)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every arm, interleaved")
    parser.add_argument("--name", default="analyze_example")
    opts = parser.parse_args(argv)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # inherited by the timed children
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, finetune_seconds = opts.run_dir, None
        if run_dir is None:
            run_dir = Path(tmp) / "finetune"
            command = [sys.executable, *FINETUNE, "--output_dir", str(run_dir)]
            finetune_seconds, _, _ = timed(command, Path(tmp) / "finetune.log")
            print(f"fine-tuning (README command): {finetune_seconds:.0f} s", flush=True)
        default = _default_transfer_steps()
        arms = opts.transfer_steps or [default, 10]
        rows = []
        for repeat in range(opts.repeats):
            shift = repeat % len(arms)
            for steps in arms[shift:] + arms[:shift]:
                out = Path(tmp) / f"analysis-T{steps}-{repeat}"
                command = [sys.executable, "examples/analyze_trajectory.py", "--run_dir", str(run_dir)]
                command += ["--output_dir", str(out)]
                command += ["--transfer_steps", str(steps)] if steps != default else []  # the README's command
                seconds, rss, stdout = timed(command, Path(tmp) / f"{out.name}.log")
                summary = summary_of(stdout)
                rows.append({"transfer_steps": steps, "repeat": repeat, "seconds": seconds, "peak_rss_mb": rss,
                             **{k: v for k, v in summary.items() if isinstance(v, (int, float))}})  # fmt: skip
                print(rows[-1], flush=True)
    from benchmarks.harness import run_facts, write_result  # imports torch: only after the timed children

    result = summarize(rows, arms, finetune_seconds, opts, run_facts())
    write_result(opts.name, result, "The README's trajectory analysis at its defaults", {"runs": rows})


def _default_transfer_steps() -> int:
    """``TransferConfig().steps``, read in a child: importing the package here would inflate the children's RSS."""
    code = "from hf_efftrain.transfer import TransferConfig; print(TransferConfig().steps)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(done.stdout.strip())


def summarize(rows: list[dict], arms: list[int], finetune_seconds: float | None, opts, facts: dict) -> dict:
    """Per arm: mean seconds, peak RSS and transferred accuracy; the default arm's figures under plain names."""

    def arm(steps: int) -> dict:
        mine = [r for r in rows if r["transfer_steps"] == steps]
        out = {
            "seconds": statistics.mean(r["seconds"] for r in mine),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
        }
        for key in ("transfer_init_accuracy", "transfer_final_accuracy"):
            if all(key in r for r in mine):
                out[key] = statistics.mean(r[key] for r in mine)
        return out

    per_arm = {f"T{steps}": arm(steps) for steps in arms}
    default = per_arm[f"T{arms[0]}"]
    result = {
        "analyze_seconds": default["seconds"],
        "analyze_peak_rss_mb": default["peak_rss_mb"],
        "transfer_steps": arms[0],
        **{f"analyze_seconds_T{steps}": per_arm[f"T{steps}"]["seconds"] for steps in arms[1:]},
        **{
            f"seconds_ratio_T{arms[0]}_over_T{steps}": default["seconds"] / per_arm[f"T{steps}"]["seconds"]
            for steps in arms[1:]
        },  # fmt: skip
        "per_arm": per_arm,
        "finetune_seconds": finetune_seconds,
        "budget_note": (
            "examples/analyze_trajectory.py at its defaults (post-hoc CMD, FGMT transfer onto the run's first "
            "checkpoint with its task head re-drawn, 500 validation reviews scored per point) on the run of the "
            f"README's fine-tuning command ({'run by this script' if finetune_seconds else f'given: {opts.run_dir}'}); "
            f"each analysis in a fresh process, --transfer_steps {arms} in rotation, {opts.repeats} round(s); wall "
            "time includes start-up, loading, CMD, transfer, scoring and saving."
        ),
        **facts,
    }
    return result


if __name__ == "__main__":
    main()
