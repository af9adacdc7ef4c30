"""Find and load what a run folder holds: Trainer logs and each method's saved state.

A run folder is a Trainer ``output_dir``. ``trainer_state.json`` is read from the folder itself or, for a run
that was killed or never saved its final state, from its last ``checkpoint-N``; MAT's state then comes from
the checkpoint's ``stateful_callbacks`` when ``mat_history.json`` (written at train end) is missing. Every
artifact is optional; a corrupt JSON file is an error that names the file. Example::

    run = collect_run("outputs/finetune")
    run.mat["history"][-1]["active"]          # gates at the last λmax measurement
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers.trainer_utils import get_last_checkpoint

from hf_efftrain.cmd.result import META_FILE, CMDResult
from hf_efftrain.errors import CMDFitError, ReportError
from hf_efftrain.mat.history_file import check_history
from hf_efftrain.trajectory import CHECKPOINT_PATTERN

# What a report looks for, relative to the run folder (named in the "nothing to report" error).
LOOKED_FOR = (
    "trainer_state.json (or checkpoint-N/trainer_state.json)",
    "mat_history.json",
    "twa_history.json",
    "cmd_report.json",
    "cmd_modes.json",
    "cmd_posthoc/",
)


@dataclass
class RunArtifacts:
    """Everything found in one run folder; ``None`` (or empty) for what the run did not produce."""

    run_dir: Path
    trainer_state: dict[str, Any] | None = None
    trainer_state_path: Path | None = None
    mat: dict[str, Any] | None = None  # mat_history.json layout: config, units, history, ...
    mat_source: str | None = None
    twa: dict[str, Any] | None = None  # twa_history.json
    cmd_report: dict[str, Any] | None = None  # cmd_report.json (online / embedded CMD)
    cmd_modes: CMDResult | None = None  # modes frozen by online CMD (cmd_modes.json)
    cmd_posthoc: CMDResult | None = None  # a post-hoc fit saved in cmd_posthoc/
    snapshot_steps: list[int] = field(default_factory=list)

    @property
    def log_history(self) -> list[dict[str, Any]]:
        """The Trainer's log lines from ``trainer_state.json`` (empty without one)."""
        return (self.trainer_state or {}).get("log_history", [])

    @property
    def is_empty(self) -> bool:
        """Whether the folder held none of the files a report shows (then there is nothing to report)."""
        parts = (self.trainer_state, self.mat, self.twa, self.cmd_report, self.cmd_modes, self.cmd_posthoc)
        return all(part is None for part in parts)


def read_json(path: Path) -> Any:
    """Parse a JSON file; a corrupt one raises :class:`ReportError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReportError(f"{path} is not valid JSON ({err}); restore or delete it and report again") from None


def _optional_json(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _mapping(data: Any, path: Path, list_key: str | None = None) -> dict[str, Any] | None:
    """``data`` unless it is not a JSON object (or its ``list_key`` is not a list of objects): a foreign file."""
    if data is None:
        return None
    entries = data.get(list_key, []) if isinstance(data, dict) and list_key else []
    if not isinstance(data, dict) or not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ReportError(f"{path} is not laid out as Trainer or hf_efftrain write it; restore or delete it")
    return data


def find_trainer_state(run_dir: Path) -> Path | None:
    """``trainer_state.json`` of the run folder, else of its last ``checkpoint-N`` (a run killed mid-way)."""
    if (run_dir / "trainer_state.json").is_file():
        return run_dir / "trainer_state.json"
    last = get_last_checkpoint(str(run_dir))
    if last and (Path(last) / "trainer_state.json").is_file():
        return Path(last) / "trainer_state.json"
    return None


def _mat_from_state(trainer_state: dict[str, Any] | None) -> dict[str, Any] | None:
    """MAT's state saved in a checkpoint (``stateful_callbacks``), shaped like ``mat_history.json``."""
    saved = ((trainer_state or {}).get("stateful_callbacks") or {}).get("MATCallback")
    if not isinstance(saved, dict) or not (saved.get("attributes") or {}).get("history"):
        return None
    attributes = saved["attributes"]
    count = len(attributes["history"][0]["lambda"])
    units = attributes.get("units")  # saved with the state; older runs only logged them as mat/lambda/<name> keys
    if not isinstance(units, list):
        keys = dict.fromkeys(k for entry in trainer_state["log_history"] for k in entry if k.startswith("mat/lambda/"))
        units = [key.removeprefix("mat/lambda/") for key in keys]  # logged in module order
    if len(units) != count:  # without names, number the modules
        units = [f"module {i}" for i in range(count)]
    return {"config": saved.get("args", {}).get("config", {}), "units": units, **attributes}


def _cmd_result(folder: Path) -> CMDResult | None:
    if not (folder / META_FILE).is_file():
        return None
    try:
        return CMDResult.load(folder)
    except CMDFitError as err:
        raise ReportError(str(err)) from None


def _cmd_modes(path: Path) -> CMDResult | None:
    record = _optional_json(path)
    if record is None:
        return None
    try:
        return CMDResult.from_modes_record(record)
    except (KeyError, TypeError, ValueError) as err:
        raise ReportError(f"{path} does not hold CMD modes ({err!r}); delete it and report again") from None


def snapshot_steps(folder: Path) -> list[int]:
    """Steps of the ``snapshot-N`` folders (names only: a report needs no weights)."""
    if not folder.is_dir():
        return []
    matches = (CHECKPOINT_PATTERN.match(child.name) for child in folder.iterdir() if child.is_dir())
    return sorted(int(m.group(2)) for m in matches if m)


def collect_run(run_dir: str | os.PathLike) -> RunArtifacts:
    """Load every artifact of ``run_dir``; raises :class:`ReportError` if the folder is missing or holds none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run folder {run_dir} does not exist: pass the output_dir of a training run")
    run = RunArtifacts(run_dir=run_dir)
    run.trainer_state_path = find_trainer_state(run_dir)
    if run.trainer_state_path is not None:
        run.trainer_state = _mapping(read_json(run.trainer_state_path), run.trainer_state_path, "log_history")
    run.mat, run.mat_source = _optional_json(run_dir / "mat_history.json"), "mat_history.json"
    if run.mat is not None:
        check_history(run.mat, run_dir / "mat_history.json", complete=False)
    else:
        run.mat, run.mat_source = _mat_from_state(run.trainer_state), "trainer_state.json (run not finished)"
    run.twa = _mapping(_optional_json(run_dir / "twa_history.json"), run_dir / "twa_history.json")
    run.cmd_report = _mapping(_optional_json(run_dir / "cmd_report.json"), run_dir / "cmd_report.json")
    run.cmd_modes = _cmd_modes(run_dir / "cmd_modes.json")
    run.cmd_posthoc = _cmd_result(run_dir / "cmd_posthoc")
    run.snapshot_steps = snapshot_steps(run_dir / "snapshots")
    if run.is_empty:
        raise ReportError(f"nothing to report in {run_dir}: looked for {', '.join(LOOKED_FOR)}")
    return run
