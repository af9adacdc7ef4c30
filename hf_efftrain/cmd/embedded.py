"""Embedded CMD: tensors whose CMD coefficients stopped moving follow θ = a·r'(t) + b and are no longer trained.

Embedding is done per *tensor*, not per scalar, because only then is work really saved: the tensor gets
``requires_grad=False``, so autograd skips its weight-gradient (for ``nn.Linear``: one of the three matmuls
of its training step), the optimizer skips it (its state is dropped), and after each optimizer step its value
is set from the reference parameters, which keep training.

Which tensors: ``order="movement"`` (the paper's rule) takes the tensors whose (a, b) moved least since the last
check; each saves its own weight gradient only, since the layers below still need the input gradient.
``order="input_first"`` embeds a growing prefix of the network, from the input side: once nothing below a layer
trains, autograd drops that layer's input gradient too, so a prefix saves its whole backward pass (on MiniLM-L6
the embeddings and two of six layers save 35% of the backward FLOPs; the same share of scattered Linear weights
saves about half that). Its budgets count matrix weights (what carries backward work), and the modes'
references are kept out of the largest prefix it may embed (:func:`input_first_limit`).

Several processes: only the main process holds the online CMD state and chooses; it hands the choice with each
tensor's (a, b) and mode labels to the others (:meth:`Embedding.share` / :meth:`Embedding.adopt`, one broadcast
per embedding step), so every process freezes the same tensors at the same step and sets them to the same values
from its own (identical, DDP-synchronized) reference parameters. Example::

    embedding = Embedding()
    chosen = embedding.choose(online, params, fraction=0.1, budget=0.5)
    embedding.embed(chosen, online, model, optimizer)
    embedding.apply(model)                                # after every optimizer step
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from hf_efftrain.cmd.online import OnlineCMD, reference_tensor_names, reference_values


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


def matmul_weight_sizes(model: nn.Module) -> dict[str, int]:
    """Size of every weight that does matrix products (``nn.Linear``, GPT-2's ``Conv1D``): the backward work.

    Keyed by the parameter's name in ``named_parameters`` (a tied output head counts under the embedding's name)."""
    names = {id(p): n for n, p in model.named_parameters()}
    sizes = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"):
            sizes[names[id(weight)]] = weight.numel()
    return sizes


def input_first_limit(names: list[str], work: Mapping[str, int], budget: float) -> set[str]:
    """The tensors of the largest prefix of ``names`` whose matrix weights stay within ``budget`` of all.

    Why: ``input_first`` never embeds beyond it, so references taken from the other tensors never block it."""
    total = sum(work.get(n, 0) for n in names) or 1
    prefix, taken = set(), 0
    for name in names:
        taken += work.get(name, 0)
        if taken > budget * total:
            break
        prefix.add(name)
    return prefix


def _embed_now(fraction: float, budget: float, total: float, embedded: float) -> float:
    """How much to embed at this step: ``fraction`` of what is left, without passing ``budget`` of ``total``."""
    return min(fraction * (total - embedded), budget * total - embedded)


def embed_tensors(model: nn.Module, names: list[str], optimizer: torch.optim.Optimizer | None) -> None:
    """Stop training ``names``: no gradient (so no weight-gradient work), no optimizer update, state freed."""
    params = dict(model.named_parameters())
    for name in names:
        param = params[name]
        param.requires_grad_(False)
        param.grad = None
        if optimizer is not None:
            optimizer.state.pop(param, None)


def backward_flops(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> int:
    """Matmul FLOPs of one backward pass on ``batch`` (``torch.utils.flop_counter``), measured, not estimated.

    Why: an embedded tensor saves work only if autograd really skips its weight gradient; comparing this count
    with all tensors trainable and with the embedded ones frozen shows what is saved. Gradients are dropped after.
    """
    from torch.utils.flop_counter import FlopCounterMode

    loss = model(**batch).loss
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


class Embedding:
    """The embedded tensors with their frozen (a, b) and modes, plus the coefficients at the last check.

    It keeps what :meth:`apply` needs (labels of the embedded tensors, reference parameters, shift), so a process
    without the online CMD state can follow the embedded tensors too.
    """

    def __init__(self) -> None:
        self.a: dict[str, torch.Tensor] = {}
        self.b: dict[str, torch.Tensor] = {}
        self.labels: dict[str, torch.Tensor] = {}  # mode of each parameter of the embedded tensors (uint8)
        self.reference_ids: list[tuple[str, int]] = []
        self.shift = torch.zeros(0, dtype=torch.float64)
        self.previous: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.total_parameters = 0
        self._index: dict[str, torch.Tensor] = {}  # int32 labels of the embedded tensors, built lazily

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
        self,
        online: OnlineCMD,
        params: Mapping[str, torch.Tensor],
        fraction: float,
        budget: float,
        order: str = "movement",
        work: Mapping[str, int] | None = None,
    ) -> list[str]:
        """The tensors to embed now: ``fraction`` of what is not embedded yet, within ``budget`` in all.

        ``movement`` counts parameters and takes the least-moving tensors; ``input_first`` counts the matrix
        weights of ``work`` (:func:`matmul_weight_sizes`) and extends the embedded prefix of ``params``' order."""
        if not self.total_parameters:
            self.total_parameters = sum(t.numel() for t in online.labels.values())
        if order == "input_first":
            return self._extend_prefix(online, list(params), fraction, budget, work or {})
        movement = coefficient_movement(online, self.previous, params)
        embedded = sum(t.numel() for t in self.a.values())
        target = _embed_now(fraction, budget, self.total_parameters, embedded)
        chosen, taken = [], 0
        for name in sorted(movement, key=movement.get):
            size = online.labels[name].numel()
            if taken + size > target:
                continue
            chosen.append(name)
            taken += size
        return chosen

    def _extend_prefix(
        self, online: OnlineCMD, names: list[str], fraction: float, budget: float, work: Mapping[str, int]
    ) -> list[str]:
        """The next tensors in model order (input side first), stopping at the first that does not fit or that
        holds a reference. Tensors without matrix work (embedding tables, norms, biases) ride along free."""
        tracked = [n for n in names if n in online.labels]
        total = sum(work.get(n, 0) for n in tracked) or 1
        target = _embed_now(fraction, budget, total, sum(work.get(n, 0) for n in self.a))
        allowed, chosen, taken = set(self.candidates(online)), [], 0
        for name in tracked:
            if name in self.a:
                continue
            if name not in allowed or taken + work.get(name, 0) > target:
                break
            chosen.append(name)
            taken += work.get(name, 0)
        return chosen

    def embed(self, names: list[str], online: OnlineCMD, model: nn.Module, optimizer) -> None:
        """Freeze ``names`` at their current coefficients and stop training them."""
        self.reference_ids, self.shift = list(online.reference_ids), online.shift
        for name in names:
            a, b = online.coefficients(name)
            self.a[name], self.b[name], self.labels[name] = a.float(), b.float(), online.labels[name]
            online.frozen.add(name)
        embed_tensors(model, names, optimizer)

    def share(self, names: list[str]) -> dict:
        """What another process needs to embed ``names`` exactly as this one did (see :meth:`adopt`)."""
        return {
            "names": list(names),
            "a": {n: self.a[n] for n in names},
            "b": {n: self.b[n] for n in names},
            "labels": {n: self.labels[n] for n in names},
            "reference_ids": self.reference_ids,
            "shift": self.shift,
            "total_parameters": self.total_parameters,
        }

    def adopt(self, shared: dict, model: nn.Module, optimizer) -> None:
        """Embed the tensors another process chose (:meth:`share`), with its coefficients."""
        self.reference_ids, self.shift = [tuple(r) for r in shared["reference_ids"]], shared["shift"]
        self.total_parameters = shared["total_parameters"]
        for name in shared["names"]:
            self.a[name], self.b[name], self.labels[name] = shared["a"][name], shared["b"][name], shared["labels"][name]
        embed_tensors(model, shared["names"], optimizer)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Set every embedded tensor to a·r'(t) + b at the current reference values (float32, one fused op)."""
        if not self.a:
            return
        params = dict(model.named_parameters())
        r = reference_values(params, self.reference_ids, self.shift).float()
        for name, a in self.a.items():
            param = params[name]
            index = self._index.get(name)
            if index is None:  # cached: converting the uint8 labels every step would cost more than the update
                index = self._index[name] = self.labels[name].to(param.device, torch.int32)
            value = torch.addcmul(self.b[name].to(param.device), a.to(param.device), r.to(param.device)[index])
            param.copy_(value.to(param.dtype))

    def report(self, model: nn.Module) -> dict[str, float | int]:
        """Fraction embedded and the work it saves (FLOP estimate: a Linear costs 6·params per token to train)."""
        linear = matmul_weight_sizes(model)
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
        """Every tensor of the embedding state, flat-named for one safetensors file (checkpoint resume)."""
        out = {"total_parameters": torch.tensor([self.total_parameters])}
        for name in self.a:
            out[f"embedded_a.{name}"], out[f"embedded_b.{name}"] = self.a[name], self.b[name]
        for name, (a, b) in self.previous.items():
            out[f"previous_a.{name}"], out[f"previous_b.{name}"] = a, b
        return out

    @classmethod
    def from_state(
        cls, tensors: dict[str, torch.Tensor], online_tensors: dict[str, torch.Tensor], reference_ids: list
    ) -> Embedding:
        """Inverse of :meth:`state_tensors`; labels and shift come from the saved online state (``online_tensors``)."""
        embedding = cls()
        embedding.total_parameters = int(tensors["total_parameters"][0])
        embedding.reference_ids = [(n, int(i)) for n, i in reference_ids]
        embedding.shift = online_tensors["shift"].double()
        for key, value in tensors.items():
            kind, _, name = key.partition(".")
            if kind == "embedded_a":
                embedding.a[name], embedding.b[name] = value, tensors[f"embedded_b.{name}"]
                embedding.labels[name] = online_tensors[f"label.{name}"]
            elif kind == "previous_a":
                embedding.previous[name] = (value, tensors[f"previous_b.{name}"])
        return embedding
