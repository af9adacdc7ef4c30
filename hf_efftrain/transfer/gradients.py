"""Loss gradients at arbitrary parameter points, on a fixed set of mini-batches per trajectory step.

Gradient matching compares the gradient at a source point θ_t with the gradient at the transferred point θ'_t;
the comparison is only meaningful when both are taken on the *same* data, so batches are chosen per step
once and reused for both sides (and again when GMT revisits a step). Dropout is off (``model.eval()``): the
gradients are then deterministic. Example::

    grads = LossGradients(model, step_batches(loader, steps=10, per_step=2))
    g = grads(model_state, step=3)             # dict name -> gradient, averaged over step 3's batches
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import cycle, islice

import torch
from torch import nn

Batch = Mapping[str, torch.Tensor]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]


def default_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The loss a 🤗 model computes itself from ``labels`` in the batch."""
    return model(**batch).loss


def step_batches(batches: Iterable[Batch], steps: int, per_step: int) -> list[list[Batch]]:
    """``steps`` groups of ``per_step`` batches, drawn in order from ``batches`` (cycled if too short)."""
    pool = list(islice(cycle(batches), steps * per_step))
    if not pool:
        raise ValueError("no batches to compute gradients on")
    return [pool[i * per_step : (i + 1) * per_step] for i in range(steps)]


class LossGradients:
    """``grads(params, step)``: the mean loss gradient at ``params`` over the batches of ``step``."""

    def __init__(self, model: nn.Module, batches: Sequence[Sequence[Batch]], loss_fn: LossFn = default_loss) -> None:
        self.model, self.batches, self.loss_fn = model, batches, loss_fn
        self.params = dict(model.named_parameters())
        self.device = next(model.parameters()).device

    def load(self, params: Mapping[str, torch.Tensor]) -> None:
        """Copy ``params`` into the model (names it lacks are an error, missing names keep their value)."""
        with torch.no_grad():
            for name, value in params.items():
                self.params[name].copy_(value)

    def __call__(self, params: Mapping[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """Gradient at ``params`` averaged over step ``step``'s batches, on the CPU, for the names in ``params``.

        A parameter without a gradient (unused by the loss) gets zeros, so both sides of a pair have the same
        names."""
        self.load(params)
        self.model.eval()
        self.model.zero_grad(set_to_none=True)
        batches = self.batches[step % len(self.batches)]
        for batch in batches:
            loss = self.loss_fn(self.model, {k: v.to(self.device) for k, v in batch.items()}) / len(batches)
            loss.backward()
        return {
            name: (p.grad.detach().cpu().clone() if p.grad is not None else torch.zeros_like(p, device="cpu"))
            for name, p in self.params.items()
            if name in params
        }
