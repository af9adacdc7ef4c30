"""Reading and writing sequences of checkpoints (a training trajectory) without holding them all in memory.

CMD, TWA and trajectory transfer all look at θ(t) for many t. A model of N parameters saved T times is
N×T numbers, often more than memory; so :class:`Trajectory` reads lazily from safetensors (memory-mapped)
and hands out *one tensor, a few rows at a time, across all steps*. Example::

    traj = Trajectory("runs/demo")               # checkpoint-N/ or snapshot-N/ folders, ordered by step
    for chunk in traj.iter_chunks(max_elements=2**20):
        chunk.values                             # [T, rows * row_size] slice of one tensor over time

:class:`SnapshotCallback` writes our own ``snapshot-N/`` folders every k steps, outside the reach of
``save_total_limit`` (which deletes ``checkpoint-*`` folders before ``on_save`` runs).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hf_efftrain.atomic import atomic_directory, write_safetensors
from hf_efftrain.errors import (
    CorruptCheckpointError,
    MissingCheckpointError,
    TrajectoryMismatchError,
)

CHECKPOINT_PATTERN = re.compile(r"^(checkpoint|snapshot)-(\d+)$")
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")
SHARD_INDEX = "model.safetensors.index.json"
SNAPSHOT_FORMAT = "hf_efftrain.snapshot.v1"


@dataclass(frozen=True)
class Checkpoint:
    """One saved point of a trajectory: its step and the safetensors file(s) holding its weights."""

    step: int
    folder: Path
    files: tuple[Path, ...]


@dataclass(frozen=True)
class TrajectoryChunk:
    """Rows ``rows`` of tensor ``name`` at every step, flattened: ``values`` is ``[T, n]``."""

    name: str
    rows: slice
    values: torch.Tensor


def weight_files(folder: Path) -> tuple[Path, ...]:
    """The safetensors files of one checkpoint folder (full, PEFT adapter, or sharded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingCheckpointError(f"checkpoint folder {folder} does not exist")
    index = folder / SHARD_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError) as err:
            raise CorruptCheckpointError(f"{index}: not a valid safetensors shard index ({err})") from None
        files = tuple(folder / shard for shard in shards)
        for file in files:
            if not file.is_file():
                raise MissingCheckpointError(f"{file}: shard listed in {index} is missing")
        return files
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return (folder / name,)
    if (folder / "pytorch_model.bin").is_file():
        raise CorruptCheckpointError(
            f"{folder / 'pytorch_model.bin'}: only safetensors checkpoints are supported; "
            "re-save with save_safetensors=True"
        )
    raise MissingCheckpointError(f"{folder}: no weights file (expected one of {', '.join(WEIGHT_FILES)})")


def find_checkpoints(root: str | os.PathLike) -> list[Checkpoint]:
    """All ``checkpoint-N``/``snapshot-N`` folders under ``root``, ordered by step (numerically)."""
    root = Path(root)
    if not root.is_dir():
        raise MissingCheckpointError(f"trajectory folder {root} does not exist")
    found = []
    for child in root.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir():
            found.append(Checkpoint(int(match.group(2)), child, weight_files(child)))
    if not found:
        raise MissingCheckpointError(f"{root}: no checkpoint-N or snapshot-N folders found")
    found.sort(key=lambda c: c.step)
    return found


def _checkpoints_from(source: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Checkpoint]:
    if isinstance(source, str | os.PathLike):
        return find_checkpoints(source)
    checkpoints = []
    for position, folder in enumerate(source):
        folder = Path(folder)
        match = CHECKPOINT_PATTERN.match(folder.name)
        step = int(match.group(2)) if match else position
        checkpoints.append(Checkpoint(step, folder, weight_files(folder)))
    if not checkpoints:
        raise MissingCheckpointError("an empty list of checkpoint folders was given")
    return checkpoints


