"""Shared plumbing of every benchmark: environment facts, timing, and atomic JSON + Markdown results.

A benchmark measures the method and its baseline side by side in one run and reports ratios; this module
records *where* and *how* it ran so every number in ``benchmarks/results/`` can be traced to a command.
Example::

    result = {"accuracy": 0.81, **run_facts(seeds=[0, 1, 2])}
    write_result("baseline_finetune", result, title="Plain Trainer fine-tuning")
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from hf_efftrain.atomic import write_json, write_text

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def device_description() -> str:
    """A readable description of the machine the numbers come from."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour the numbers depend on."""
    import accelerate
    import transformers

    import hf_efftrain

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "hf_efftrain": hf_efftrain.__version__,
    }


def command_line() -> str:
    """The command that produced the result, as a user would type it."""
    module = sys.modules["__main__"].__spec__
    head = f"python -m {module.name}" if module is not None else f"python {sys.argv[0]}"
    return " ".join([head, *map(shlex.quote, sys.argv[1:])])


def run_facts(**extra: Any) -> dict[str, Any]:
    """command, device, versions and date, plus whatever the benchmark adds (seeds, budgets...)."""
    return {
        "command": command_line(),
        "device": device_description(),
        "versions": versions(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as t: ...`` then ``t["seconds"]``."""
    box: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - start


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_format(v) for v in value)
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of rows that share keys."""
    if not rows:
        return ""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, result: dict[str, Any], title: str, tables: dict[str, list[dict]] | None = None) -> Path:
    """Write ``results/<name>.json`` and ``results/<name>.md`` atomically; return the JSON path."""
    json_path = RESULTS_DIR / f"{name}.json"
    write_json(json_path, result)
    scalars = [{"key": k, "value": v} for k, v in result.items() if not isinstance(v, dict | list)]
    parts = [f"# {title}", "", markdown_table(scalars)]
    for heading, rows in (tables or {}).items():
        parts += ["", f"## {heading}", "", markdown_table(rows)]
    write_text(RESULTS_DIR / f"{name}.md", "\n".join(parts) + "\n")
    print(json.dumps(result, indent=2))
    return json_path
