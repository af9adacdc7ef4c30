"""Post-hoc TWA in a plain loop: checkpoints in, the model left at the TWA solution.

For when the checkpoints already exist (a folder of ``checkpoint-N``/``snapshot-N``, or tensors you hold)
and no Trainer is involved. In several processes, give every process the same batches or wrap the model in
DDP, so that all see the same gradient; the basis is split over them either way. Example::

    solver = train_twa(model, "runs/demo", batches, TWAConfig(steps=50, lr=0.05))
    solver.memory_mb          # basis memory on this process
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from hf_efftrain.twa.collect import Collector, Solver, add_from_folder
from hf_efftrain.twa.config import TWAConfig
from hf_efftrain.twa.flat import TrainableView

Checkpoints = str | os.PathLike | Iterable[torch.Tensor | Mapping[str, torch.Tensor]]


def collect(model: nn.Module, checkpoints: Checkpoints, config: TWAConfig) -> Collector:
    """A collector holding ``checkpoints``: a trajectory folder, flat θ vectors, or state dicts."""
    view = TrainableView(model)
    collector = Collector(view, config)
    if isinstance(checkpoints, str | os.PathLike):
        add_from_folder(collector, checkpoints)
        return collector
    for item in checkpoints:
        collector.add(view.vector_from_state(item) if isinstance(item, Mapping) else item)
    return collector


def train_twa(
    model: nn.Module,
    checkpoints: Checkpoints,
    batches: Iterable,
    config: TWAConfig | None = None,
    loss_fn: Callable[[nn.Module, object], torch.Tensor] | None = None,
    max_grad_norm: float | None = None,
) -> Solver:
    """Run ``config.steps`` TWA steps over ``batches`` (cycled) from ``config.init``'s point; the model keeps it.

    ``loss_fn(model, batch)`` defaults to ``model(**batch).loss`` (🤗 models with labels in the batch);
    ``max_grad_norm`` clips the gradient before projection, as the Trainer does.
    """
    config = config or TWAConfig()
    collector = collect(model, checkpoints, config)
    solver = collector.build(total_steps=config.steps)
    solver.view.clear_grads()  # gradients left over from earlier training must not leak into the first step
    model.train()
    stream = itertools.cycle(batches)
    for _ in range(config.steps):
        batch = next(stream)
        loss = loss_fn(model, batch) if loss_fn is not None else model(**batch).loss
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(solver.view.params, max_grad_norm)
        solver.step()
    return solver
