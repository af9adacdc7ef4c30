"""Permutation specs: which parameter axes each permutation group moves, and applying a permutation.

A spec is data: named groups (:mod:`hf_efftrain.transfer.groups`) and, per parameter, the axes they permute.
An axis may be split in *parts* (GPT-2's fused ``c_attn`` holds q|k|v along one axis) and a part may
repeat each unit ``inner`` times (a CNN channel flattened into ``H*W`` linear inputs). Example::

    spec = (SpecBuilder()
            .group("hidden", FreeGroup(8))
            .axis("0.weight", 0, "hidden").axis("0.bias", 0, "hidden").axis("2.weight", 1, "hidden")
            .build())
    permuted = spec.apply(model.state_dict(), spec.random_permutation(seed=0))

Parameters the spec does not mention are left alone (input features, output classes, vocabulary rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from hf_efftrain.errors import PermutationSpecError
from hf_efftrain.transfer.groups import Group

Permutation = dict[str, object]
"""Group name → that group's state (an index tensor, or a ``HeadPermutation``)."""


@dataclass(frozen=True)
class AxisPart:
    """A contiguous stretch of an axis permuted by one role of one group; each unit spans ``inner`` entries."""

    group: str
    role: str = ""
    inner: int = 1


@dataclass(frozen=True)
class Axis:
    """Axis ``dim`` of parameter ``param``, made of ``parts`` laid end to end."""

    param: str
    dim: int
    parts: tuple[AxisPart, ...]


@dataclass
class PermutationSpec:
    """Groups plus the axes they permute; see the module docstring."""

    groups: dict[str, Group]
    axes: dict[str, tuple[Axis, ...]] = field(default_factory=dict)

    # ---- permutations ------------------------------------------------------------------------------------
    def identity(self) -> Permutation:
        """Every group at its identity: applying it changes nothing (the naive transfer)."""
        return {name: group.identity() for name, group in self.groups.items()}

    def random_permutation(self, seed: int = 0) -> Permutation:
        """A seeded random state per group; applying it to a model must leave its outputs unchanged."""
        generator = torch.Generator().manual_seed(seed)
        return {name: group.random(generator) for name, group in self.groups.items()}

    def equal(self, a: Permutation, b: Permutation) -> bool:
        """Whether two permutations move every group the same way."""
        return all(group.equal(a[name], b[name]) for name, group in self.groups.items())

    def shared_groups(self, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> frozenset[str]:
        """Groups whose every parameter (of those in both ``a`` and ``b``) is equal in ``a`` and ``b``.

        Such units already correspond one to one (a pretrained body shared by source and target): the identity is
        their exact alignment, and matching them from gradients would only fit the gradients' noise."""
        touched: set[str] = set()
        differing: set[str] = set()
        for name, axes in self.axes.items():
            if name not in a or name not in b:
                continue
            groups = {part.group for axis in axes for part in axis.parts}
            touched |= groups
            if not torch.equal(a[name], b[name]):
                differing |= groups
        return frozenset(touched - differing)

    def to_json(self, perm: Permutation) -> dict[str, object]:
        """Group name → its state as JSON (the transfer report's ``permutation``)."""
        return {name: group.to_json(perm[name]) for name, group in self.groups.items()}

    def size(self, part: AxisPart) -> int:
        """Number of axis entries covered by ``part``."""
        return self.groups[part.group].roles()[part.role] * part.inner

    def index(self, axis: Axis, perm: Permutation) -> torch.Tensor:
        """The old index read by each new entry of ``axis`` under ``perm``."""
        pieces, offset = [], 0
        for part in axis.parts:
            base = self.groups[part.group].composite(perm[part.group], part.role)
            expanded = (base[:, None] * part.inner + torch.arange(part.inner)).reshape(-1)
            pieces.append(expanded + offset)
            offset += len(expanded)
        return torch.cat(pieces)

    # ---- applying ----------------------------------------------------------------------------------------
    def permute_tensor(
        self, name: str, tensor: torch.Tensor, perm: Permutation, skip: Axis | None = None
    ) -> torch.Tensor:
        """``tensor`` (parameter ``name``) with every axis of the spec permuted, except ``skip``."""
        for axis in self.axes.get(name, ()):
            if axis is not skip:
                tensor = tensor.index_select(axis.dim, self.index(axis, perm).to(tensor.device))
        return tensor

    def apply(self, tensors: Mapping[str, torch.Tensor], perm: Permutation) -> dict[str, torch.Tensor]:
        """A permuted copy of a state dict (names absent from the spec are copied unchanged)."""
        return {name: self.permute_tensor(name, t, perm) for name, t in tensors.items()}

    # ---- checks ------------------------------------------------------------------------------------------
    def check_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Raise :class:`PermutationSpecError` if an axis does not fit the parameter it names."""
        for name, axes in self.axes.items():
            if name not in shapes:
                raise PermutationSpecError(f"the spec permutes {name!r}, which the model does not have")
            for axis in axes:
                want = sum(self.size(p) for p in axis.parts)
                have = shapes[name][axis.dim] if axis.dim < len(shapes[name]) else None
                if have != want:
                    raise PermutationSpecError(
                        f"{name!r} axis {axis.dim} has {have} entries but the spec's groups cover {want}"
                    )


class SpecBuilder:
    """Fluent construction of a :class:`PermutationSpec` for custom modules (see the module docstring)."""

    def __init__(self) -> None:
        self._groups: dict[str, Group] = {}
        self._axes: dict[str, list[Axis]] = {}

    def group(self, name: str, group: Group) -> SpecBuilder:
        """Add a permutation group; axes name it afterwards. A name used twice is an error."""
        if name in self._groups:
            raise PermutationSpecError(f"permutation group {name!r} is defined twice")
        self._groups[name] = group
        return self

    def axis(self, param: str, dim: int, *parts: str | AxisPart) -> SpecBuilder:
        """Say that axis ``dim`` of ``param`` is permuted by the given groups (names or :class:`AxisPart`)."""
        resolved = tuple(AxisPart(p) if isinstance(p, str) else p for p in parts)
        for part in resolved:
            if part.group not in self._groups:
                raise PermutationSpecError(f"{param!r}: unknown permutation group {part.group!r}; define it first")
        if any(a.dim == dim for a in self._axes.get(param, ())):
            raise PermutationSpecError(f"{param!r} axis {dim} is assigned twice")
        self._axes.setdefault(param, []).append(Axis(param, dim, resolved))
        return self

    def build(self) -> PermutationSpec:
        """The spec, with the groups and axes given so far (the builder can keep going)."""
        return PermutationSpec(dict(self._groups), {k: tuple(v) for k, v in self._axes.items()})
