"""Keeping a checkpoint's pooler through growth when the task class has none (BERT's masked-LM class drops it).

MiniLM and most BERT/RoBERTa checkpoints hold a pooler (dense + tanh on the first token) next to the encoder.
``BertForMaskedLM`` builds its encoder without one, so loading such a checkpoint for masked-LM growth silently
discards it, and ``AutoModel`` on the grown folder would then start from a *random* pooler. Growth therefore
attaches the checkpoint's pooler to the task model, frozen (the masked-LM loss never reads it); every operator
grows it with the rest (:func:`carry_pooler` in ``build_model``) and ``save_pretrained`` writes it, as the
Hub's ``bert-base-uncased`` holds a pooler next to its MLM head. Example::

    model = load_model(path, AutoModelForMaskedLM)
    attach_pooler(model, path)                     # True: model.bert.pooler now holds the checkpoint's pooler
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import PreTrainedModel

from hf_efftrain.errors import GrowthError
from hf_efftrain.trajectory import weight_files

POOLER = "pooler."


def _base(model: PreTrainedModel) -> nn.Module:
    return getattr(model, "base_model", model)


def lacks_pooler(model: PreTrainedModel) -> bool:
    """Whether the model's encoder has a pooler slot left empty (``BertModel(..., add_pooling_layer=False)``)."""
    base = _base(model)
    return hasattr(base, "pooler") and base.pooler is None


def pooler_class(model: PreTrainedModel) -> type[nn.Module] | None:
    """The family's pooler module class, found next to its base model class (``BertModel`` -> ``BertPooler``)."""
    base = type(_base(model))
    return getattr(sys.modules[base.__module__], base.__name__.replace("Model", "Pooler"), None)


def checkpoint_pooler_names(folder: str | os.PathLike) -> list[str]:
    """Names of the pooler tensors in a checkpoint folder's safetensors files (none for other formats)."""
    if not any(Path(folder).glob("*.safetensors*")):
        return []
    names = []
    for file in weight_files(Path(folder)):
        with safe_open(file, framework="pt") as handle:
            names += [name for name in handle.keys() if POOLER in name]  # noqa: SIM118 (safe_open is no dict)
    return names


def _checkpoint_pooler(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in weight_files(Path(folder)):
        with safe_open(file, framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118
                if POOLER in name:
                    tensors[name.split(POOLER, 1)[1]] = handle.get_tensor(name)
    return tensors


def _new_pooler(model: PreTrainedModel) -> nn.Module | None:
    cls = pooler_class(model)
    if cls is None:
        return None
    pooler = cls(model.config).to(next(model.parameters()).dtype)
    return pooler.requires_grad_(False)


def attach_pooler(model: PreTrainedModel, folder: str | os.PathLike) -> bool:
    """Give ``model`` the pooler its checkpoint ``folder`` holds but its class dropped; ``False`` if none was lost."""
    if not lacks_pooler(model) or not checkpoint_pooler_names(folder):
        return False
    pooler = _new_pooler(model)
    if pooler is None:
        return False
    try:
        pooler.load_state_dict(_checkpoint_pooler(folder), strict=True)
    except RuntimeError as err:
        raise GrowthError(f"the pooler of {folder} does not fit {type(pooler).__name__}: {err}") from None
    _base(model).pooler = pooler
    return True


def carry_pooler(like: PreTrainedModel, model: PreTrainedModel) -> None:
    """Give a freshly built target an (empty, frozen) pooler where its source carries an attached one."""
    if getattr(_base(like), "pooler", None) is not None and lacks_pooler(model):
        pooler = _new_pooler(model)
        if pooler is None:
            raise GrowthError(f"cannot rebuild the pooler of {type(like).__name__} for the grown model")
        _base(model).pooler = pooler
