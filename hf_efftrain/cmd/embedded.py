"""Embedded CMD: tensors whose CMD coefficients stopped moving follow θ = a·r'(t) + b and are no longer trained.

Embedding is done per *tensor*, not per scalar, because only then is work really saved: the tensor gets
``requires_grad=False``, so autograd skips its weight-gradient (for ``nn.Linear``: one of the three matmuls
of its training step), the optimizer skips it (its state is dropped), and after each optimizer step its value
is set from the reference parameters, which keep training. Example::

    embedding = Embedding()
    chosen = embedding.choose(online, params, fraction=0.1, budget=0.5)
    embedding.embed(chosen, online, model, optimizer)
    embedding.apply(online, model)                        # after every optimizer step
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from hf_efftrain.cmd.online import OnlineCMD, reference_tensor_names


def coefficient_movement(
    online: OnlineCMD, previous: Mapping[str, tuple[torch.Tensor, torch.Tensor]], params: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """‖θ̂_now(t) − θ̂_before(t)‖ / ‖θ̂_now(t)‖ per tensor: how much its (a, b) changed since the last check."""
    r = online.reference_values(params)
    out = {}
    for name, (a_old, b_old) in previous.items():
        a, b = online.coefficients(name)
        rl = r[online.labels[name].long()]
        now = a * rl + b
        out[name] = float(torch.linalg.vector_norm(now - (a_old.double() * rl + b_old.double()))) / max(
            float(torch.linalg.vector_norm(now)), 1e-12
        )
    return out


def embed_tensors(model: nn.Module, names: list[str], optimizer: torch.optim.Optimizer | None) -> None:
    """Stop training ``names``: no gradient (so no weight-gradient work), no optimizer update, state freed."""
    params = dict(model.named_parameters())
    for name in names:
        param = params[name]
        param.requires_grad_(False)
        param.grad = None
        if optimizer is not None:
            optimizer.state.pop(param, None)


class Embedding:
    """The embedded tensors with their frozen (a, b), plus the coefficients at the last check."""

    def __init__(self) -> None:
        self.a: dict[str, torch.Tensor] = {}
        self.b: dict[str, torch.Tensor] = {}
        self.previous: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.total_parameters = 0
        self._index: dict[str, torch.Tensor] = {}  # int64 labels of the embedded tensors, built lazily

    def candidates(self, online: OnlineCMD) -> list[str]:
        """Tensors that may still be embedded: tracked, not yet embedded, holding no reference parameter."""
        protected = reference_tensor_names(online) | set(self.a)
        return [name for name in online.labels if name not in protected]

    def remember(self, online: OnlineCMD) -> None:
        """Store the current coefficients, to measure movement at the next check."""
        self.previous = {}
        for name in self.candidates(online):
            a, b = online.coefficients(name)
            self.previous[name] = (a.float(), b.float())

    def choose(
        self, online: OnlineCMD, params: Mapping[str, torch.Tensor], fraction: float, budget: float
    ) -> list[str]:
        """The least-moving tensors, about ``fraction`` of the not-yet-embedded parameters, within ``budget`` in all."""
        if not self.total_parameters:
            self.total_parameters = sum(t.numel() for t in online.labels.values())
        movement = coefficient_movement(online, self.previous, params)
        embedded = sum(t.numel() for t in self.a.values())
        target = min(fraction * (self.total_parameters - embedded), budget * self.total_parameters - embedded)
        chosen, taken = [], 0
        for name in sorted(movement, key=movement.get):
            size = online.labels[name].numel()
            if taken + size > target:
                continue
            chosen.append(name)
            taken += size
        return chosen

    def embed(self, names: list[str], online: OnlineCMD, model: nn.Module, optimizer) -> None:
        """Freeze ``names`` at their current coefficients and stop training them."""
        for name in names:
            a, b = online.coefficients(name)
            self.a[name], self.b[name] = a.float(), b.float()
            online.frozen.add(name)
        embed_tensors(model, names, optimizer)

    @torch.no_grad()
    def apply(self, online: OnlineCMD, model: nn.Module) -> None:
        """Set every embedded tensor to a·r'(t) + b at the current reference values (float32, one fused op)."""
        if not self.a:
            return
        params = dict(model.named_parameters())
        r = online.reference_values(params).float()
        for name, a in self.a.items():
            param = params[name]
            index = self._index.get(name)
            if index is None:  # cached: converting the uint8 labels every step would cost more than the update
                index = self._index[name] = online.labels[name].long().to(param.device)
            value = torch.addcmul(self.b[name].to(param.device), a.to(param.device), r.to(param.device)[index])
            param.copy_(value.to(param.dtype))

    def report(self, model: nn.Module) -> dict[str, float | int]:
        """Fraction embedded and the work it saves (FLOP estimate: a Linear costs 6·params per token to train)."""
        linear = {f"{path}.weight": m.weight.numel() for path, m in model.named_modules() if isinstance(m, nn.Linear)}
        embedded = sum(t.numel() for t in self.a.values())
        linear_embedded = sum(linear.get(name, 0) for name in self.a)
        linear_total = sum(linear.values()) or 1
        return {
            "embedded_tensors": len(self.a),
            "embedded_parameters": embedded,
            "embedded_fraction": embedded / max(1, self.total_parameters),
            "optimizer_updates_saved_fraction": embedded / max(1, self.total_parameters),
            "linear_weight_grad_saved_fraction": linear_embedded / linear_total,
            "linear_training_flops_saved_fraction": 2 * linear_embedded / (6 * linear_total),
        }

    # ---- persistence ---------------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {"total_parameters": torch.tensor([self.total_parameters])}
        for name in self.a:
            out[f"embedded_a.{name}"], out[f"embedded_b.{name}"] = self.a[name], self.b[name]
        for name, (a, b) in self.previous.items():
            out[f"previous_a.{name}"], out[f"previous_b.{name}"] = a, b
        return out

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor]) -> Embedding:
        embedding = cls()
        embedding.total_parameters = int(tensors["total_parameters"][0])
        for key, value in tensors.items():
            kind, _, name = key.partition(".")
            if kind == "embedded_a":
                embedding.a[name], embedding.b[name] = value, tensors[f"embedded_b.{name}"]
            elif kind == "previous_a":
                embedding.previous[name] = (value, tensors[f"previous_b.{name}"])
        return embedding
