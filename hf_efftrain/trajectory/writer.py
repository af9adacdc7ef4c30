"""Writing a trajectory: what a snapshot holds (the trainable weights), in which precision, and how it is saved.

A snapshot is ``snapshot-<step>/model.safetensors``, written atomically (a crash leaves no half folder), so that
:class:`~hf_efftrain.trajectory.reader.Trajectory` can read it back like any checkpoint. Example::

    save_snapshot("runs/demo/snapshots", step=10, tensors=trainable_state(model, torch.bfloat16))
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from transformers import TrainingArguments

from hf_efftrain.atomic import atomic_directory, write_safetensors
from hf_efftrain.errors import ArgumentsError

SNAPSHOT_FORMAT = "hf_efftrain.snapshot.v1"


def trainable_state(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters that require gradients (adapter weights only for a PEFT model).

    ``dtype`` (e.g. ``torch.bfloat16``) casts floating-point tensors: half the disk of float32 snapshots.
    """

    def copy(p: torch.Tensor) -> torch.Tensor:
        cast = dtype if dtype is not None and p.is_floating_point() else p.dtype
        return p.detach().to("cpu", dtype=cast, copy=True)

    return {n: copy(p) for n, p in model.named_parameters() if p.requires_grad}


SNAPSHOT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def snapshot_dtype(name: str, args: TrainingArguments | None = None) -> torch.dtype | None:
    """``"auto"``: the precision training computes in (bfloat16 with ``--bf16``, float16 with ``--fp16``, else
    the parameters' own, ``None``); or one of :data:`SNAPSHOT_DTYPES`."""
    if name == "auto":
        if args is not None and getattr(args, "bf16", False):
            return torch.bfloat16
        return torch.float16 if args is not None and getattr(args, "fp16", False) else None
    if name not in SNAPSHOT_DTYPES:
        raise ArgumentsError(f"--snapshot_dtype must be auto or one of {', '.join(SNAPSHOT_DTYPES)}, got {name!r}")
    return SNAPSHOT_DTYPES[name]


def save_snapshot(root: str | os.PathLike, step: int, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``root/snapshot-<step>/model.safetensors`` atomically and return the folder."""
    folder = Path(root) / f"snapshot-{step}"
    with atomic_directory(folder) as tmp:
        write_safetensors(tmp / "model.safetensors", tensors, {"format": SNAPSHOT_FORMAT, "step": str(step)})
    return folder
