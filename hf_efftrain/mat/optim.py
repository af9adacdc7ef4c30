"""Keep gated heads bit-identical through any optimizer step (AdamW momentum and weight decay included).

A zero gradient is not enough: AdamW still moves a row through its momentum and its decoupled weight decay.
So, around ``optimizer.step()``, the gated slices of every partially gated projection — the parameter and the
optimizer-state tensors of the same shape (``exp_avg``, ``exp_avg_sq``, ...) — are copied before and written back
after. A fully gated projection has no gradient (``None``), which every torch optimizer skips outright: no update,
no decay, no work. Example::

    guard = OptimizerGuard(optimizer, handles)   # registers step pre/post hooks
    ...
    guard.remove()
"""

from __future__ import annotations

import torch

from hf_efftrain.mat.backward import GatedProjection


class OptimizerGuard:
    """Step hooks that restore the gated slices after each optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, handles: list[GatedProjection]) -> None:
        self.optimizer = optimizer
        self.handles = handles
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._hooks = [
            optimizer.register_step_pre_hook(self._before),
            optimizer.register_step_post_hook(self._after),
        ]

    def _tensors_of(self, param: torch.Tensor) -> list[torch.Tensor]:
        state = self.optimizer.state.get(param, {})
        extra = [t for t in state.values() if isinstance(t, torch.Tensor) and t.shape == param.shape]
        return [param.data, *extra]

    def _before(self, _optimizer, _args, _kwargs) -> None:
        self._saved = []
        for handle in self.handles:
            if not handle.gated:
                continue
            module = handle.entry.module
            targets = [(module.weight, handle.weight_axis)]
            if handle.entry.axis == "out" and getattr(module, "bias", None) is not None:
                targets.append((module.bias, 0))
            for param, axis in targets:
                if param.grad is None:
                    continue  # the optimizer will not touch it
                for tensor in self._tensors_of(param):
                    for start, stop in handle.gated:
                        view = tensor.narrow(axis, start, stop - start)
                        self._saved.append((view, view.clone()))

    def _after(self, _optimizer, _args, _kwargs) -> None:
        # Optimizer state may be created lazily on the first step: its gated slices then hold the first
        # update's moments. Restoring the parameter is what keeps the head frozen; state is restored when present.
        with torch.no_grad():
            for view, copy in self._saved:
                view.copy_(copy)
        self._saved = []

    def remove(self) -> None:
        """Take the optimizer hooks off again (when MAT detaches from the run)."""
        for hook in self._hooks:
            hook.remove()
