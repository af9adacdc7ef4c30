"""Training trajectories: sequences of checkpoints, read lazily, written atomically, saved during a run.

* :mod:`.reader` — :class:`Trajectory`: one tensor, a few rows at a time, across all steps (never all in memory);
* :mod:`.writer` — what a snapshot holds and how it is written (:func:`save_snapshot`, :func:`trainable_state`);
* :mod:`.callback` — :class:`SnapshotCallback`: a snapshot every k optimizer steps of any ``Trainer``.

Every name stays importable from ``hf_efftrain.trajectory``. Example::

    trainer.add_callback(SnapshotCallback("runs/demo/snapshots", every=10))
    trainer.train()
    traj = Trajectory("runs/demo/snapshots")            # θ0…θT, ordered by step
"""

from hf_efftrain.trajectory.callback import LARGE_WRITE_BYTES, SnapshotCallback
from hf_efftrain.trajectory.reader import (
    CHECKPOINT_PATTERN,
    SAFETENSORS_DTYPES,
    SHARD_INDEX,
    WEIGHT_FILES,
    Checkpoint,
    TensorLocation,
    Trajectory,
    TrajectoryChunk,
    find_checkpoints,
    read_safetensors_header,
    weight_files,
)
from hf_efftrain.trajectory.writer import (
    SNAPSHOT_DTYPES,
    SNAPSHOT_FORMAT,
    save_snapshot,
    snapshot_dtype,
    trainable_state,
)

__all__ = [
    "CHECKPOINT_PATTERN",
    "LARGE_WRITE_BYTES",
    "SAFETENSORS_DTYPES",
    "SHARD_INDEX",
    "SNAPSHOT_DTYPES",
    "SNAPSHOT_FORMAT",
    "WEIGHT_FILES",
    "Checkpoint",
    "SnapshotCallback",
    "TensorLocation",
    "Trajectory",
    "TrajectoryChunk",
    "find_checkpoints",
    "read_safetensors_header",
    "save_snapshot",
    "snapshot_dtype",
    "trainable_state",
    "weight_files",
]
