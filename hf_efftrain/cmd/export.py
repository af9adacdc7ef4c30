"""Turning CMD weights into a loadable model folder: base model + reconstructed tensors, saved with save_pretrained.

Snapshots hold only the trained tensors, not the config, tokenizer or frozen weights, so the fit records a
*base model* folder (a Trainer checkpoint, the model's output folder, or any ``from_pretrained`` folder) and
the export loads it and overwrites the reconstructed tensors. Example::

    export_model({"classifier.bias": ...}, base_model="runs/demo/checkpoint-100", folder="runs/cmd/step-50")
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import transformers
from transformers import PreTrainedModel

from hf_efftrain.adapters import ADAPTER_WEIGHTS, is_adapter_folder, save_adapter
from hf_efftrain.errors import CMDFitError
from hf_efftrain.model_folder import check_model_folder, load_model, load_tokenizer, read_config
from hf_efftrain.outputs import output_directory
from hf_efftrain.trajectory import read_safetensors_header

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


def find_base_model(trajectory_root: str | os.PathLike, checkpoint_folders: list[Path]) -> str | None:
    """A folder that can rebuild the model (a ``config.json`` or a PEFT adapter): the newest checkpoint holding
    one, else the trajectory folder or its parent (a run's ``output_dir`` above its ``snapshots``)."""
    root = Path(trajectory_root)
    for candidate in [*checkpoint_folders[::-1], root, root.parent]:
        if (candidate / "config.json").is_file() or is_adapter_folder(candidate):
            return str(candidate.resolve())
    return None


def check_base_folder(folder: str | os.PathLike, what: str = "--base-model") -> None:
    """Refuse a base folder that cannot serve an export, before a long fit: a complete model or adapter folder."""
    if is_adapter_folder(folder):
        read_safetensors_header(Path(folder) / ADAPTER_WEIGHTS)  # a truncated adapter names itself now
        return
    check_model_folder(folder, what=what)


def export_reconstruction(weights: dict[str, torch.Tensor], base: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """An adapter folder when ``base`` is a PEFT adapter, else a full model folder (:func:`export_model`)."""
    if is_adapter_folder(base):
        return save_adapter(weights, like=base, folder=folder, command="cmd reconstruct")
    return export_model(weights, base, folder)


def _base_class(base_model: str | os.PathLike) -> tuple[type, object]:
    """The class named in the config's ``architectures`` (falls back to AutoModel) and the config."""
    if not (Path(base_model) / "config.json").is_file():
        raise CMDFitError(f"base model {base_model} has no config.json; pass --base-model with a model folder")
    config = read_config(base_model, what="base model")
    architecture = (config.architectures or [None])[0]
    model_class = getattr(transformers, architecture, None) if architecture else None
    return model_class or transformers.AutoModel, config


def load_base_model(base_model: str | os.PathLike) -> PreTrainedModel:
    """``from_pretrained`` with the class named in the config's ``architectures`` (falls back to AutoModel)."""
    model_class, _ = _base_class(base_model)
    return load_model(base_model, model_class, what="base model")


def model_with_weights(base_model: str | os.PathLike, weights: dict[str, torch.Tensor]) -> PreTrainedModel:
    """The base model with ``weights`` copied in; every name must be one of the model's parameters or buffers."""
    model_class, config = _base_class(base_model)
    with torch.device("meta"):  # names only: a wrong base model fails before its weights are read
        skeleton = model_class.from_config(config) if hasattr(model_class, "from_config") else model_class(config)
    unknown = sorted(set(weights) - set(skeleton.state_dict()))
    if unknown:
        raise CMDFitError(
            f"{len(unknown)} CMD tensors are not in {base_model} (first: {unknown[0]!r}); "
            "pass the --base-model the trajectory was trained from"
        )
    model = load_model(base_model, model_class, what="base model")
    state = model.state_dict()
    with torch.no_grad():
        for name, value in weights.items():
            state[name].copy_(value)
    return model


def export_model(weights: dict[str, torch.Tensor], base_model: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Write a ``from_pretrained``-able folder (weights + config + tokenizer files when the base has them).

    The folder is replaced whole; callers check it first with :func:`hf_efftrain.outputs.check_output`.
    """
    _base_class(base_model)  # a bad config.json is named as such, not as a tokenizer problem
    tokenizer = None
    if any((Path(base_model) / f).is_file() for f in TOKENIZER_FILES):  # a broken one fails before loading weights
        tokenizer = load_tokenizer(base_model, what="base model", needed_for="the exported folder")
    model = model_with_weights(base_model, weights)
    with output_directory(folder, "cmd reconstruct") as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(folder)
