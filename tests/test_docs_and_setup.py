"""The docs build without warnings, the set-up is idempotent, and the demo runs end to end."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    pages = {p.parent.name: p.read_text() for p in (tmp_path / "site").glob("*/index.html")}
    assert {"api", "cli", "faq", "mat", "growth", "twa", "cmd", "transfer"} <= set(pages)
    for name, html in pages.items():  # every generation marker was expanded by the hook
        assert not re.search(r"<!--\s*(cli-reference|api-reference|arguments|benchmark)", html), name
    assert "hf-efftrain cmd reconstruct" in pages["cli"] and "hf_efftrain.twa.train_twa" in pages["api"]
    assert "Generated from <code>benchmarks/results/mat.json</code>" in pages["mat"]


def test_readme_quick_start_has_exactly_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in quick_start.splitlines() if line.startswith("bash ")]
    assert [c.split("#")[0].strip() for c in commands] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_setup_is_idempotent_and_fast_when_done():
    subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, check=True, capture_output=True)
    assert time.perf_counter() - start < 30


@pytest.mark.slow
def test_demo_runs_mat_on_real_minilm_writes_the_report_and_summarizes(tmp_path):
    argv = ["examples/demo.py", "--max_steps", "4", "--mat_every", "2", "--mat_warmup_steps", "1"]
    argv += ["--max_eval_samples", "64", "--output_dir", str(tmp_path / "demo"), "--disable_tqdm", "true"]
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"eval_accuracy"' in done.stdout and "== demo summary" in done.stdout
    assert "of the attention projections' backward FLOPs skipped" in done.stdout
    assert "benchmark (benchmarks/results/combined.json" in done.stdout
    assert f"report: {tmp_path / 'demo' / 'report' / 'report.html'}" in done.stdout
    assert (tmp_path / "demo" / "report" / "report.html").is_file()
    again = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite_output_dir true" in again.stderr  # only its own folder is replaced
