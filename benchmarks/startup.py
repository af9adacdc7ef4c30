"""Start-up benchmark: what ``import hf_efftrain`` and ``hf-efftrain --help`` cost next to ``import torch``.

Each case runs in a fresh interpreter; the cases are interleaved (one of each per round) so that load on a
shared machine hits them alike. Wall time is measured around the child, peak RSS is the child's own
(``os.wait4``). Reported: medians and the ratios against ``import torch``. Goals (issue 15): import ≤ 1.5× the
time and ≤ 1.3× the RSS of ``import torch``; ``--help`` ≤ 0.5× its time. Writes
``benchmarks/results/startup.json`` and ``.md``::

    python -m benchmarks.startup --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cases() -> dict[str, list[str]]:
    """Case name -> command line; the console script when installed, else the same module run with ``-m``."""
    script = shutil.which("hf-efftrain")
    help_command = [script, "--help"] if script else [sys.executable, "-m", "hf_efftrain.cli", "--help"]
    return {
        "import torch": [sys.executable, "-c", "import torch"],
        "import hf_efftrain": [sys.executable, "-c", "import hf_efftrain"],
        "hf_efftrain.EfficientTrainer": [sys.executable, "-c", "import hf_efftrain; hf_efftrain.EfficientTrainer"],
        "hf-efftrain --help": help_command,
    }


def measure(command: list[str], log: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run of ``command``, this worktree first on the path.

    Linux keeps a child's peak RSS across ``exec``, so the caller must stay small (no torch imported yet).
    With ``log``, the child's stdout goes there and its stderr beside it (``.err``); else both are dropped
    (stderr is kept for the error message).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(log, "w")) if log else subprocess.DEVNULL
        err = files.enter_context(open(log.with_suffix(".err"), "w+")) if log else subprocess.PIPE
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors = log.with_suffix(".err").read_text() if log else child.stderr.read().decode()
            raise RuntimeError(f"{' '.join(command)} failed: {errors[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="Fresh runs of each case (interleaved).")
    args = parser.parse_args(argv)
    commands = cases()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    measure(commands["import torch"])  # warm the file cache once; not counted
    for _ in range(args.repeats):
        for name, command in commands.items():
            samples[name].append(measure(command))
    rows = [
        {
            "case": name,
            "median_seconds": statistics.median(s for s, _ in runs),
            "min_seconds": min(s for s, _ in runs),
            "median_peak_rss_mib": statistics.median(r for _, r in runs),
        }
        for name, runs in samples.items()
    ]
    # Imported only now: the harness loads torch, and a child's peak RSS starts from its parent's at fork time.
    from benchmarks.harness import run_facts, write_result

    by_case = {row["case"]: row for row in rows}
    torch_row = by_case["import torch"]

    def ratio(case: str, key: str) -> float:
        return round(by_case[case][key] / torch_row[key], 3)

    result = {
        "import_time_ratio": ratio("import hf_efftrain", "median_seconds"),
        "import_rss_ratio": ratio("import hf_efftrain", "median_peak_rss_mib"),
        "help_time_ratio": ratio("hf-efftrain --help", "median_seconds"),
        "trainer_time_ratio": ratio("hf_efftrain.EfficientTrainer", "median_seconds"),
        "trainer_rss_ratio": ratio("hf_efftrain.EfficientTrainer", "median_peak_rss_mib"),
        "goals": "import_time_ratio <= 1.5, import_rss_ratio <= 1.3, help_time_ratio <= 0.5",
        "cases": rows,
        "commands": {
            name: " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)) for name, cmd in commands.items()
        },
        "samples": {name: [[round(s, 4), round(r, 1)] for s, r in runs] for name, runs in samples.items()},
        **run_facts(repeats=args.repeats),
    }
    write_result("startup", result, title="Start-up cost against import torch", tables={"Medians per case": rows})


if __name__ == "__main__":
    main()
