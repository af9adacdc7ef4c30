"""Online and embedded CMD under torchrun with 2 processes (gloo).

Online CMD: only the main process holds the CMD state. Embedded CMD: both processes embed the same tensors at
the same steps, those tensors get no gradient on either process, and the two processes end with the same weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent / "cmd_ddp_script.py"


def _run(out: Path, *extra: str) -> tuple[dict, dict]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(SCRIPT), str(out), *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return tuple(json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))


@pytest.mark.slow
def test_online_cmd_with_two_processes(tmp_path):
    main, other = _run(tmp_path)
    assert (main["ready"], main["snapshots"]) == (True, 8) and (other["ready"], other["snapshots"]) == (False, 8)
    assert (tmp_path / "cmd_model" / "model.safetensors").is_file()
    assert len(list((tmp_path / "cmd_warmup").iterdir())) == 3


@pytest.mark.slow
def test_embedded_cmd_with_two_processes_embeds_the_same_tensors_everywhere(tmp_path):
    main, other = _run(tmp_path, "embed")
    assert main["embedded"] and main["embedded"] == other["embedded"]  # chosen on rank 0, adopted by rank 1
    assert main["embedding_steps"] == other["embedding_steps"] == [5, 7, 9, 11]
    assert main["frozen"] == other["frozen"] == main["embedded"]  # requires_grad=False on both
    for record in (main, other):
        assert not set(record["with_grad_last_step"]) & set(record["embedded"])  # no weight gradient computed
        assert record["find_unused_parameters"] is True
    weights = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])  # one model, not two
