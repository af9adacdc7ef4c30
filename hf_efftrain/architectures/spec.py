"""What hf_efftrain needs to know about one model family: where its layers live and which slices form a head.

An :class:`ArchitectureSpec` is data (paths relative to the base model, config keys, projection layouts); the
methods derive every head's rows and columns from it instead of branching on ``model_type``. Example::

    spec = get_architecture(model)
    spec.head_slices(model, layer=0, head=3)     # q/k/v rows and o columns of head 3 of layer 0
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from hf_efftrain.errors import UnknownArchitectureError

ProjectionKind = Literal["linear", "conv1d"]
Role = Literal["q", "k", "v", "o"]


@dataclass(frozen=True)
class Projection:
    """One projection inside a layer.

    ``path`` is relative to the layer module. ``kind`` says how its weight is laid out: ``linear`` stores
    ``[out, in]`` (``nn.Linear``), ``conv1d`` stores ``[in, out]`` (GPT-2's ``Conv1D``). ``fused`` is
    ``(index, count)`` when several roles share one module, e.g. GPT-2's ``c_attn`` holds q|k|v as
    ``(0, 3)``, ``(1, 3)``, ``(2, 3)`` along its output axis.
    """

    path: str
    kind: ProjectionKind = "linear"
    fused: tuple[int, int] = (0, 1)

    def out_dim(self) -> int:
        """Axis of the weight tensor that indexes output features."""
        return 0 if self.kind == "linear" else 1

    def in_dim(self) -> int:
        """Axis of the weight tensor that indexes input features."""
        return 1 - self.out_dim()


@dataclass(frozen=True)
class HeadGeometry:
    """Head counts of one model: ``num_kv_heads < num_heads`` means grouped-query attention."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int

    @property
    def group_size(self) -> int:
        """Query heads served by one k/v head."""
        return self.num_heads // self.num_kv_heads

    def kv_head_of(self, head: int) -> int:
        """The k/v head that query head ``head`` reads from."""
        return head // self.group_size

    def query_heads_of(self, kv_head: int) -> range:
        """The query heads that share k/v head ``kv_head``."""
        return range(kv_head * self.group_size, (kv_head + 1) * self.group_size)


@dataclass(frozen=True)
class ParamSlice:
    """The part of one projection's parameters that belongs to one head.

    ``module`` is the full dotted path from the model root, ``dim`` the weight axis that holds the head,
    ``index`` the range on that axis. ``has_bias`` is true when the bias is sliced the same way
    (only for projections whose *output* axis holds the head, and only if the module has a bias).
    """

    role: Role
    module: str
    dim: int
    index: slice
    has_bias: bool

    def weight(self, model: nn.Module) -> torch.Tensor:
        """A view of the head's part of the weight (writes go through to the model)."""
        param = _unwrap_peft(model.get_submodule(self.module)).weight
        return param.narrow(self.dim, self.index.start, self.index.stop - self.index.start)

    def bias(self, model: nn.Module) -> torch.Tensor | None:
        """A view of the head's part of the bias, or ``None`` when the bias is not per head."""
        if not self.has_bias:
            return None
        bias = _unwrap_peft(model.get_submodule(self.module)).bias
        return bias[self.index]


@dataclass(frozen=True)
class ArchitectureSpec:
    """Everything hf_efftrain needs to know about one model family.

    Paths are relative to the *base* model (``model.base_model``, e.g. ``BertModel`` inside
    ``BertForSequenceClassification``), so one spec serves every task head of the family.
    Config keys are the real attribute names (``n_layer`` for GPT-2), which growth operators set.
    """

    name: str
    model_types: tuple[str, ...]
    layers_path: str
    depth_key: str
    heads_key: str
    hidden_key: str
    query: Projection
    key: Projection
    value: Projection
    output: Projection
    mlp_in: tuple[Projection, ...]
    mlp_out: Projection
    kv_heads_key: str | None = None
    rotary: bool = False
    layer_attributes: tuple[str, ...] = field(default=())
    """Per-layer attributes that store the layer's own index (renumbered when layers move)."""

    # ---- config -----------------------------------------------------------------------------------------
    def num_layers(self, config) -> int:
        """The model's depth, read from the config key of this family."""
        return int(getattr(config, self.depth_key))

    def geometry(self, config) -> HeadGeometry:
        """Head counts and sizes; ``head_dim`` may differ from hidden/heads (Llama family)."""
        heads = int(getattr(config, self.heads_key))
        kv_heads = int(getattr(config, self.kv_heads_key, None) or heads) if self.kv_heads_key else heads
        hidden = int(getattr(config, self.hidden_key))
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        return HeadGeometry(heads, kv_heads, int(head_dim), hidden)

    # ---- modules ----------------------------------------------------------------------------------------
    def base_prefix(self, model: nn.Module) -> str:
        """Dotted path of the base model inside ``model`` ("" when ``model`` is the base model)."""
        base = base_model_of(model)
        for name, module in model.named_modules():
            if module is base:
                return name
        raise UnknownArchitectureError(f"cannot locate the base model inside {type(model).__name__}")

    def layers(self, model: nn.Module) -> nn.ModuleList:
        """The list of transformer layers."""
        return base_model_of(model).get_submodule(self.layers_path)

    def layer_path(self, model: nn.Module, layer: int) -> str:
        """Full dotted path of layer ``layer`` from the model root."""
        prefix = self.base_prefix(model)
        return ".".join(p for p in (prefix, self.layers_path, str(layer)) if p)

    def projections(self) -> dict[Role, Projection]:
        """The four attention projections by role."""
        return {"q": self.query, "k": self.key, "v": self.value, "o": self.output}

    def head_slices(self, model: nn.Module, layer: int, head: int) -> list[ParamSlice]:
        """Where query head ``head`` of ``layer`` lives: its q rows, its k/v group's rows, its o columns."""
        geo = self.geometry(model.config)
        if not 0 <= head < geo.num_heads:
            raise IndexError(f"head {head} out of range: the model has {geo.num_heads} heads per layer")
        layer_path = self.layer_path(model, layer)
        kv_head = geo.kv_head_of(head)
        slices = []
        for role, proj in self.projections().items():
            own = kv_head if role in ("k", "v") else head
            module = model.get_submodule(f"{layer_path}.{proj.path}")
            slices.append(self._slice(role, proj, module, f"{layer_path}.{proj.path}", own, geo))
        return slices

    def _slice(
        self, role: Role, proj: Projection, module: nn.Module, path: str, head: int, geo: HeadGeometry
    ) -> ParamSlice:
        index, count = proj.fused
        width = (geo.num_kv_heads if role in ("k", "v") else geo.num_heads) * geo.head_dim
        if count > 1:  # fused q|k|v: equal thirds along the output axis (no GQA in fused layouts we know)
            width_total = _unwrap_peft(module).weight.shape[proj.out_dim()]
            width = width_total // count
        start = index * width + head * geo.head_dim
        rows = slice(start, start + geo.head_dim)
        if role == "o":
            return ParamSlice(role, path, proj.in_dim(), rows, has_bias=False)
        has_bias = getattr(_unwrap_peft(module), "bias", None) is not None
        return ParamSlice(role, path, proj.out_dim(), rows, has_bias)

    def iter_heads(self, model: nn.Module) -> Iterator[tuple[int, int]]:
        """All ``(layer, head)`` pairs of the model."""
        geo = self.geometry(model.config)
        for layer in range(self.num_layers(model.config)):
            for head in range(geo.num_heads):
                yield layer, head


def base_model_of(model: nn.Module) -> nn.Module:
    """The bare transformer inside a task model or a PEFT wrapper."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):  # peft.PeftModel
        model = get_base()
    return getattr(model, "base_model", model)


def _unwrap_peft(module: nn.Module) -> nn.Module:
    """PEFT's LoRA layers wrap the original projection as ``base_layer``."""
    return getattr(module, "base_layer", module)
