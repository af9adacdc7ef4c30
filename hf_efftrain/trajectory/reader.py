"""Reading a sequence of checkpoints (a training trajectory) without holding it in memory.

CMD, TWA and trajectory transfer all look at θ(t) for many t. A model of N parameters saved T times is
N×T numbers, often more than memory; so :class:`Trajectory` reads lazily from safetensors and hands out *one
tensor, a few rows at a time, across all steps*. Example::

    traj = Trajectory("runs/demo")               # checkpoint-N/ or snapshot-N/ folders, ordered by step
    for chunk in traj.iter_chunks(max_elements=2**20):
        chunk.values                             # [T, rows * row_size] slice of one tensor over time
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from hf_efftrain.errors import (
    CorruptCheckpointError,
    MissingCheckpointError,
    NonFiniteWeightsError,
    TrajectoryMismatchError,
)

CHECKPOINT_PATTERN = re.compile(r"^(checkpoint|snapshot)-(\d+)$")
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")
SHARD_INDEX = "model.safetensors.index.json"


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


SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorLocation:
    """Where one tensor's bytes are: file, absolute byte offset, and what they hold."""

    file: Path
    begin: int
    shape: tuple[int, ...]
    dtype: str


def read_safetensors_header(file: Path) -> dict[str, TensorLocation]:
    """Parse and check a safetensors header without mapping the file; a damaged file names itself."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > size - 8:
                raise ValueError(f"header of {length} bytes does not fit in a {size}-byte file")
            header = json.loads(handle.read(length))
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            if info["dtype"] not in SAFETENSORS_DTYPES:
                raise ValueError(f"tensor {name!r} has unsupported dtype {info['dtype']}")
            if 8 + length + end > size:
                raise ValueError(f"tensor {name!r} ends past the end of the file (truncated?)")
            out[name] = TensorLocation(file, 8 + length + begin, tuple(info["shape"]), info["dtype"])
        return out
    except (OSError, ValueError, KeyError, TypeError, struct.error) as err:
        raise CorruptCheckpointError(f"{file}: cannot read safetensors weights ({err})") from None


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
        self.shapes: dict[str, tuple[int, ...]] = {n: reference[n].shape for n in wanted}
        self.dtypes: dict[str, str] = {n: reference[n].dtype for n in wanted}
        self._locations: list[dict[str, TensorLocation]] = [{n: h[n] for n in wanted} for h in headers]

    # ---- validation -------------------------------------------------------------------------------------
    @staticmethod
    def _read_header(checkpoint: Checkpoint) -> dict[str, TensorLocation]:
        header = {}
        for file in checkpoint.files:
            header.update(read_safetensors_header(file))
        return header

    @staticmethod
    def _check_matches(checkpoint: Checkpoint, header: dict, reference: dict, wanted: list[str]) -> None:
        for name in wanted:
            if name not in header:
                raise TrajectoryMismatchError(f"{checkpoint.folder}: tensor {name!r} is missing")
            got, expected = header[name], reference[name]
            if (got.shape, got.dtype) != (expected.shape, expected.dtype):
                raise TrajectoryMismatchError(
                    f"{got.file}: tensor {name!r} has shape/dtype {got.shape}/{got.dtype}, "
                    f"expected {expected.shape}/{expected.dtype} as in the first checkpoint"
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
        locations = self._locations[index]
        out = {}
        with ExitStack() as stack:
            files = {loc.file for loc in locations.values()}
            handles = {f: stack.enter_context(safe_open(str(f), framework="pt")) for f in files}
            for name in self.names:
                out[name] = handles[locations[name].file].get_tensor(name)
        return out

    def tensor(self, name: str) -> torch.Tensor:
        """One tensor at every step, stacked: ``[T, *shape]``."""
        (chunk,) = self.iter_chunks(names=[name], max_elements=None)
        return chunk.values.reshape(len(self), *self.shapes[name])

    def iter_chunks(
        self, names: Iterable[str] | None = None, max_elements: int | None = 2**22, reuse_buffer: bool = False
    ) -> Iterator[TrajectoryChunk]:
        """Yield each tensor across time in row blocks of at most ``max_elements`` numbers (T included).

        At least one row is always read, so a single huge row can exceed the bound.
        ``max_elements=None`` yields whole tensors. Values keep the stored dtype.

        Reads use ``pread``, not memory maps: mapped file pages would count towards the process's resident
        memory and grow it to the size of the whole trajectory. Each chunk gets a fresh buffer, unless
        ``reuse_buffer``: then every chunk is read into the same one (the next chunk overwrites it, so copy
        what you keep). A long streaming pass should reuse: multi-MB buffers allocated and freed per chunk let
        glibc keep freed memory (reuse took about 60 MB off a CMD fit's peak on a MiniLM-sized trajectory).
        """
        shared = _GrowingBuffer() if reuse_buffer else None
        with ExitStack() as stack:
            descriptors: dict[Path, int] = {}

            def descriptor(file: Path) -> int:
                if file not in descriptors:
                    descriptors[file] = os.open(file, os.O_RDONLY)
                    stack.callback(os.close, descriptors[file])
                return descriptors[file]

            for name in names if names is not None else self.names:
                shape = self.shapes[name]
                rows_total = shape[0] if shape else 1
                row_size = math.prod(shape[1:]) if shape else 1
                step = rows_total
                if max_elements is not None:
                    step = max(1, min(rows_total, max_elements // max(1, row_size * len(self))))
                for start in range(0, rows_total, step):
                    stop = min(rows_total, start + step)
                    values = self._read_rows(descriptor, name, start * row_size, (stop - start) * row_size, shared)
                    yield TrajectoryChunk(name, slice(start, stop), values)

    def check_finite(self, chunk: TrajectoryChunk | None = None) -> None:
        """Refuse NaN/Inf (a diverged run) in ``chunk``, or in the whole trajectory in one streaming pass.

        The error names the tensor and the first checkpoint file holding a bad value.
        """
        for part in [chunk] if chunk is not None else self.iter_chunks():
            bad = _first_nonfinite_row(part.values)
            if bad is not None:
                file = self._locations[bad][part.name].file
                raise NonFiniteWeightsError(
                    f"{file}: tensor {part.name!r} holds NaN or Inf values (a diverged run?); "
                    "drop that checkpoint or use the run before it diverged"
                )

    def _read_rows(
        self, descriptor, name: str, first: int, count: int, shared: _GrowingBuffer | None = None
    ) -> torch.Tensor:
        """Elements ``first:first+count`` of the flattened tensor ``name`` at every step: ``[T, count]``."""
        dtype = SAFETENSORS_DTYPES[self.dtypes[name]]
        width = torch.empty((), dtype=dtype).element_size()
        size = count * width
        if not size:
            return torch.empty((len(self), count), dtype=dtype)
        view = (shared or _GrowingBuffer()).view(len(self) * size)
        for t, locations in enumerate(self._locations):
            place = locations[name]
            got = os.preadv(descriptor(place.file), [view[t * size : (t + 1) * size]], place.begin + first * width)
            if got != size:
                raise CorruptCheckpointError(f"{place.file}: tensor {name!r} is cut short (file truncated?)")
        return torch.frombuffer(view, dtype=dtype).reshape(len(self), count)


def _first_nonfinite_row(values: torch.Tensor) -> int | None:
    """The first row of ``[T, n]`` holding NaN or Inf, or None.

    Row sums find it without a bool copy of the block (an isfinite mask is a [T, n] temporary per chunk, and
    those freed in turn grew a streaming pass's memory by hundreds of MB): NaN and Inf always reach the sum.
    A finite row whose sum overflows is checked element by element before it is called bad.
    """
    if not values.is_floating_point():
        return None
    for row in (~torch.isfinite(values.sum(dim=1))).nonzero().flatten().tolist():
        if not torch.isfinite(values[row]).all():
            return row
    return None


class _GrowingBuffer:
    """Uninitialised bytes handed out as a memoryview prefix; replaced by a bigger one only when asked for more."""

    def __init__(self) -> None:
        self._array = np.empty(0, dtype=np.uint8)

    def view(self, size: int) -> memoryview:
        if size > self._array.size:
            self._array = np.empty(size, dtype=np.uint8)  # not zero-filled: every byte is read into before use
        return memoryview(self._array)[:size]
