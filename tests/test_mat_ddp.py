"""Under torchrun (2 processes, gloo) both ranks measure, average λmax and therefore gate identically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("_mat_ddp_worker.py")


@pytest.mark.slow
def test_two_ranks_have_identical_gates(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(WORKER), str(tmp_path)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    # every 2 steps until the gates stop changing at step 6; the doubled interval puts the next probe past the run
    assert [h["step"] for h in ranks[0]["history"]] == [h["step"] for h in ranks[1]["history"]] == [2, 4, 6]
    assert ranks[0]["history"] == ranks[1]["history"]  # same λmax (all-reduced) and same gates on both ranks
    assert not all(ranks[0]["history"][-1]["active"])  # gating really happened
    assert ranks[0]["q_sum"] == ranks[1]["q_sum"]  # replicas stayed in sync
