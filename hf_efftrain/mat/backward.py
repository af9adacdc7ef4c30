"""Where the compute is saved: a projection whose weight gradient is computed only for active heads.

``GatedLinearFunction`` replaces ``F.linear`` (or GPT-2's ``Conv1D``) in training forwards of the hooked
projections. Its backward always returns the full input gradient (lower layers need it) but the weight
gradient only for the rows (q/k/v, FFN) or columns (output projection) of active modules:
``Δ[:, active]ᵀ X`` instead of ``ΔᵀX``. A projection with no active piece gets no weight gradient at all
(``None``, so the optimizer skips it), or zeros where a gradient must exist (DDP all-reduces every parameter).
A weight that needs no gradient at all (a PEFT base, an embedded CMD parameter) gets none computed or counted.
Backward FLOPs done and skipped are counted exactly per call. Example::

    handle = GatedProjection(entry, counter)
    handle.set_active(unit_active)          # bool per unit
    y = GatedLinearFunction.apply(x, weight, bias, handle)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hf_efftrain.mat.layout import ModuleLayout


@dataclass
class FlopCounter:
    """Backward FLOPs of the hooked projections: what a full backward would do and what was done."""

    full: float = 0.0
    done: float = 0.0

    @property
    def saved_fraction(self) -> float:
        """Share of the counted backward FLOPs that gating skipped (0 before anything was counted)."""
        return 1.0 - self.done / self.full if self.full else 0.0


class GatedProjection:
    """Per-projection gate state: which output rows / input columns get a weight gradient."""

    def __init__(self, entry: ModuleLayout, counter: FlopCounter) -> None:
        self.entry = entry
        self.counter = counter
        self.index: torch.Tensor | None = None  # None = every feature active
        self.gated: list[tuple[int, int]] = []  # feature ranges of inactive pieces
        self.zeros_when_gated = False

    @property
    def weight_axis(self) -> int:
        """Axis of the weight tensor along which pieces are cut."""
        out_first = self.entry.kind == "linear"
        return 0 if (self.entry.axis == "out") == out_first else 1

    def set_active(self, unit_active: torch.Tensor) -> None:
        """A piece is active when any of its owners is (GQA: a k/v head waits for all its query heads)."""
        flags = [bool(unit_active[list(p.units)].any()) for p in self.entry.pieces]
        self.gated = [(p.start, p.stop) for p, on in zip(self.entry.pieces, flags, strict=True) if not on]
        if not self.gated:
            self.index = None
            return
        rows = [torch.arange(p.start, p.stop) for p, on in zip(self.entry.pieces, flags, strict=True) if on]
        device = self.entry.module.weight.device
        self.index = torch.cat(rows).to(device) if rows else torch.empty(0, dtype=torch.long, device=device)

    def weight_grads(self, g2: torch.Tensor, x2: torch.Tensor, want_bias: bool):
        """(grad_weight, grad_bias) for flattened output-gradient ``g2`` [N, O] and input ``x2`` [N, I]."""
        conv = self.entry.kind == "conv1d"
        n, o, i = g2.shape[0], g2.shape[1], x2.shape[1]
        self.counter.full += 2.0 * n * o * i
        if self.index is None:
            self.counter.done += 2.0 * n * o * i
            return (x2.T @ g2 if conv else g2.T @ x2), (g2.sum(0) if want_bias else None)
        out_axis = self.entry.axis == "out"
        bias = g2.sum(0) if want_bias and not out_axis else None  # an output projection's bias is not per head
        if self.index.numel() == 0:
            if self.zeros_when_gated:
                weight = torch.zeros((i, o) if conv else (o, i), dtype=g2.dtype, device=g2.device)
                bias = torch.zeros(o, dtype=g2.dtype, device=g2.device) if want_bias and bias is None else bias
                return weight, bias
            return None, bias
        k = self.index.numel()
        self.counter.done += 2.0 * n * k * (i if out_axis else o)
        weight = torch.zeros((i, o) if conv else (o, i), dtype=g2.dtype, device=g2.device)
        if out_axis:
            part = g2[:, self.index]
            if conv:
                weight[:, self.index] = x2.T @ part
            else:
                weight[self.index] = part.T @ x2
            if want_bias:
                bias = torch.zeros(o, dtype=g2.dtype, device=g2.device)
                bias[self.index] = part.sum(0)
        else:
            part = x2[:, self.index]
            if conv:
                weight[self.index] = part.T @ g2
            else:
                weight[:, self.index] = g2.T @ part
        return weight, bias


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


class GatedLinearFunction(torch.autograd.Function):
    """``y = x Wᵀ + b`` (or ``x W + b`` for Conv1D) whose backward skips inactive heads' weight gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias, handle: GatedProjection):
        """The projection's ordinary output; saves the input and weight for the gated backward."""
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        cast = _autocast_dtype(x)
        if cast is not None:
            x, weight = x.to(cast), weight.to(cast)
            bias = None if bias is None else bias.to(cast)
        with torch.autocast(x.device.type, enabled=False):
            if handle.entry.kind == "conv1d":
                flat = x.reshape(-1, x.shape[-1]) @ weight
                y = (flat + bias if bias is not None else flat).reshape(*x.shape[:-1], weight.shape[1])
            else:
                y = nn.functional.linear(x, weight, bias)
        ctx.save_for_backward(x, weight)
        ctx.handle = handle
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        """Full input gradient; weight gradient of active modules' slices only, none for a frozen weight."""
        x, weight = ctx.saved_tensors
        handle: GatedProjection = ctx.handle
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        grad = grad.to(x.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ (weight.T if handle.entry.kind == "conv1d" else weight)).to(x_dtype)
            handle.counter.full += 2.0 * grad.numel() * x.shape[-1]
            handle.counter.done += 2.0 * grad.numel() * x.shape[-1]
        want_bias = ctx.has_bias and ctx.needs_input_grad[2]
        if not ctx.needs_input_grad[1]:  # a frozen weight (PEFT base, embedded CMD): no dW at all, none counted
            grad_b = grad.reshape(-1, grad.shape[-1]).sum(0).to(b_dtype) if want_bias else None
            return grad_x, None, grad_b, None
        grad_w, grad_b = handle.weight_grads(grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1]), want_bias)
        grad_w = None if grad_w is None else grad_w.to(w_dtype)
        grad_b = None if grad_b is None else grad_b.to(b_dtype)
        return grad_x, grad_w, grad_b, None
