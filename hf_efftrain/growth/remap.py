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

from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.axes import Axis, TensorAxes


@dataclass(frozen=True)
class UnitMap:
    """``index[j]``: source unit of target unit ``j`` (-1 = fresh); ``scale[j]``: factor on read axes."""

    index: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def identity(cls, size: int) -> UnitMap:
        """Each of ``size`` units maps to itself with scale 1 (an axis that does not grow)."""
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


def effective_axes(
    axes: TensorAxes, old_shape: tuple[int, ...], new_shape: tuple[int, ...], maps: dict[str, UnitMap]
) -> TensorAxes:
    """Drop the type of axes that the target did not grow although their kind grew.

    The shape heuristic of :mod:`~hf_efftrain.growth.axes` types any Linear output of the hidden size as a
    residual writer; a head whose width is a separate config value (ViT's ``pooler_output_size``) keeps its
    size in the grown config and is then, correctly, left alone.
    """
    result = []
    for axis, old, new in zip(axes, old_shape, new_shape, strict=True):
        grown = sum(maps[k].index.numel() for k in axis.segments) if axis and set(axis.segments) <= set(maps) else new
        result.append(None if old == new and grown != new else axis)
    return tuple(result)


def remap_tensor(
    old: torch.Tensor,
    fresh: torch.Tensor,
    axes: TensorAxes,
    maps: dict[str, UnitMap],
    old_sizes: dict[str, int],
    factor: float = 1.0,
) -> torch.Tensor:
    """``fresh`` with every entry whose units all map to a source unit replaced by the scaled source entry."""
    axes = effective_axes(axes, tuple(old.shape), tuple(fresh.shape), maps)
    typed = [d for d, axis in enumerate(axes) if axis is not None]
    if old.dim() > 2 and len(typed) > 1:
        raise GrowthError(f"cannot remap shape {tuple(old.shape)}: more than one growing axis in a >2-D tensor")
    per_axis = [axis_map(axis, old.shape[d], maps, old_sizes) for d, axis in enumerate(axes)]
    for d, unit in enumerate(per_axis):
        if unit.index.numel() != fresh.shape[d]:
            raise GrowthError(f"remapped axis {d} has {unit.index.numel()} units, the target has {fresh.shape[d]}")
    new = fresh.detach().clone()
    if old.dim() > 2:
        return _remap_one_axis(old, new, typed[0] if typed else 0, per_axis, factor)
    keep = [torch.nonzero(u.index >= 0).flatten() for u in per_axis]
    src = [u.index[k] for u, k in zip(per_axis, keep, strict=True)]
    scale = [u.scale[k].to(old.dtype) for u, k in zip(per_axis, keep, strict=True)]
    if old.dim() == 1:
        new[keep[0]] = old[src[0]] * scale[0] * factor
    else:
        block = old[src[0][:, None], src[1][None, :]] * scale[0][:, None] * scale[1][None, :] * factor
        new[keep[0][:, None], keep[1][None, :]] = block
    return new


def _remap_one_axis(old: torch.Tensor, new: torch.Tensor, dim: int, per_axis: list[UnitMap], factor: float):
    """N-D tensor with (at most) one growing axis ``dim``: copy whole slices along it."""
    unit = per_axis[dim]
    keep = torch.nonzero(unit.index >= 0).flatten()
    shape = [1] * old.dim()
    shape[dim] = keep.numel()
    values = old.index_select(dim, unit.index[keep]) * unit.scale[keep].to(old.dtype).view(shape) * factor
    return new.index_copy(dim, keep, values)
