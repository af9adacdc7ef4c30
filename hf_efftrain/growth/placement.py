"""Where LAG trains its candidates: the device the Trainer would choose, unless the caller names one.

Every candidate is trained by a Trainer, which places the model on ``TrainingArguments.device`` (accelerate's
choice: the process's GPU when one is visible, the CPU with ``use_cpu=True``). LAG follows that choice, so on a
GPU machine it trains on the GPU; an explicit ``device`` overrides it by switching ``use_cpu`` on a copy of the
arguments and is checked against what the Trainer then resolves. Example::

    args = place_arguments(args, "cpu")        # a copy that trains on the CPU even where a GPU is visible
    args.device                                # torch.device("cpu")
"""

from __future__ import annotations

import copy

import torch
from transformers import TrainingArguments

from hf_efftrain.errors import GrowthError

DeviceLike = str | torch.device | None


def place_arguments(args: TrainingArguments, device: DeviceLike = None) -> TrainingArguments:
    """``args`` itself when ``device`` is ``None``; else a copy whose Trainer trains on ``device``.

    The Trainer chooses only between the CPU and the accelerator of the process (a GPU index comes from
    ``CUDA_VISIBLE_DEVICES`` or the launcher's rank), so a device it would not use is a :class:`GrowthError`.
    """
    if device is None:
        return args
    try:
        wanted = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise GrowthError(f"device {device!r} is not a torch device name (e.g. 'cpu', 'cuda', 'cuda:0')") from err
    placed = copy.deepcopy(args)
    if placed.use_cpu != (wanted.type == "cpu"):
        placed.use_cpu = wanted.type == "cpu"
        placed.__dict__.pop("_setup_devices", None)  # a cached_property: resolve again for the new use_cpu
    got = placed.device
    if got.type != wanted.type or (wanted.index is not None and got.index not in (None, wanted.index)):
        raise GrowthError(
            f"LAG was asked to train on {wanted} but the Trainer resolves {got} here; pass device=None to follow "
            "TrainingArguments, and choose a GPU with CUDA_VISIBLE_DEVICES or your launcher"
        )
    return placed
