"""Online CMD under torchrun with 2 processes (gloo): training finishes, only the main process holds CMD state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "cmd_ddp_script.py"


@pytest.mark.slow
def test_online_cmd_with_two_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(SCRIPT), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    main, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert main == {"ready": True, "snapshots": 8} and other == {"ready": False, "snapshots": 0}
    assert (tmp_path / "cmd_model" / "model.safetensors").is_file()
    assert len(list((tmp_path / "cmd_warmup").iterdir())) == 3
