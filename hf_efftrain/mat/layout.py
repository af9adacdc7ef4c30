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
from hf_efftrain.mat.lora import active_lora_adapter, trainable_part, whole_parts

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
        """Output width of the projection, whichever way its weight is stored (``linear`` or ``conv1d``)."""
        weight = self.module.weight
        return weight.shape[0] if self.kind == "linear" else weight.shape[1]

    @property
    def in_features(self) -> int:
        """Input width of the projection, whichever way its weight is stored (``linear`` or ``conv1d``)."""
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
        """Indices of the modules of one ``kind`` and/or ``layer`` (all of them when both are ``None``)."""
        return [
            i
            for i, u in enumerate(self.units)
            if (kind is None or u.kind == kind) and (layer is None or u.layer == layer)
        ]


def build_layout(model: nn.Module, granularity: str = "heads", gqa_unit: str = "query_head") -> Layout:
    """Units and projection pieces of ``model``, from the architecture registry.

    With ``gqa_unit="kv_group"`` (and grouped-query attention) a unit is a k/v head with every query head that
    reads it; without GQA the two are the same thing and query heads are kept. On a PEFT LoRA model the pieces
    are the adapter's trainable slices (:mod:`hf_efftrain.mat.lora`), never the frozen base weights.
    """
    adapter = active_lora_adapter(model)
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
        _add_head_pieces(model, arch, layer, geo.num_heads, owner, modules, adapter)
        if granularity == "heads+ffn":
            for proj in (*arch.mlp_in, arch.mlp_out):
                _add_whole(model, arch, layer, proj, unit_id[("ffn", layer, 0)], modules, adapter)
    _check_every_unit_trains(units, modules, adapter)
    ordered = sorted(modules.values(), key=lambda m: m.layer)
    return Layout(units, ordered, depth, arch)


def _check_every_unit_trains(units: list[Unit], modules: dict[str, ModuleLayout], adapter: str | None) -> None:
    """A LoRA adapter must give every head (and FFN block, with heads+ffn) something trainable to gate."""
    if adapter is None:
        return
    owned = {u for entry in modules.values() for piece in entry.pieces for u in piece.units}
    missing = [units[i].name for i in range(len(units)) if i not in owned]
    if missing:
        kind = "FFN blocks" if all(name.endswith("FFN") for name in missing) else "heads"
        raise MATConfigError(
            f"the LoRA adapter's target_modules give {len(missing)} {kind} (e.g. {missing[0]}) nothing to train, so "
            "MAT cannot gate them: add the attention projections (and, for mat_granularity=heads+ffn, the MLP "
            "projections) to target_modules"
        )


def _module_layout(path: str, module: nn.Module, kind, axis: Axis, layer: int, modules):
    if path not in modules:
        modules[path] = ModuleLayout(path, module, kind, axis, layer)
    return modules[path]


def _head_target(model, arch: ArchitectureSpec, layer: int, role: str, adapter: str | None):
    """(path, module, kind) MAT hooks for ``role``: the projection, or its LoRA factor; None if nothing trains."""
    proj = arch.projections()[role]
    path = f"{arch.layer_path(model, layer)}.{proj.path}"
    module = model.get_submodule(path)
    if adapter is None:
        return path, module, proj.kind
    part = trainable_part(module, role, adapter)
    return None if part is None else (path + part[0], part[1], "linear")


def _add_head_pieces(
    model, arch: ArchitectureSpec, layer: int, heads: int, owner: dict[int, int], modules, adapter: str | None
) -> None:
    """q/k/v rows and output-projection columns of each head; a k/v piece gets all units whose heads read it."""
    owners: dict[tuple[str, int, int], tuple[ModuleLayout, list[int], bool]] = {}
    for head in range(heads):
        for piece in arch.head_slices(model, layer, head):
            target = _head_target(model, arch, layer, piece.role, adapter)
            if target is None:  # a projection the adapter leaves out: nothing of this head trains there
                continue
            axis: Axis = "in" if piece.role == "o" else "out"
            entry = _module_layout(*target, axis, layer, modules)
            bias = piece.has_bias if adapter is None else getattr(entry.module, "bias", None) is not None
            key = (entry.path, piece.index.start, piece.index.stop)
            units = owners.setdefault(key, (entry, [], bias and axis == "out"))[1]
            if owner[head] not in units:
                units.append(owner[head])
    for (_path, start, stop), (entry, units, bias) in owners.items():
        entry.pieces.append(Piece(tuple(units), start, stop, bias))


def _add_whole(model, arch: ArchitectureSpec, layer: int, proj: Projection, unit: int, modules, adapter) -> None:
    path = f"{arch.layer_path(model, layer)}.{proj.path}"
    module = model.get_submodule(path)
    targets = [(path, module, proj.kind)] if adapter is None else []
    targets += [(path + suffix, part, "linear") for suffix, part in whole_parts(module, adapter or "")]
    for target in targets:
        entry = _module_layout(*target, "out", layer, modules)
        has_bias = getattr(entry.module, "bias", None) is not None
        entry.pieces.append(Piece((unit,), 0, entry.out_features, has_bias))
