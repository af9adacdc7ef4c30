"""EfficientTrainer: a ``transformers.Trainer`` whose methods are switched on by training arguments.

The trainer itself stays thin: each method lives in its own folder as a plain function plus a
``TrainerCallback`` that schedules it, and this module only turns arguments into callbacks. With no
method enabled it *is* ``Trainer`` (same losses bit for bit). Example::

    args = EfficientTrainingArguments(output_dir="out", snapshot_every=10)
    trainer = EfficientTrainer(model=model, args=args, train_dataset=train)
    trainer.train()
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_efftrain.budget import check_steps
from hf_efftrain.cmd.arguments import CMDArguments
from hf_efftrain.cmd.callback import CMDCallback
from hf_efftrain.errors import ArgumentsError
from hf_efftrain.growth.arguments import GrowthArguments
from hf_efftrain.growth.callback import MaskRampCallback
from hf_efftrain.growth.mask_state import restore_mask
from hf_efftrain.mat.arguments import MATArguments
from hf_efftrain.trajectory import SnapshotCallback, snapshot_dtype
from hf_efftrain.twa.arguments import TWAArguments
from hf_efftrain.twa.callback import TWACallback
from hf_efftrain.twa.holdout import HoldoutBatches, split_holdout


@dataclass
class EfficientTrainingArguments(MATArguments, TWAArguments, CMDArguments, GrowthArguments, TrainingArguments):
    """``TrainingArguments`` plus the switches of hf_efftrain's methods (readable by ``HfArgumentParser``)."""

    snapshot_every: float = field(
        default=0,
        metadata={
            "help": "Save the trainable weights every N optimizer steps, or every fraction (< 1) of max_steps "
            "(0 = off); read with Trajectory."
        },
    )
    snapshot_dir: str | None = field(
        default=None, metadata={"help": "Folder for snapshot-N/ weights (default: <output_dir>/snapshots)."}
    )
    fix_loss_scaling: bool = field(
        default=False,
        metadata={
            "help": "Undo transformers' loss scaling for models whose loss is a plain mean (BERT-style classifiers): "
            "gradient accumulation and several processes then give the update of one big batch (off = Trainer)."
        },
    )
    snapshot_dtype: str = field(
        default="auto",
        metadata={"help": "Snapshot precision: auto (bf16/fp16 when training so, else the weights'), float32, "
                  "bfloat16 or float16."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_fsdp(self)  # before Trainer's own set-up, which may already start the process group
        if _launched_without_accelerator():  # torchrun/`accelerate launch` on a CPU-only machine: DDP over gloo
            self.ddp_backend = self.ddp_backend or "gloo"
            self.use_cpu = True  # accelerate's MULTI_CPU state; else "NO" with an open group, and a bogus warning
        if self.dataloader_pin_memory and not _has_accelerator():
            self.dataloader_pin_memory = False  # pinning needs an accelerator: torch warns on every CPU loader
        super().__post_init__()
        check_steps("snapshot_every", self.snapshot_every, zero=True)
        snapshot_dtype(self.snapshot_dtype, self)  # an unknown name fails here, not at the first snapshot
        self._validate_growth()
        self._validate_mat()
        self._validate_twa()
        self._validate_cmd()

    @property
    def resolved_snapshot_dir(self) -> Path:
        """Where snapshots go."""
        return Path(self.snapshot_dir or Path(self.output_dir) / "snapshots")


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6; CUDA only before
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def _launched_without_accelerator() -> bool:
    """Several processes were launched but there is no GPU (so NCCL cannot work)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def _fsdp_requested(args: TrainingArguments) -> bool:
    return bool(args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def check_fsdp(args: EfficientTrainingArguments) -> None:
    """Refuse FSDP set-ups that would silently do something else, before any model is loaded.

    On CPUs accelerate runs an FSDP launch as plain DDP (its MULTI_CPU state ignores the FSDP plugin), so the
    user would get replicated, not sharded, weights. Under FSDP the methods that read or write whole parameter
    tensors (MAT's per-head slices, TWA's flattened checkpoints, CMD's and the snapshots' copies) would see shards;
    they are not supported there yet, and are refused with that reason instead of training wrongly.
    """
    if not _fsdp_requested(args):
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _has_accelerator():
        raise ArgumentsError(
            "FSDP was requested but this machine has no GPU: accelerate would run the processes as plain DDP "
            "(MULTI_CPU); on CPUs launch with torchrun or examples/accelerate/multi_cpu.yaml"
        )
    methods = {
        "mat": args.mat,
        "twa": args.twa,
        "cmd_online": args.cmd_online,
        "cmd_embed_every": bool(args.cmd_embed_every),
        "snapshot_every": bool(args.snapshot_every),
    }
    chosen = [name for name, on in methods.items() if on]
    if chosen:
        raise ArgumentsError(
            f"{', '.join(chosen)} cannot run under FSDP yet: they read whole parameter tensors, which FSDP shards "
            "across processes; use DDP (examples/accelerate/multi_gpu.yaml or torchrun)"
        )


def method_callbacks(args: TrainingArguments) -> list[TrainerCallback]:
    """The callbacks that the enabled methods need, in the order they must run."""
    if not isinstance(args, EfficientTrainingArguments):
        return []
    callbacks: list[TrainerCallback] = []
    if args.snapshot_every:
        dtype = snapshot_dtype(args.snapshot_dtype, args)
        callbacks.append(SnapshotCallback(args.resolved_snapshot_dir, every=args.snapshot_every, dtype=dtype))
    if args.growth_mask_ramp_steps:
        callbacks.append(MaskRampCallback(args.growth_mask_ramp_steps))
    if args.mat:
        from hf_efftrain.mat.callback import MATCallback

        callbacks.append(MATCallback(args.mat_config()))
    if args.twa:  # its phase releases MAT's gates through the model (hf_efftrain.links), as in any Trainer
        callbacks.append(TWACallback(args.twa_config()))
    if args.cmd_online or args.cmd_embed_every:
        callbacks.append(CMDCallback.from_args(args))
    return callbacks


def check_model_fits_methods(args: TrainingArguments, model: nn.Module) -> None:
    """Refuse a model a method cannot train *when the trainer is built*, not minutes later at ``train()``.

    MAT lays out its heads from the architecture registry at train begin; laying them out now costs a walk over
    the modules and turns a model MAT cannot gate (e.g. a PEFT/LoRA model, an unregistered family) into an error
    before any data is loaded or step is run. Example::

        check_model_fits_methods(EfficientTrainingArguments(output_dir="out", mat=True), lora_model)  # raises
    """
    if isinstance(args, EfficientTrainingArguments) and args.mat:
        from hf_efftrain.mat.layout import build_layout

        config = args.mat_config()
        build_layout(model, config.granularity, config.gqa_unit)


_LOSS_TAKES_KWARGS = re.compile(r"num_items_in_batch|loss_function\([^)]*\*\*kwargs", re.S)


def loss_counts_tokens(model: nn.Module) -> bool:
    """Whether the model's loss really divides by the ``num_items_in_batch`` the Trainer passes it.

    transformers 5 treats every model whose ``forward`` takes ``**kwargs`` as normalizing its loss by the token
    count of the whole batch, so it skips the division by gradient-accumulation steps and multiplies the loss by
    the number of processes. BERT/RoBERTa/DistilBERT/GPT-2 classifiers and BERT's masked LM take ``**kwargs`` but
    compute a plain mean, so their gradients (and logged losses) come out ``accumulation × processes`` too large.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wrappers
    try:
        source = inspect.getsource(type(base).forward)
    except (OSError, TypeError):
        return True  # no source to read: keep transformers' own decision
    return bool(_LOSS_TAKES_KWARGS.search(source))


class EfficientTrainer(Trainer):
    """``Trainer`` plus the callbacks of the methods enabled in :class:`EfficientTrainingArguments`.

    With ``fix_loss_scaling=True`` it also corrects transformers' loss scaling for models whose loss ignores
    ``num_items_in_batch`` (see :func:`loss_counts_tokens`), so gradient accumulation and several processes give
    the same update as one big batch. Off by default: with no option switched on it is ``Trainer``, bit for bit.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        fix = getattr(self.args, "fix_loss_scaling", False) and self.model_accepts_loss_kwargs
        if fix and not loss_counts_tokens(self.accelerator.unwrap_model(self.model)):
            self.model_accepts_loss_kwargs = False
        check_model_fits_methods(self.args, self.accelerator.unwrap_model(self.model))
        restore_mask(self.accelerator.unwrap_model(self.model))  # a reloaded mid-ramp checkpoint runs masked again
        for position, callback in enumerate(method_callbacks(self.args), start=1):
            self.callback_handler.callbacks.insert(position, callback)  # before reporters: they see our log keys
        self._twa = next((c for c in self.callback_handler.callbacks if isinstance(c, TWACallback)), None)
        if self._twa is not None and self._twa.requested.holdout:
            self._hold_out_for_twa(self._twa.requested.holdout)

    def create_model_card(self, *args, **kwargs) -> None:
        """A grown model's card (recipe, LAG table, this training; also what ``push_to_hub`` uploads), or
        Trainer's own card for any other model."""
        from hf_efftrain.growth.hub import write_trainer_card

        if not write_trainer_card(self):
            super().create_model_card(*args, **kwargs)

    def _hold_out_for_twa(self, fraction: float) -> None:
        """TWA-v: take the held-out rows out of the training data; the TWA phase gets its batches from them."""
        self.train_dataset, held_out = split_holdout(self.train_dataset, fraction, self.args.seed)

        def make_loader(sampler):
            return self._get_dataloader(held_out, "TWA held-out", self._train_batch_size, lambda _: sampler, True)

        self._twa.holdout = HoldoutBatches(make_loader, len(held_out), self.args.seed)

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """In the TWA phase of TWA-v the batches (and the loss normalization) come from the held-out rows."""
        twa = getattr(self, "_twa", None)
        if twa is not None and twa.holdout is not None and twa.phase == "twa":
            epoch_iterator = twa.holdout.iterator()
        return super().get_batch_samples(epoch_iterator, num_batches, device)
