"""Opening a model folder a user named (grow sources, transfer targets, ``--base-model``) with one-line errors.

Such a folder can hold anything: no ``config.json``, one that is not JSON or has wrongly typed fields, weights
cut short by a full disk, NaN weights from a diverged run. transformers answers these with a traceback, or
loads the NaNs silently; here each becomes a :class:`~hf_efftrain.errors.CheckpointError` naming the file
(and the tensor), before anything is written. Example::

    config = read_config("runs/a", what="source")         # PretrainedConfig
    check_weights("runs/a")                                # complete files, every value finite
    model = load_model("runs/a", AutoModelForCausalLM)     # both checks, then from_pretrained
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from hf_efftrain.errors import CorruptCheckpointError, MissingCheckpointError, NonFiniteWeightsError
from hf_efftrain.trajectory import read_safetensors_header, weight_files

# what transformers raises for a config or weights file it cannot use; anything else is a bug and keeps its traceback
UNREADABLE = (OSError, ValueError, TypeError, KeyError, StrictDataclassError, SafetensorError)


def read_config(folder: str | os.PathLike, what: str = "model folder") -> PretrainedConfig:
    """The folder's config; missing, not JSON, not an object, or with fields of the wrong type is one error."""
    file = Path(folder) / "config.json"
    if not file.is_file():
        raise MissingCheckpointError(f"{what} {folder} has no config.json; give a folder written by save_pretrained")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptCheckpointError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise CorruptCheckpointError(f"{file}: expected a JSON object with a 'model_type' string")
    try:
        return AutoConfig.from_pretrained(folder)
    except UNREADABLE as err:
        raise CorruptCheckpointError(f"{file}: transformers cannot use this config ({err})") from None


def check_finite(tensors: Iterable[tuple[str, torch.Tensor]], where: str | os.PathLike) -> None:
    """Refuse NaN/Inf values: they come from a diverged run and would spread into everything computed from them."""
    for name, tensor in tensors:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise NonFiniteWeightsError(
                f"{where}: tensor {name!r} holds NaN or Inf values (a diverged run?); use an earlier checkpoint"
            )


def _safetensors_files(folder: Path) -> tuple[Path, ...]:
    if not any(folder.glob("*.safetensors*")) and (folder / "pytorch_model.bin").is_file():
        return ()  # a legacy .bin folder: checked after loading, in load_model
    return weight_files(folder)


def check_weights(folder: str | os.PathLike) -> None:
    """Every safetensors file of the folder is present, complete, and holds only finite values."""
    for file in _safetensors_files(Path(folder)):
        read_safetensors_header(file)  # a truncated or garbled file names itself
        try:
            with safe_open(str(file), framework="pt") as handle:
                check_finite(((name, handle.get_tensor(name)) for name in handle.keys()), file)  # noqa: SIM118 (not iterable)
        except SafetensorError as err:
            raise CorruptCheckpointError(f"{file}: cannot read safetensors weights ({err})") from None


def load_tokenizer(
    folder: str | os.PathLike, what: str = "model folder", needed_for: str = "this command"
) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained(folder)``; a folder without a usable tokenizer is one error saying why."""
    try:
        return AutoTokenizer.from_pretrained(folder)
    except UNREADABLE as err:
        raise CorruptCheckpointError(
            f"{what} {folder} has no usable tokenizer ({' '.join(str(err).split())}); {needed_for} needs one: "
            "save the tokenizer next to the model"
        ) from None


def check_model_folder(folder: str | os.PathLike, what: str = "model folder") -> PretrainedConfig:
    """:func:`read_config` and :func:`check_weights` without building the model (to fail before long work)."""
    config = read_config(folder, what)
    check_weights(folder)
    return config


def load_model(folder: str | os.PathLike, model_class: type, what: str = "model folder") -> PreTrainedModel:
    """``model_class.from_pretrained(folder)`` after :func:`read_config` and :func:`check_weights`; a growth mask
    recorded in the config (a checkpoint saved during a masked-growth ramp) gets its hooks back."""
    from hf_efftrain.growth.mask_state import restore_mask
    from hf_efftrain.loading import from_pretrained_with_head

    check_model_folder(folder, what)
    try:
        model = from_pretrained_with_head(model_class, str(folder))  # quiet about a task head added on purpose
    except UNREADABLE as err:
        raise CorruptCheckpointError(f"{what} {folder}: cannot be loaded ({' '.join(str(err).split())})") from None
    if not _safetensors_files(Path(folder)):
        check_finite(model.state_dict().items(), Path(folder) / "pytorch_model.bin")
    restore_mask(model)
    return model