class Trajectory:
    """A lazily read sequence of checkpoints with identical tensor names, shapes and dtypes.

    ``source`` is a folder of ``checkpoint-N``/``snapshot-N`` folders, or an explicit list of checkpoint
    folders (kept in the given order). ``names`` restricts the trajectory to some tensors.
    Every file's header is checked on construction, so a corrupt or mismatched checkpoint fails early,
    with its path in the message.
    """

    def __init__(
        self,
        source: str | os.PathLike | Iterable[str | os.PathLike],
        names: Iterable[str] | None = None,
    ) -> None:
        self.checkpoints = _checkpoints_from(source)
        headers = [self._read_header(c) for c in self.checkpoints]
        reference = headers[0]
        wanted = list(names) if names is not None else sorted(reference)
        for name in wanted:
            if name not in reference:
                raise TrajectoryMismatchError(f"{self.checkpoints[0].folder}: has no tensor {name!r}")
        for checkpoint, header in zip(self.checkpoints[1:], headers[1:], strict=True):
            self._check_matches(checkpoint, header, reference, wanted)
        self.names: list[str] = wanted
        self.shapes: dict[str, tuple[int, ...]] = {n: reference[n][0] for n in wanted}
        self.dtypes: dict[str, str] = {n: reference[n][1] for n in wanted}
        self._file_of: list[dict[str, Path]] = [{n: h[n][2] for n in wanted} for h in headers]

    # ---- validation -------------------------------------------------------------------------------------
    @staticmethod
    def _read_header(checkpoint: Checkpoint) -> dict[str, tuple[tuple[int, ...], str, Path]]:
        header = {}
        for file in checkpoint.files:
            try:
                with safe_open(str(file), framework="pt") as handle:
                    for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                        piece = handle.get_slice(name)
                        header[name] = (tuple(piece.get_shape()), piece.get_dtype(), file)
            except Exception as err:  # safetensors raises several types for a damaged file
                raise CorruptCheckpointError(f"{file}: cannot read safetensors weights ({err})") from None
        return header

    @staticmethod
    def _check_matches(checkpoint: Checkpoint, header: dict, reference: dict, wanted: list[str]) -> None:
        for name in wanted:
            if name not in header:
                raise TrajectoryMismatchError(f"{checkpoint.folder}: tensor {name!r} is missing")
            if header[name][:2] != reference[name][:2]:
                raise TrajectoryMismatchError(
                    f"{header[name][2]}: tensor {name!r} has shape/dtype {header[name][:2]}, "
                    f"expected {reference[name][:2]} as in the first checkpoint"
                )

    # ---- shape of the trajectory ------------------------------------------------------------------------
    @property
    def steps(self) -> list[int]:
        """Training step of each checkpoint, in order."""
        return [c.step for c in self.checkpoints]

    def __len__(self) -> int:
        return len(self.checkpoints)

    @property
    def num_parameters(self) -> int:
        """Number of scalars in one checkpoint (over the selected tensors)."""
        return sum(math.prod(shape) for shape in self.shapes.values())

    # ---- reading ----------------------------------------------------------------------------------------
    def load(self, index: int) -> dict[str, torch.Tensor]:
        """All selected tensors of checkpoint ``index`` (negative indices count from the end)."""
        files = self._file_of[index]
        out = {}
        with ExitStack() as stack:
            handles = {f: stack.enter_context(safe_open(str(f), framework="pt")) for f in set(files.values())}
            for name in self.names:
                out[name] = handles[files[name]].get_tensor(name)
        return out

    def tensor(self, name: str) -> torch.Tensor:
        """One tensor at every step, stacked: ``[T, *shape]``."""
        (chunk,) = self.iter_chunks(names=[name], max_elements=None)
        return chunk.values.reshape(len(self), *self.shapes[name])

    def iter_chunks(
        self, names: Iterable[str] | None = None, max_elements: int | None = 2**22
    ) -> Iterator[TrajectoryChunk]:
        """Yield each tensor across time in row blocks of at most ``max_elements`` numbers (T included).

        At least one row is always read, so a single huge row can exceed the bound.
        ``max_elements=None`` yields whole tensors.
        """
        with ExitStack() as stack:
            handles: dict[Path, object] = {}

            def handle(file: Path):
                if file not in handles:
                    handles[file] = stack.enter_context(safe_open(str(file), framework="pt"))
                return handles[file]

            for name in names if names is not None else self.names:
                shape = self.shapes[name]
                rows_total = shape[0] if shape else 1
                row_size = math.prod(shape[1:]) if shape else 1
                step = rows_total
                if max_elements is not None:
                    step = max(1, min(rows_total, max_elements // max(1, row_size * len(self))))
                for start in range(0, rows_total, step):
                    stop = min(rows_total, start + step)
                    values = [self._read_rows(handle(files[name]), name, shape, start, stop) for files in self._file_of]
                    yield TrajectoryChunk(name, slice(start, stop), torch.stack(values))

    @staticmethod
    def _read_rows(handle, name: str, shape: tuple[int, ...], start: int, stop: int) -> torch.Tensor:
        if not shape:
            return handle.get_tensor(name).reshape(1)
        return handle.get_slice(name)[start:stop].reshape(-1)


# ---- writing ------------------------------------------------------------------------------------------------
def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters that require gradients (adapter weights only for a PEFT model)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def save_snapshot(root: str | os.PathLike, step: int, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``root/snapshot-<step>/model.safetensors`` atomically and return the folder."""
    folder = Path(root) / f"snapshot-{step}"
    with atomic_directory(folder) as tmp:
        write_safetensors(tmp / "model.safetensors", tensors, {"format": SNAPSHOT_FORMAT, "step": str(step)})
    return folder


class SnapshotCallback(TrainerCallback):
    """Save the trainable weights every ``every`` optimizer steps into ``output_dir/snapshot-N``.

    The initial weights (step 0) and the final weights are saved too, so the folder holds θ0…θT.
    Only the main process writes. Snapshots live in their own folder, so ``save_total_limit`` never
    deletes them. Example::

        trainer.add_callback(SnapshotCallback("runs/demo/snapshots", every=10))
    """

    def __init__(self, output_dir: str | os.PathLike, every: int, save_initial: bool = True) -> None:
        if every < 1:
            raise ValueError(f"SnapshotCallback needs every >= 1, got {every}")
        self.output_dir = Path(output_dir)
        self.every = every
        self.save_initial = save_initial
        self.last_saved_step: int | None = None

    def _save(self, state: TrainerState, model: nn.Module | None) -> None:
        if model is None or not state.is_world_process_zero or self.last_saved_step == state.global_step:
            return
        save_snapshot(self.output_dir, state.global_step, trainable_state(model))
        self.last_saved_step = state.global_step

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.save_initial and state.global_step == 0:
            self._save(state, kwargs.get("model"))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.global_step % self.every == 0:
            self._save(state, kwargs.get("model"))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._save(state, kwargs.get("model"))
