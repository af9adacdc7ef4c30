"""PEFT adapter folders: the names adapter tensors are saved under, and writing a folder from new adapter weights.

A PEFT model's parameters carry the adapter name (``...q_proj.lora_A.default.weight``); ``save_pretrained``
writes them without it (``...q_proj.lora_A.weight``) next to ``adapter_config.json``. Our snapshots keep the
parameter names, Trainer checkpoints the saved ones; :func:`saved_name` maps either to the saved form, so
adapter weights computed from a trajectory (a CMD reconstruction, an average) become a folder that
``PeftModel.from_pretrained(base, folder)`` loads, without loading the base model. Example::

    save_adapter(weights, like="runs/lora/checkpoint-40", folder="runs/lora/cmd-step-30", command="cmd reconstruct")
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from hf_efftrain.atomic import write_safetensors
from hf_efftrain.errors import MissingCheckpointError, TrajectoryMismatchError
from hf_efftrain.outputs import output_directory
from hf_efftrain.trajectory import read_safetensors_header

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# PEFT's default adapter name inside parameter names; modules_to_save copies carry it after their own segment
_ADAPTER_SEGMENT = re.compile(r"\.(default|modules_to_save\.default)(?=\.)")


def saved_name(name: str) -> str:
    """The name PEFT's ``save_pretrained`` gives the parameter ``name`` (unchanged if it is already saved form)."""
    return _ADAPTER_SEGMENT.sub("", name)


def is_adapter_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a PEFT adapter saved as safetensors (config + weights)."""
    folder = Path(folder)
    return (folder / ADAPTER_CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file()


def _reference_tensors(like: Path) -> dict[str, torch.Tensor]:
    if not is_adapter_folder(like):
        raise MissingCheckpointError(
            f"{like} is not a PEFT adapter folder (no {ADAPTER_CONFIG} with {ADAPTER_WEIGHTS}); pass the folder "
            "a PEFT Trainer checkpoint or model.save_pretrained() wrote"
        )
    file = like / ADAPTER_WEIGHTS
    read_safetensors_header(file)  # a truncated file names itself
    with safe_open(str(file), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not iterable)


def save_adapter(
    weights: dict[str, torch.Tensor], like: str | os.PathLike, folder: str | os.PathLike, command: str
) -> Path:
    """Write an adapter folder with ``like``'s config and ``weights`` in place of its tensors (written whole).

    ``weights`` may use parameter or saved names; tensors it lacks keep ``like``'s values, each tensor keeps
    ``like``'s dtype. A name ``like`` does not have is refused: the weights come from another adapter.
    """
    like = Path(like)
    reference = _reference_tensors(like)
    renamed = {saved_name(name): value for name, value in weights.items()}
    unknown = sorted(set(renamed) - set(reference))
    if unknown:
        raise TrajectoryMismatchError(
            f"{len(unknown)} tensors are not in the adapter {like} (first: {unknown[0]!r}); "
            "pass the adapter folder the trajectory was trained with"
        )
    tensors = {}
    for name, value in reference.items():
        new = renamed.get(name, value)
        if tuple(new.shape) != tuple(value.shape):
            raise TrajectoryMismatchError(f"{name!r}: shape {tuple(new.shape)}, the adapter {like} has {value.shape}")
        tensors[name] = new.detach().to("cpu", value.dtype).contiguous()
    with output_directory(folder, command) as tmp:
        shutil.copyfile(like / ADAPTER_CONFIG, tmp / ADAPTER_CONFIG)
        write_safetensors(tmp / ADAPTER_WEIGHTS, tensors, {"format": "pt"})
    return Path(folder)
