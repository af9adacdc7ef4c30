"""A training run's ``output_dir``: never two runs mixed in one folder, never a user's file deleted.

The Trainer writes its output folder piece by piece, so it cannot be swapped in whole like a command's output.
Instead the example scripts claim it before loading anything: a new or empty folder gets a marker
(``.hf_efftrain.json``, command ``run``); a folder holding an earlier run is refused unless the user resumes
it (``--resume_from_checkpoint``) or starts afresh (``--overwrite_output_dir true``), which removes the earlier
run's files, and only those: a folder holding anything a run does not write is always refused. Example::

    claim_run_folder(training_args, script="finetune.py", overwrite=script_args.overwrite_output_dir)
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hf_efftrain.atomic import remove_directory
from hf_efftrain.errors import CheckpointError, CorruptCheckpointError, MissingCheckpointError, OutputError
from hf_efftrain.outputs import MANIFEST_FILE, check_writable, read_manifest, visible_entries, write_manifest

RUN_COMMAND = "run"
# What a run of the examples (Trainer, methods, analyses, reports) writes at the top of its output_dir.
RUN_ENTRIES = (
    MANIFEST_FILE,
    "checkpoint-*",
    "snapshots",
    "snapshot-*",
    "report",
    "runs",
    "cmd_posthoc",
    "cmd_model",
    "transfer",
    "target-init",
    "lag",
    "*.json",
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.png",
    "*.md",
    "*.txt",
    "*.yaml",
    "*.jinja",
    "*.model",
)


@dataclass
class RunFolderArguments:
    """The flag that lets a script start afresh in a folder holding an earlier run (Trainer's historic name)."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh in an output_dir that holds an earlier run of these scripts: its files are "
            "removed first. Folders holding other files are always refused."
        },
    )


def _foreign(entries: list[Path]) -> Path | None:
    """The first entry a run does not write (a user's file), or ``None``."""
    for entry in entries:
        if not any(fnmatch.fnmatch(entry.name, pattern) for pattern in RUN_ENTRIES):
            return entry
    return None


def check_run_folder(output_dir: str | os.PathLike, resuming: bool, overwrite: bool) -> bool:
    """Validate ``output_dir`` for a new run; returns whether an earlier run's files must be removed first."""
    out = Path(output_dir)
    check_writable(out)
    entries = visible_entries(out) if out.is_dir() else []
    if not entries:
        return False
    manifest = read_manifest(out)
    if manifest is None or manifest.get("command") != RUN_COMMAND:
        raise OutputError(
            f"output_dir {out} already holds files that no hf_efftrain run wrote; choose a new or empty folder"
        )
    if resuming:
        return False
    if not overwrite:
        raise OutputError(
            f"output_dir {out} holds an earlier run; pass --overwrite_output_dir true to start afresh "
            "(its files are removed) or --resume_from_checkpoint to continue it"
        )
    foreign = _foreign(entries)
    if foreign is not None:
        raise OutputError(
            f"output_dir {out} holds {foreign.name}, which no run writes; move it away or choose another folder"
        )
    return True


def start_run_folder(output_dir: str | os.PathLike, script: str, remove_earlier: bool) -> None:
    """Remove the earlier run (moved aside first, so a kill never leaves half of it) and mark the folder as a run."""
    out = Path(output_dir)
    if remove_earlier and out.is_dir():
        remove_directory(out)
    out.mkdir(parents=True, exist_ok=True)
    if read_manifest(out) is None:
        write_manifest(out, RUN_COMMAND, script=script)  # a marker: a run's files are not listed


def check_resume_checkpoint(folder: str | os.PathLike) -> None:
    """Refuse a checkpoint the Trainer could not resume from, with one line instead of its raw exception."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"--resume_from_checkpoint {folder} is not a folder; pass a checkpoint-N folder")
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingCheckpointError(f"{folder} has no trainer_state.json; pass a checkpoint-N folder") from None
    except (OSError, ValueError):
        raise CorruptCheckpointError(
            f"{folder}/trainer_state.json is truncated or not JSON; resume from an earlier checkpoint"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        raise CorruptCheckpointError(
            f"{folder}/trainer_state.json holds no global_step; resume from an earlier checkpoint"
        )
    from hf_efftrain.trajectory import SHARD_INDEX, WEIGHT_FILES, read_safetensors_header, weight_files

    if not any((folder / name).is_file() for name in (*WEIGHT_FILES, SHARD_INDEX)):
        if any(folder.glob("pytorch_model*.bin")) or (folder / "adapter_model.bin").is_file():
            return  # a torch pickle checkpoint (save_safetensors=False): the Trainer reads it as it is
        raise MissingCheckpointError(
            f"{folder} holds no model weights ({', '.join(WEIGHT_FILES)}); resume from another checkpoint"
        )
    for file in weight_files(folder):  # every shard of a sharded checkpoint, each present
        try:
            read_safetensors_header(file)  # the header parses and every tensor fits in the file
        except CorruptCheckpointError as err:
            reason = str(err).removeprefix(f"{file}: ")
            raise CorruptCheckpointError(f"{file} is damaged ({reason}); resume from an earlier checkpoint") from None


def resume_folder(args) -> str | None:
    """The checkpoint ``--resume_from_checkpoint`` names (``true``/``last``: the newest in ``output_dir``)."""
    value = args.resume_from_checkpoint
    if value is None or str(value).lower() in ("false", "none", ""):
        return None
    if str(value).lower() in ("true", "last"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
        if last is None:
            raise MissingCheckpointError(
                f"--resume_from_checkpoint {value}: {args.output_dir} has no checkpoint-N folder"
            )
        return last
    return str(value)


def claim_run_folder(args, script: str, overwrite: bool) -> str | None:
    """Check ``args.output_dir`` (and the checkpoint to resume) on every process, then let the main process prepare
    the folder (see the module docs). Returns the checkpoint to pass to ``trainer.train(resume_from_checkpoint=)``.

    Call it after parsing and before loading models or data, so a refused folder costs the user nothing.
    """
    checkpoint = resume_folder(args)
    if checkpoint is not None:
        check_resume_checkpoint(checkpoint)
    remove = check_run_folder(args.output_dir, checkpoint is not None, overwrite)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        start_run_folder(args.output_dir, script, remove)
        return checkpoint
    from accelerate import PartialState

    _ = args.device  # sets up the process group the Trainer will use (gloo on CPUs)
    state = PartialState()
    state.wait_for_everyone()  # every process has checked the folder before anything changes in it
    if state.is_main_process:
        start_run_folder(args.output_dir, script, remove)
    state.wait_for_everyone()
    return checkpoint
