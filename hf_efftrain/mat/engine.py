"""MATEngine: the functional core that a training loop (or :class:`MATCallback`) drives.

It patches the hooked projections' forward with :class:`GatedLinearFunction`, keeps gated parameters
bit-identical through optimizer step hooks, optionally stops back-propagation below the lowest layer that
still has an active module, and measures λmax / updates the gates when asked. Usable in a plain loop::

    engine = MATEngine(model, MATConfig(every=10, warmup_steps=20)).attach()
    engine.guard_optimizer(optimizer)
    for step, batch in enumerate(loader, 1):
        model(**batch).loss.backward(); optimizer.step(); optimizer.zero_grad()
        engine.after_step(step, batch)
    engine.detach()
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from hf_efftrain.distributed import process_count
from hf_efftrain.errors import MATConfigError
from hf_efftrain.mat.backward import FlopCounter, GatedLinearFunction, GatedProjection
from hf_efftrain.mat.config import MATConfig
from hf_efftrain.mat.gating import gates_for_step, update_ema
from hf_efftrain.mat.layout import Layout, build_layout
from hf_efftrain.mat.ntk import estimate_lambda_max
from hf_efftrain.mat.optim import OptimizerGuard


def _trim_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop trailing token columns that are padding in every probe row (they cost time and add nothing)."""
    mask = batch.get("attention_mask")
    if mask is None or mask.dim() != 2:
        return batch
    used = int(mask.any(0).nonzero().max()) + 1 if mask.any() else mask.shape[1]
    width = mask.shape[1]
    return {k: (v[:, :used] if v.dim() >= 2 and v.shape[1] == width else v) for k, v in batch.items()}


