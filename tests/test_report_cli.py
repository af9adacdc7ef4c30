"""``hf-efftrain report``: prints the page path (exit 0); user errors are one line on stderr, exit 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _mat_only_run(folder):
    """A run folder as MAT leaves it (two measurements of 4 heads), without training anything."""
    folder.mkdir()
    lam, active = [1e-6 * (h + 1) for h in range(4)], [h > 1 for h in range(4)]
    history = [{"step": s, "lambda": lam, "active": active} for s in (2, 4)]
    record = {"config": {"every": 2}, "units": [f"L0.H{h}" for h in range(4)], "history": history, "measurements": 2}
    (folder / "mat_history.json").write_text(json.dumps(record))
    logs = [{"step": s, "loss": 0.7 - 0.01 * s} for s in range(1, 5)] + [{"step": 4, "eval_loss": 0.6}]
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 4, "max_steps": 4, "log_history": logs}))


@pytest.mark.parametrize(("fmt", "page"), [("html", "report.html"), ("markdown", "report.md")])
def test_prints_the_page_path(tmp_path, run_cli, fmt, page):
    _mat_only_run(tmp_path / "run")
    code, out, err = run_cli(["report", str(tmp_path / "run"), "--format", fmt, "--out", str(tmp_path / "r")])
    assert code in (0, None) and out.strip() == str(tmp_path / "r" / page)
    text = (tmp_path / "r" / page).read_text()
    assert "| active modules | 2 / 4 |" in text or "<td>active modules</td><td>2 / 4</td>" in text
    assert {p.name for p in (tmp_path / "r").iterdir()} >= {page, "training.png", "mat_lambda_last.png"}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "nothing to report"),
        ("corrupt", "trainer_state.json is not valid JSON"),
        ("format", "unknown report format 'pdf'"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, run_cli, setup, message):
    run = tmp_path / "run"
    if setup != "missing":
        run.mkdir()
    if setup == "corrupt":
        (run / "trainer_state.json").write_text("{not json")
    args = ["report", str(run)] + (["--format", "pdf"] if setup == "format" else [])
    code, out, err = run_cli(args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (run / "report").exists() and not any(p.name.startswith(".") for p in tmp_path.rglob("*"))


def test_console_script_reports_a_run(tmp_path):
    _mat_only_run(tmp_path / "run")
    done = subprocess.run(
        [sys.executable, "-m", "hf_efftrain.cli", "report", str(tmp_path / "run")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "run" / "report" / "report.html")
