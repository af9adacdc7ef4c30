"""One TWA step for each form: read the model's gradient, move inside the span, leave ``.grad`` empty.

* :class:`SubspaceTWA` (ICLR form): g ← Pᵀ(P g) is written back to ``.grad`` and an ordinary SGD
  (momentum, weight decay) steps the model's parameters. Starting in the span, momentum and decay stay in it.
* :class:`LayerwiseTWA` (journal form): AdamW on the coefficients X, then θ = c + Σ X P̃.

Both own their optimizer and learning-rate schedule and clear ``.grad`` afterwards, so that a surrounding
``Trainer`` optimizer (which skips parameters without gradient) does not move the weights again.

Trust region (``radius``): after every step, θ is pulled back onto the ball of that radius around the point the
phase started from (the plain average, or the last checkpoint with ``twa_init="last"``). Why: TWA's premise is
that a better point lies *among* the checkpoints, in the region the run explored, yet a learning rate is in
units of parameter norm and the right one depends on the model, the number of checkpoints and the loss scale:
with one too large, the momentum SGD of the subspace form leaves that region within a few steps and the loss
climbs back to chance. The radius is set in units of the checkpoints' own spread (``twa_trust`` × their RMS
distance from the average, see ``Collector.spread``), so it is scale-free, and it bounds how far TWA can move
whatever the learning rate. Both forms are linear in their coordinates around the start, so scaling the offset
back keeps θ in the span (subspace) or is a scaling of the coefficients' change X − X₀ (layer-wise). Example::

    solver = SubspaceTWA(view, basis, lr=0.05, momentum=0.9, total_steps=20, radius=2.0)
    solver.start(average)             # θ ← plain average of the checkpoints (or the last one: a point of the span)
    loss.backward(); solver.step()    # one TWA step, ‖θ − average‖ ≤ 2.0 afterwards
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hf_efftrain.twa.basis import SubspaceBasis
from hf_efftrain.twa.flat import TrainableView
from hf_efftrain.twa.layerwise import LayerwiseBasis


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the TWA learning rate at ``step`` of ``total``: cosine to 0, step decay (×0.1 at 50% and 75%)."""
    progress = min(step / max(total, 1), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "step":
        return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01
    return 1.0


class _Scheduled:
    """Shared bookkeeping: the optimizer, its schedule, the number of steps taken and the trust region."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, lr: float, schedule: str, total_steps: int, radius: float | None
    ) -> None:
        self.optimizer = optimizer
        self.base_lr, self.schedule, self.total_steps = lr, schedule, total_steps
        self.radius = radius if radius else None  # None or 0: unconstrained
        self.steps_done = 0
        self.confined_steps = 0  # steps whose result was pulled back onto the trust ball
        self._set_lr()

    def _shrink(self, offset: torch.Tensor) -> float:
        """Factor (≤ 1) that brings ``offset`` (θ − average) inside the trust ball; counts the steps it acts."""
        if self.radius is None:
            return 1.0
        norm = float(offset.norm())
        if norm <= self.radius:
            return 1.0
        self.confined_steps += 1
        return self.radius / norm

    def _set_lr(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * lr_factor(self.schedule, self.steps_done, self.total_steps)

    def _advance(self) -> None:
        self.optimizer.step()
        self.steps_done += 1
        self._set_lr()

    def distance_from_start(self) -> float:
        """‖θ − the point the phase started from‖: how far the TWA phase has moved the weights."""
        return float((self.view.vector() - self.start_point).norm())

    def _common_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "steps_done": self.steps_done,
            "radius": self.radius,
            "confined_steps": self.confined_steps,
        }

    def _load_common(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps_done = int(state["steps_done"])
        self.radius = state.get("radius")
        self.confined_steps = int(state.get("confined_steps", 0))
        self._set_lr()


class SubspaceTWA(_Scheduled):
    """Projected-gradient SGD in the span of an orthonormal :class:`SubspaceBasis`, within ``radius`` of the average."""

    def __init__(
        self,
        view: TrainableView,
        basis: SubspaceBasis,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        schedule: str = "cosine",
        total_steps: int = 1,
        radius: float | None = None,
    ) -> None:
        self.view, self.basis = view, basis
        self.centre: torch.Tensor | None = None
        optimizer = torch.optim.SGD(view.params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        super().__init__(optimizer, lr, schedule, total_steps, radius)

    @property
    def start_point(self) -> torch.Tensor:
        """Where the phase started (the trust region's centre)."""
        return self.centre

    def start(self, point: torch.Tensor) -> None:
        """θ ← ``point`` (the plain average or a checkpoint: a point of the span), the trust region's centre."""
        self.centre = point.detach().float().clone()
        self.view.assign(point)

    def step(self) -> None:
        """Project the gradient onto the basis, take the SGD step, then pull back inside the trust radius."""
        self.view.set_grads(self.basis.project(self.view.grad_vector()))
        self._advance()
        self.view.clear_grads()
        if self.radius is not None:
            offset = self.view.vector() - self.centre
            factor = self._shrink(offset)
            if factor < 1.0:
                self.view.assign(self.centre + factor * offset)

    @property
    def memory_mb(self) -> float:
        """Memory the basis holds on this process, in MiB."""
        return self.basis.memory_mb

    def state_dict(self) -> dict[str, Any]:
        """Basis, centre and optimizer state, for a checkpoint."""
        return {"form": "subspace", "basis": self.basis.state_dict(), "centre": self.centre, **self._common_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (resume)."""
        self.basis.load_state_dict(state["basis"])
        centre = state.get("centre")
        self.centre = centre.to(self.view.device).clone() if centre is not None else None
        self._load_common(state)


class LayerwiseTWA(_Scheduled):
    """AdamW on the layer-wise coefficients X of a :class:`LayerwiseBasis` (X = 0 is the plain average)."""

    def __init__(
        self,
        view: TrainableView,
        basis: LayerwiseBasis,
        lr: float,
        weight_decay: float = 0.0,
        schedule: str = "cosine",
        total_steps: int = 1,
        radius: float | None = None,
    ) -> None:
        self.view, self.basis = view, basis
        self.coefficients = torch.zeros(basis.local_rows, basis.blocks, device=view.device, requires_grad=True)
        self._place(None)  # X₀ = 0 until ``start`` says otherwise
        optimizer = torch.optim.AdamW([self.coefficients], lr=lr, weight_decay=weight_decay)
        super().__init__(optimizer, lr, schedule, total_steps, radius)

    def start(self, checkpoint: int | None = None) -> None:
        """θ ← c (X = 0, the plain average), or checkpoint number ``checkpoint`` (X = 1 on its row, 0 elsewhere);
        that point is the trust region's centre."""
        self._place(checkpoint)
        with torch.no_grad():
            self.coefficients.copy_(self.origin)
        self.view.assign(self.start_theta)

    def _place(self, checkpoint: int | None) -> None:
        """X₀ (derived from ``checkpoint``: 1 on its row on the process that owns it) and θ₀, the trust region's
        centre (the basis centre itself when starting at the average: no second D-vector). ``checkpoint`` is the
        same on every process, so all of them take part in the all-reduce of ``weights`` or none does."""
        self.start_checkpoint = checkpoint
        self.origin = torch.zeros_like(self.coefficients.detach())
        if checkpoint is not None and checkpoint in self.basis.indices:
            self.origin[self.basis.indices.index(checkpoint)] = 1.0
        self.start_theta = self.basis.weights(self.origin) if checkpoint is not None else self.basis.centre

    @property
    def start_point(self) -> torch.Tensor:
        """Where the phase started (θ at X₀, the trust region's centre)."""
        return self.start_theta

    def step(self) -> None:
        """Step the per-tensor coefficients, scale their change back inside the trust radius, write the weights."""
        self.coefficients.grad = self.basis.coefficient_grad(self.view.grad_vector())
        self._advance()
        theta = self.basis.weights(self.coefficients.detach())
        if self.radius is not None:
            start = self.start_theta
            factor = self._shrink(theta - start)
            if factor < 1.0:  # θ − θ₀ is linear in X − X₀: scaling one scales the other
                with torch.no_grad():
                    self.coefficients.copy_(self.origin + factor * (self.coefficients - self.origin))
                theta = start + factor * (theta - start)
        self.view.assign(theta)
        self.view.clear_grads()

    @property
    def memory_mb(self) -> float:
        """Memory the basis holds on this process, in MiB."""
        return self.basis.memory_mb

    def state_dict(self) -> dict[str, Any]:
        """Basis, coefficients and optimizer state, for a checkpoint."""
        return {
            "form": "layerwise",
            "basis": self.basis.state_dict(),
            "coefficients": self.coefficients.detach().clone(),
            "start_checkpoint": self.start_checkpoint,  # X₀ and θ₀ follow from it
            **self._common_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the coefficients and optimizer state of :meth:`state_dict`'s output (resume)."""
        with torch.no_grad():
            self.coefficients.copy_(state["coefficients"])
        self._place(state.get("start_checkpoint"))  # absent in states saved before twa_init: the average
        self._load_common(state)
