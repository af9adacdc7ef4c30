"""``SnapshotCallback``: saves the trainable weights every k steps, so that a run leaves its trajectory θ0…θT.

Snapshots go to their own ``snapshot-N/`` folders, outside the reach of ``save_total_limit`` (which deletes
``checkpoint-*`` folders before ``on_save`` runs). Example::

    trainer.add_callback(SnapshotCallback("runs/demo/snapshots", every=10, dtype=torch.bfloat16))
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hf_efftrain.budget import check_steps, resolve_steps
from hf_efftrain.log import get_logger
from hf_efftrain.trajectory.writer import save_snapshot, trainable_state

_logger = get_logger("hf_efftrain.trajectory")  # the name users filter on, whichever module logs

LARGE_WRITE_BYTES = 256 * 2**20  # a planned write at least this large is announced as a warning, not info


class SnapshotCallback(TrainerCallback):
    """Save the trainable weights every ``every`` optimizer steps into ``output_dir/snapshot-N``.

    The initial weights (step 0) and the final weights are saved too, so the folder holds θ0…θT.
    Only the main process writes. Snapshots live in their own folder, so ``save_total_limit`` never
    deletes them. Example::

        trainer.add_callback(SnapshotCallback("runs/demo/snapshots", every=10, dtype=torch.bfloat16))

    ``dtype`` casts floating-point weights (``None`` keeps the parameters' own). Before the first write the
    expected size of the whole sequence is logged, as a warning from :data:`LARGE_WRITE_BYTES` on.
    """

    def __init__(
        self, output_dir: str | os.PathLike, every: float, save_initial: bool = True, dtype: torch.dtype | None = None
    ) -> None:
        check_steps("every", every)  # steps, or a fraction in (0, 1) of max_steps (resolved at train begin)
        self.output_dir = Path(output_dir)
        self.requested = every
        self.every = int(every) if every >= 1 else None
        self.save_initial = save_initial
        self.dtype = dtype
        self.last_saved_step: int | None = None

    def _save(self, state: TrainerState, model: nn.Module | None) -> None:
        if model is None or not state.is_world_process_zero or self.last_saved_step == state.global_step:
            return
        save_snapshot(self.output_dir, state.global_step, trainable_state(model, self.dtype))
        self.last_saved_step = state.global_step

    def planned_bytes(self, model: nn.Module, start: int, max_steps: int) -> tuple[int, int]:
        """(snapshots still to write, their total bytes) for a run from step ``start`` to ``max_steps``."""
        count = max_steps // self.every - start // self.every + (max_steps % self.every != 0)
        count += self.save_initial and start == 0
        stored = self.dtype.itemsize if self.dtype is not None else None
        per_snapshot = sum(
            p.numel() * (stored if stored and p.is_floating_point() else p.element_size())
            for p in model.parameters()
            if p.requires_grad
        )
        return count, count * per_snapshot

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Resolve the interval, log the planned disk use, and save θ0 at the start of a fresh run."""
        self.every = resolve_steps(self.requested, state.max_steps)
        model = kwargs.get("model")
        if model is not None and state.is_world_process_zero and state.max_steps > 0:
            count, total = self.planned_bytes(model, state.global_step, state.max_steps)
            log = _logger.warning if total >= LARGE_WRITE_BYTES else _logger.info
            each = total / max(count, 1) / 2**20
            log("snapshots: %d of %.1f MiB each, %.1f MiB in all, into %s (smaller: --snapshot_dtype bfloat16 "
                "or a larger --snapshot_every)", count, each, total / 2**20, self.output_dir)  # fmt: skip
        if self.save_initial and state.global_step == 0:
            self._save(state, model)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Save a snapshot every ``every`` optimizer steps."""
        if state.global_step % self.every == 0:
            self._save(state, kwargs.get("model"))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Save the final weights (once, even when the last step was already a snapshot)."""
        self._save(state, kwargs.get("model"))
