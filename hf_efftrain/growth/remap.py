"""Index maps along typed axes: the arithmetic shared by width growth, fusion and masked growth.

A :class:`UnitMap` says, for every unit of the *target* along one kind of axis, which source unit it copies
(``-1``: keep the target's fresh initialization) and by what factor its weights are scaled where the axis is
*read* (duplicated units split the weight they replace so that their sum is unchanged). :func:`remap_tensor`
applies one map per kind to a 1-D or 2-D tensor. Example::

    maps = {"hidden": UnitMap(torch.tensor([0, 1, 0, 1]), torch.tensor([.5, .5, .5, .5]))}
    new = remap_tensor(old, fresh, axes, maps, old_sizes={"hidden": 2}, new_sizes={"hidden": 4})
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hf_efftrain.growth.axes import Axis, TensorAxes
from hf_efftrain.growth.errors import GrowthError


@dataclass(frozen=True)
class UnitMap:
    """``index[j]``: source unit of target unit ``j`` (-1 = fresh); ``scale[j]``: factor on read axes."""

    index: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def identity(cls, size: int) -> UnitMap:
        return cls(torch.arange(size), torch.ones(size))


def axis_map(axis: Axis | None, size: int, maps: dict[str, UnitMap], old_sizes: dict[str, int]) -> UnitMap:
    """The map of a whole (possibly fused) axis: segments concatenated with their offsets."""
    if axis is None:
        return UnitMap.identity(size)
    indices, scales, offset = [], [], 0
    for kind in axis.segments:
        unit = maps.get(kind) or UnitMap.identity(old_sizes[kind])
        indices.append(torch.where(unit.index >= 0, unit.index + offset, unit.index))
        scales.append(unit.scale if axis.read else torch.ones_like(unit.scale))
        offset += old_sizes[kind]
    if offset != size:
        raise GrowthError(f"axis segments {axis.segments} add up to {offset}, the tensor has {size}")
    return UnitMap(torch.cat(indices), torch.cat(scales))


def remap_tensor(
    old: torch.Tensor,
    fresh: torch.Tensor,
    axes: TensorAxes,
    maps: dict[str, UnitMap],
    old_sizes: dict[str, int],
    factor: float = 1.0,
) -> torch.Tensor:
    """``fresh`` with every entry whose units all map to a source unit replaced by the scaled source entry."""
    if old.dim() > 2:
        raise GrowthError(f"width remapping supports 1-D and 2-D tensors, got shape {tuple(old.shape)}")
    per_axis = [axis_map(axis, old.shape[d], maps, old_sizes) for d, axis in enumerate(axes)]
    for d, unit in enumerate(per_axis):
        if unit.index.numel() != fresh.shape[d]:
            raise GrowthError(f"remapped axis {d} has {unit.index.numel()} units, the target has {fresh.shape[d]}")
    new = fresh.detach().clone()
    keep = [torch.nonzero(u.index >= 0).flatten() for u in per_axis]
    src = [u.index[k] for u, k in zip(per_axis, keep, strict=True)]
    scale = [u.scale[k].to(old.dtype) for u, k in zip(per_axis, keep, strict=True)]
    if old.dim() == 1:
        new[keep[0]] = old[src[0]] * scale[0] * factor
    else:
        block = old[src[0][:, None], src[1][None, :]] * scale[0][:, None] * scale[1][None, :] * factor
        new[keep[0][:, None], keep[1][None, :]] = block
    return new
