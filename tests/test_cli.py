"""The CLI: help and version, user errors as one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import torch
from safetensors.torch import save_file

from hf_efftrain import __version__


def test_version_and_help(run_cli):
    code, out, _ = run_cli(["--version"])
    assert code == 0 and out.strip() == f"hf-efftrain {__version__}"
    code, out, _ = run_cli(["trajectory", "info", "--help"])
    assert code == 0 and "checkpoint" in out


def test_missing_folder_is_one_line_exit_2(run_cli, tmp_path):
    code, _, err = run_cli(["trajectory", "info", str(tmp_path / "missing")])
    assert code == 2
    assert err.strip().count("\n") == 0 and "does not exist" in err and "Traceback" not in err


def test_info_lists_checkpoints(run_cli, tmp_path):
    for step in (10, 2):
        (tmp_path / f"checkpoint-{step}").mkdir()
        save_file({"w": torch.zeros(3, 2)}, str(tmp_path / f"checkpoint-{step}" / "model.safetensors"))
    code, out, _ = run_cli(["trajectory", "info", str(tmp_path)])
    assert code == 0 and "steps: 2, 10" in out and "parameters per checkpoint: 6" in out


def test_console_script_usage_error_exits_2():
    done = subprocess.run(
        [sys.executable, "-m", "hf_efftrain.cli", "trajectory", "info"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Missing argument" in done.stderr and "Traceback" not in done.stderr
