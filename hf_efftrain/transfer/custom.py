"""Permutation specs of small custom networks: an ``nn.Sequential`` MLP or CNN is described automatically.

Between two weight layers (``Linear``/``Conv``) the hidden units or channels are a free group, carried through
elementwise activations, dropout, pooling and normalization (``BatchNorm``'s running statistics move too);
after a ``Flatten`` each channel covers ``H*W`` inputs of the next ``Linear``. The network's inputs and its
outputs are never permuted. Anything else: build the spec by hand with :class:`SpecBuilder`. Example::

    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    spec = sequential_spec(net)                # one group, "hidden.0", of 8 channels
"""

from __future__ import annotations

from torch import nn

from hf_efftrain.errors import PermutationSpecError
from hf_efftrain.transfer.groups import FreeGroup
from hf_efftrain.transfer.spec import AxisPart, PermutationSpec, SpecBuilder

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
PASS_THROUGH = (
    nn.ReLU,
    nn.GELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.SiLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)


def sequential_spec(model: nn.Sequential) -> PermutationSpec:
    """The hidden-unit permutations of a plain ``nn.Sequential`` (see the module docstring)."""
    children = list(model.named_children())
    last_weight = max((i for i, (_, m) in enumerate(children) if isinstance(m, WEIGHT_LAYERS)), default=-1)
    builder = SpecBuilder()
    current: str | None = None  # group permuting the channel axis of the running activation
    units, flattened = 0, False
    for index, (name, layer) in enumerate(children):
        if isinstance(layer, WEIGHT_LAYERS):
            if current is not None:
                inner = layer.weight.shape[1] // units if flattened else 1
                if inner * units != layer.weight.shape[1]:
                    raise PermutationSpecError(f"{name}: {layer.weight.shape[1]} inputs do not split into {units}")
                builder.axis(f"{name}.weight", 1, AxisPart(current, inner=inner))
            current, flattened = None, False
            if index != last_weight:
                current, units = f"hidden.{name}", layer.weight.shape[0]
                builder.group(current, FreeGroup(units)).axis(f"{name}.weight", 0, current)
                if layer.bias is not None:
                    builder.axis(f"{name}.bias", 0, current)
        elif isinstance(layer, NORMS) and current is not None:
            if isinstance(layer, nn.LayerNorm | nn.GroupNorm) and not _per_channel(layer, units):
                raise PermutationSpecError(f"{name}: {type(layer).__name__} mixes channels; describe it by hand")
            for key, _ in [*layer.named_parameters(), *layer.named_buffers()]:
                if key != "num_batches_tracked":
                    builder.axis(f"{name}.{key}", 0, current)
        elif isinstance(layer, nn.Flatten):
            flattened = True
        elif not isinstance(layer, PASS_THROUGH + NORMS):
            raise PermutationSpecError(
                f"{name}: {type(layer).__name__} is not understood by sequential_spec; build the spec with SpecBuilder"
            )
    return builder.build()


def _per_channel(layer: nn.Module, units: int) -> bool:
    if isinstance(layer, nn.GroupNorm):
        return layer.num_groups == layer.num_channels == units
    return tuple(layer.normalized_shape) == (units,)
