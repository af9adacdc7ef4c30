"""Running the example scripts from tests: in-process, under ``accelerate launch`` (one process) or ``torchrun``.

Two CPU processes start through torchrun: accelerate's own CPU launcher (``examples/accelerate/multi_cpu.yaml``)
needs MPI, which CI machines lack.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SINGLE_CONFIG = ROOT / "examples/accelerate/single_process.yaml"
PROCESSES = {"single": 1, "two": 2}


def free_port() -> int:
    """A port nobody listens on now (two test sessions must not share torchrun's rendezvous port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(config: str, script: str, argv: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """``single``: ``accelerate launch`` with single_process.yaml; ``two``: ``torchrun`` with 2 processes."""
    if config == "single":
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(SINGLE_CONFIG)]
        command += ["--main_process_port", str(free_port())]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(PROCESSES[config])]
        command += ["--master_port", str(free_port())]
    command += [str(ROOT / "examples" / script), *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-3000:]
    return done


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def printed_json(stdout: str) -> list[dict]:
    """The JSON objects a script printed (``report_metrics`` prints one per process that reports)."""
    return [json.loads(block) for block in re.findall(r"^\{\n.*?^\}$", stdout, re.S | re.M)]
