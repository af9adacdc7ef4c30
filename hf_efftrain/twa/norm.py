"""Recompute batch-norm running statistics after the weights were replaced by an average.

Averaged or TWA weights never produced the activations that the running mean/variance of BatchNorm layers
were collected on, so those statistics are recomputed with one pass over training data (as
``torch.optim.swa_utils.update_bn`` does, but for the dict batches of 🤗 models). LayerNorm, RMSNorm and
GroupNorm keep no statistics: for Transformers this is usually a no-op. Example::

    recompute_norm_statistics(model, train_dataloader, max_batches=50)   # False if there was nothing to do
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn


def norm_layers_with_statistics(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The modules whose running statistics depend on the weights before them."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_norm_statistics(model: nn.Module, batches: Iterable, max_batches: int | None = None) -> bool:
    """Reset and re-estimate BatchNorm statistics (cumulative average over the batches); True if any."""
    layers = norm_layers_with_statistics(model)
    if not layers:
        return False
    momenta = {layer: layer.momentum for layer in layers}
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative moving average: every batch weighs the same
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        if isinstance(batch, Mapping):
            model(**{k: v.to(device) for k, v in batch.items() if k not in ("labels", "label")})
        else:
            model(batch[0].to(device) if isinstance(batch, list | tuple) else batch.to(device))
    for layer, momentum in momenta.items():
        layer.momentum = momentum
    model.train(was_training)
    return True