class MATEngine:
    """Gates, measurements and patches of one model. State to checkpoint: :meth:`state_dict`."""

    def __init__(self, model: nn.Module, config: MATConfig | None = None) -> None:
        self.model = model
        self.config = (config or MATConfig()).validate()
        self.layout: Layout = build_layout(model, self.config.granularity, self.config.gqa_unit)
        self.counter = FlopCounter()
        self.handles = [GatedProjection(entry, self.counter) for entry in self.layout.modules]
        self.ema: torch.Tensor | None = None
        self.last_lambda: torch.Tensor | None = None
        self.active = torch.ones(len(self.layout.units), dtype=torch.bool)
        self.stop_layer = 0
        self.history: list[dict[str, Any]] = []
        self.measure_seconds = 0.0
        self.measurements = 0
        self.interval = int(self.config.every)  # grows while gates stay stable (config.stable_backoff)
        self.next_step = int(self.config.every)
        self._hooks: list[Any] = []
        self._guard: OptimizerGuard | None = None
        self._probing = False

    # ---- wiring ---------------------------------------------------------------------------------------------
    def attach(self) -> MATEngine:
        """Patch projections and (if enabled) install the back-propagation stop hooks."""
        world = process_count()
        if self.config.stop_backprop and world > 1:
            raise MATConfigError("mat_stop_backprop cannot run under DDP (ranks would wait for missing gradients)")
        for handle in self.handles:
            handle.zeros_when_gated = world > 1 or not self.config.skip_optimizer_update
            module = handle.entry.module
            module.forward = self._patched_forward(module, handle)  # an instance attribute: state_dict unchanged
        if self.config.stop_backprop:
            for index, layer in enumerate(self.layout.arch.layers(self.model)):
                self._hooks.append(layer.register_forward_pre_hook(self._stop_pre_hook(index)))
                self._hooks.append(layer.register_forward_hook(self._stop_post_hook))
        self.apply_gates(self.active)
        return self

    def detach(self) -> None:
        """Undo every patch and hook (the model is a plain model again)."""
        for handle in self.handles:
            handle.entry.module.__dict__.pop("forward", None)  # back to the class's forward
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        if self._guard is not None:
            self._guard.remove()
            self._guard = None

    def guard_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Keep gated slices (and their optimizer state) bit-identical across ``optimizer.step()``."""
        if self._guard is not None:
            self._guard.remove()
        self._guard = OptimizerGuard(getattr(optimizer, "optimizer", optimizer), self.handles)

    def _patched_forward(self, module: nn.Module, handle: GatedProjection):
        original = module.forward

        def forward(x: torch.Tensor) -> torch.Tensor:
            if self._probing or not module.training:
                return original(x)
            if not torch.is_grad_enabled():  # inside a layer below the back-propagation stop
                flops = 4.0 * x.numel() * handle.entry.out_features
                self.counter.full += flops if self.stop_layer else 0.0
                return original(x)
            return GatedLinearFunction.apply(x, module.weight, module.bias, handle)

        return forward

    def _stop_pre_hook(self, index: int):
        def hook(module, _args):
            module._mat_grad_mode = torch.is_grad_enabled()
            if module.training and not self._probing and index < self.stop_layer:
                torch.set_grad_enabled(False)

        return hook

    @staticmethod
    def _stop_post_hook(module, _args, _output):
        torch.set_grad_enabled(module._mat_grad_mode)

    # ---- gates ----------------------------------------------------------------------------------------------
    def apply_gates(self, active: torch.Tensor) -> None:
        """Set unit gates; recompute per-projection indices and the back-propagation stop layer."""
        self.active = active.clone()
        for handle in self.handles:
            handle.set_active(self.active)
        self.stop_layer = 0
        if self.config.stop_backprop:
            live = [u.layer for u, on in zip(self.layout.units, self.active.tolist(), strict=True) if on]
            self.stop_layer = min(live) if live else self.layout.num_layers

    @property
    def is_probing(self) -> bool:
        """True inside :meth:`probing` (hooks must not treat the probe forward as a training forward)."""
        return self._probing

    @contextmanager
    def probing(self):
        """Plain forward/backward (no gating, no stop) for λmax measurements."""
        was_training = self.model.training
        self._probing = True
        self.model.eval()
        try:
            yield
        finally:
            self._probing = False
            self.model.train(was_training)

    def measure(self, inputs: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """λmax of every unit on the first ``probe_size`` rows of ``inputs``, averaged over DDP ranks."""
        start = time.perf_counter()
        probe = {
            k: v[: self.config.probe_size].detach()
            for k, v in inputs.items()
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and k != "num_items_in_batch"
        }
        probe = _trim_padding(probe)
        with self.probing():
            lam = estimate_lambda_max(
                self.model, self.layout, probe, self.config.output, self.config.seed + step, self.config.gram_strategy
            )
        if process_count() > 1:
            torch.distributed.all_reduce(lam, op=torch.distributed.ReduceOp.SUM)
            lam /= process_count()
        self.measure_seconds += time.perf_counter() - start
        self.measurements += 1
        return lam.cpu()

    def after_step(self, step: int, inputs: dict[str, torch.Tensor] | None) -> bool:
        """Measure and re-gate when ``step`` is due; return whether gates were recomputed."""
        if inputs is None or step < self.next_step:
            return False
        lam = self.measure(inputs, step)
        self.last_lambda = lam
        self.ema = update_ema(self.ema, lam, self.config.ema)
        cfg = self.config
        previous = self.active
        self.apply_gates(
            gates_for_step(self.ema, self.layout, step, cfg.warmup_steps, cfg.threshold_rule, cfg.threshold, cfg.scope)
        )
        flipped = int((previous != self.active).sum())
        stable = flipped <= cfg.stable_tolerance * len(self.active)
        self._schedule_next(step, gated=step >= cfg.warmup_steps, stable=stable)
        self.history.append({"step": step, "lambda": lam.tolist(), "active": self.active.tolist()})
        return True

    def _schedule_next(self, step: int, gated: bool, stable: bool) -> None:
        """Double the interval after a stable measurement (up to ``stable_backoff × every``): see stable_tolerance."""
        every = int(self.config.every)
        self.interval = min(2 * self.interval, every * self.config.stable_backoff) if gated and stable else every
        self.next_step = step + self.interval

    # ---- state ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: what resuming needs to continue with the same gates."""
        return {
            "units": [unit.name for unit in self.layout.units],  # names for reports read from a checkpoint
            "ema": None if self.ema is None else self.ema.tolist(),
            "active": self.active.tolist(),
            "history": self.history,
            "measure_seconds": self.measure_seconds,
            "measurements": self.measurements,
            "flops_full": self.counter.full,
            "flops_done": self.counter.done,
            "interval": self.interval,
            "next_step": self.next_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.ema = None if state.get("ema") is None else torch.tensor(state["ema"], dtype=torch.float64)
        self.history = list(state.get("history", []))
        self.measure_seconds = float(state.get("measure_seconds", 0.0))
        self.measurements = int(state.get("measurements", 0))
        self.counter.full = float(state.get("flops_full", 0.0))
        self.counter.done = float(state.get("flops_done", 0.0))
        self.interval = int(state.get("interval", self.config.every))
        last = self.history[-1]["step"] if self.history else 0
        self.next_step = int(state.get("next_step", last + self.interval))
        self.apply_gates(torch.tensor(state["active"], dtype=torch.bool))
