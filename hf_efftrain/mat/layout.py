"""Which parameters form each MAT *module* (an attention head, optionally a layer's FFN block).

Built from the architecture registry, so every family the registry knows works without if-chains. A module
owns *pieces*: feature ranges of projections (rows of q/k/v, columns of the output projection, a whole FFN
projection). Under grouped-query attention a k/v piece is owned by all the query heads that read it. Example::

    layout = build_layout(model, granularity="heads")
    layout.units[5].name                    # "L0.H5"
    [m.path for m in layout.modules][:2]    # ['bert.encoder.layer.0.attention.self.query', ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from hf_efftrain.architectures import ArchitectureSpec, Projection, get_architecture
from hf_efftrain.errors import MATConfigError

Axis = Literal["out", "in"]


@dataclass(frozen=True)
class Unit:
    """One gateable module: head ``index`` of ``layer`` or the FFN block of ``layer``."""

    kind: Literal["head", "group", "ffn"]
    layer: int
    index: int = 0

    @property
    def name(self) -> str:
        """``L0.H5`` (query head), ``L0.G1`` (k/v group under ``gqa_unit="kv_group"``), ``L0.FFN``."""
        if self.kind == "ffn":
            return f"L{self.layer}.FFN"
        return f"L{self.layer}.{'H' if self.kind == 'head' else 'G'}{self.index}"


@dataclass(frozen=True)
class Piece:
    """Features ``start:stop`` of a projection along its layout's axis, owned by ``units``."""

    units: tuple[int, ...]
    start: int
    stop: int
    bias: bool


@dataclass
class ModuleLayout:
    """A projection that MAT hooks: its weight layout and the pieces that belong to units."""

    path: str
    module: nn.Module
    kind: Literal["linear", "conv1d"]
    axis: Axis
    layer: int
    pieces: list[Piece] = field(default_factory=list)

    @property
    def out_features(self) -> int:
        weight = self.module.weight
        return weight.shape[0] if self.kind == "linear" else weight.shape[1]

    @property
    def in_features(self) -> int:
        weight = self.module.weight
        return weight.shape[1] if self.kind == "linear" else weight.shape[0]


@dataclass
class Layout:
    """All units and hooked projections of a model, in layer order."""

    units: list[Unit]
    modules: list[ModuleLayout]
    num_layers: int
    arch: ArchitectureSpec

    def unit_ids(self, kind: str | None = None, layer: int | None = None) -> list[int]:
        return [
            i
            for i, u in enumerate(self.units)
            if (kind is None or u.kind == kind) and (layer is None or u.layer == layer)
        ]


def refuse_peft(model: nn.Module) -> None:
    """MAT gates full fine-tuning; LoRA adapters would need their own kernels, so refuse clearly."""
    if hasattr(model, "peft_config") or any(hasattr(m, "base_layer") for m in model.modules()):
        raise MATConfigError(
            "MAT does not support PEFT/LoRA models: a head's LoRA factors are shared across heads (LoRA A of q/k/v, "
            "LoRA B of the output projection), so their gradients cannot be gated per head. Train with MAT on the "
            "full model (mat=False for LoRA runs), or merge the adapter first with model.merge_and_unload()."
        )


def build_layout(model: nn.Module, granularity: str = "heads", gqa_unit: str = "query_head") -> Layout:
    """Units and projection pieces of ``model``, from the architecture registry.

    With ``gqa_unit="kv_group"`` (and grouped-query attention) a unit is a k/v head with every query head that
    reads it; without GQA the two are the same thing and query heads are kept.
    """
    refuse_peft(model)
    arch = get_architecture(model)
    geo = arch.geometry(model.config)
    depth = arch.num_layers(model.config)
    grouped = gqa_unit == "kv_group" and geo.group_size > 1
    per_layer = geo.num_kv_heads if grouped else geo.num_heads
    units = [Unit("group" if grouped else "head", layer, i) for layer in range(depth) for i in range(per_layer)]
    if granularity == "heads+ffn":
        units += [Unit("ffn", layer) for layer in range(depth)]
    unit_id = {(u.kind, u.layer, u.index): i for i, u in enumerate(units)}
    modules: dict[str, ModuleLayout] = {}
    for layer in range(depth):
        owner = {
            h: unit_id[("group", layer, geo.kv_head_of(h)) if grouped else ("head", layer, h)]
            for h in range(geo.num_heads)
        }
        _add_head_pieces(model, arch, layer, geo.num_heads, owner, modules)
        if granularity == "heads+ffn":
            for proj in (*arch.mlp_in, arch.mlp_out):
                _add_whole(model, arch, layer, proj, unit_id[("ffn", layer, 0)], modules)
    ordered = sorted(modules.values(), key=lambda m: m.layer)
    return Layout(units, ordered, depth, arch)


def _module_layout(model: nn.Module, arch: ArchitectureSpec, layer: int, proj: Projection, axis: Axis, modules):
    path = f"{arch.layer_path(model, layer)}.{proj.path}"
    if path not in modules:
        modules[path] = ModuleLayout(path, model.get_submodule(path), proj.kind, axis, layer)
    return modules[path]


def _add_head_pieces(model, arch: ArchitectureSpec, layer: int, heads: int, owner: dict[int, int], modules) -> None:
    """q/k/v rows and output-projection columns of each head; a k/v piece gets all units whose heads read it."""
    owners: dict[tuple[str, int, int], tuple[ModuleLayout, list[int], bool]] = {}
    roles = arch.projections()
    for head in range(heads):
        for piece in arch.head_slices(model, layer, head):
            axis: Axis = "in" if piece.role == "o" else "out"
            entry = _module_layout(model, arch, layer, roles[piece.role], axis, modules)
            key = (entry.path, piece.index.start, piece.index.stop)
            units = owners.setdefault(key, (entry, [], piece.has_bias))[1]
            if owner[head] not in units:
                units.append(owner[head])
    for (_path, start, stop), (entry, units, bias) in owners.items():
        entry.pieces.append(Piece(tuple(units), start, stop, bias))


def _add_whole(model, arch: ArchitectureSpec, layer: int, proj: Projection, unit: int, modules) -> None:
    entry = _module_layout(model, arch, layer, proj, "out", modules)
    has_bias = getattr(entry.module, "bias", None) is not None
    entry.pieces.append(Piece((unit,), 0, entry.out_features, has_bias))
