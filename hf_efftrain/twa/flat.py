"""The trainable parameters of a model seen as one flat vector θ ∈ R^D (and their gradients as g ∈ R^D).

TWA works in the space of *trainable* parameters only: buffers (norm statistics) are not averaged by
training, and for a PEFT model only the adapter weights require gradients, so only they enter the basis.
Example::

    view = TrainableView(model)
    theta = view.vector()          # float32 copy, [D]
    view.assign(theta * 0.5)       # written back in place into the parameters
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from hf_efftrain.adapters import saved_name
from hf_efftrain.errors import TrajectoryMismatchError, TWAError


class TrainableView:
    """Flatten / unflatten the parameters of ``model`` that require gradients, in ``named_parameters`` order."""

    def __init__(self, model: nn.Module) -> None:
        self.names: list[str] = []
        self.params: list[nn.Parameter] = []
        for name, param in model.named_parameters():
            if param.requires_grad:
                self.names.append(name)
                self.params.append(param)
        if not self.params:
            raise TWAError("the model has no trainable parameters: TWA needs parameters with requires_grad=True")
        self.sizes: list[int] = [p.numel() for p in self.params]
        self.dim: int = sum(self.sizes)
        self.device = self.params[0].device

    def vector(self) -> torch.Tensor:
        """A float32 copy of θ."""
        return torch.cat([p.detach().reshape(-1).float() for p in self.params])

    def assign(self, vector: torch.Tensor) -> None:
        """θ ← ``vector`` (in place, keeping each parameter's dtype and device)."""
        with torch.no_grad():
            for param, piece in zip(self.params, vector.split(self.sizes), strict=True):
                param.copy_(piece.view_as(param))

    def grad_vector(self) -> torch.Tensor:
        """g as a float32 vector (zeros where a parameter has no gradient)."""
        pieces = [
            p.grad.detach().reshape(-1).float() if p.grad is not None else torch.zeros(p.numel(), device=p.device)
            for p in self.params
        ]
        return torch.cat(pieces)

    def set_grads(self, vector: torch.Tensor) -> None:
        """``.grad`` ← ``vector``, so that an ordinary optimizer steps along it."""
        for param, piece in zip(self.params, vector.split(self.sizes), strict=True):
            param.grad = piece.view_as(param).to(param.dtype).clone()

    def clear_grads(self) -> None:
        """Drop the gradients: optimizers skip parameters whose ``.grad`` is None."""
        for param in self.params:
            param.grad = None

    def vector_from_state(self, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """θ of a saved checkpoint (Trainer, PEFT adapter or snapshot naming), in this view's order."""
        by_name = {saved_name(k): v for k, v in state.items()}
        pieces = []
        for name, size in zip(self.names, self.sizes, strict=True):
            tensor = state.get(name)
            if tensor is None:
                tensor = by_name.get(saved_name(name))
            if tensor is None:
                raise TrajectoryMismatchError(
                    f"checkpoint has no tensor for trainable parameter {name!r}: "
                    "was it saved from the same model with the same trainable parameters?"
                )
            if tensor.numel() != size:
                raise TrajectoryMismatchError(f"{name!r}: checkpoint has {tensor.numel()} values, model has {size}")
            pieces.append(tensor.reshape(-1).float())
        return torch.cat(pieces).to(self.device)

    def nbytes(self, rows: int = 1, bytes_per_value: float = 4) -> int:
        """Bytes of ``rows`` vectors of this view."""
        return math.ceil(rows * self.dim * bytes_per_value)
