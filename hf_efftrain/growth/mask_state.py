"""The MSG mask of a grown model: its value, the forward hooks that apply it, and its record in the config.

Hooks are not part of a state dict, so the mask is also *recorded* in the model config (``CONFIG_KEY``: value,
ramp length, which layers and units are new). ``save_pretrained`` and every Trainer checkpoint write that
record into ``config.json``; :func:`restore_mask` reads it back and registers the hooks again, so a checkpoint
saved mid-ramp reloads as the same function and a resumed run continues the ramp. hf_efftrain does this on
its own (:func:`hf_efftrain.model_folder.load_model`, ``EfficientTrainer``, ``MaskRampCallback``); a plain
``from_pretrained`` needs one call::

    model = AutoModelForCausalLM.from_pretrained("out/checkpoint-300")
    restore_mask(model)                     # the hooks again, at the saved value
    set_mask(model, 1.0)                    # hooks removed and the record dropped: a plain model
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hf_efftrain.architectures import get_architecture
from hf_efftrain.errors import GrowthError

MASK_ATTRIBUTE = "hf_efftrain_growth_mask"  # the live mask, on the model
CONFIG_KEY = "hf_efftrain_growth_mask"  # its record, on the model config (saved in config.json)


@dataclass
class GrowthMask:
    """The current mask value, the hooks that apply it and what they cover (new layers, new units per kind)."""

    value: float = 0.0
    ramp_steps: int = 100
    handles: list = field(default_factory=list)
    new_layers: list[int] = field(default_factory=list)
    new_units: dict[str, int] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What the config keeps: everything but the hooks (JSON-able)."""
        return {
            "value": self.value,
            "ramp_steps": self.ramp_steps,
            "new_layers": list(self.new_layers),
            "new_units": dict(self.new_units),
        }


def get_mask(model: nn.Module) -> GrowthMask | None:
    """The model's growth mask, or ``None`` when it has none (never grown, or mask already removed)."""
    return getattr(model, MASK_ATTRIBUTE, None)


def set_mask(model: nn.Module, value: float) -> None:
    """Set the mask value (clamped to [0, 1]); at 1 the hooks are removed and the model is a plain model."""
    mask = get_mask(model)
    if mask is None:
        return
    mask.value = float(min(max(value, 0.0), 1.0))
    if mask.value >= 1.0:
        remove_mask(model)
    else:
        setattr(model.config, CONFIG_KEY, mask.record())


def remove_mask(model: nn.Module) -> None:
    """Drop the hooks and the config record (the model then runs all its structure at full strength)."""
    mask = get_mask(model)
    if mask is not None:
        for handle in mask.handles:
            handle.remove()
        delattr(model, MASK_ATTRIBUTE)
    forget_record(model.config)


def forget_record(config) -> None:
    """Remove a mask record from a config (a config copied for a new model must not claim the old mask)."""
    if hasattr(config, CONFIG_KEY):
        delattr(config, CONFIG_KEY)


def _layer_hook(mask: GrowthMask):
    def hook(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        first = output[0] if isinstance(output, tuple) else output
        mixed = hidden + mask.value * (first - hidden)
        return (mixed, *output[1:]) if isinstance(output, tuple) else mixed

    return hook


def _input_hook(mask: GrowthMask, start: int):
    def hook(module, args):
        (features, *rest) = args
        scale = torch.ones(features.shape[-1], dtype=features.dtype, device=features.device)
        scale[start:] = mask.value
        return (features * scale, *rest)

    return hook


def attach_mask(model: nn.Module, mask: GrowthMask) -> GrowthMask:
    """Register the hooks of ``mask`` on ``model`` (new layers, then the readers of new units) and record it.

    New units are the last ``new_units[kind]`` of their axis (``ffn``: the MLP's output projection reads them,
    ``q``: the attention output projection does).
    """
    from hf_efftrain.growth.width import kind_sizes

    if get_mask(model) is not None:
        raise GrowthError("this model already has a growth mask; ramp it to 1 (or remove_mask) before masking again")
    spec = get_architecture(model)
    layers = spec.layers(model)
    mask.handles = [layers[i].register_forward_hook(_layer_hook(mask), with_kwargs=True) for i in mask.new_layers]
    sizes = kind_sizes(model) if mask.new_units else {}
    readers = {"ffn": spec.mlp_out.path, "q": spec.output.path}
    for kind, count in mask.new_units.items():
        if kind not in readers or not 0 < count <= sizes[kind]:
            raise GrowthError(f"mask record names {count} new {kind!r} units, which this model cannot have")
        for layer in layers:
            target = layer.get_submodule(readers[kind])
            mask.handles.append(target.register_forward_pre_hook(_input_hook(mask, sizes[kind] - count)))
    setattr(model, MASK_ATTRIBUTE, mask)
    setattr(model.config, CONFIG_KEY, mask.record())
    return mask


def restore_mask(model: nn.Module) -> GrowthMask | None:
    """Re-register the mask recorded in ``model.config`` (after a reload); no-op without a record or when live."""
    record = getattr(getattr(model, "config", None), CONFIG_KEY, None)
    if record is None or get_mask(model) is not None:
        return get_mask(model)
    try:
        mask = GrowthMask(
            value=float(record["value"]),
            ramp_steps=int(record["ramp_steps"]),
            new_layers=[int(i) for i in record["new_layers"]],
            new_units={str(k): int(v) for k, v in record["new_units"].items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise GrowthError(f"config field {CONFIG_KEY} is not a growth-mask record ({err!r}): {record!r}") from None
    depth = get_architecture(model).num_layers(model.config)
    if any(not 0 <= i < depth for i in mask.new_layers):
        raise GrowthError(f"mask record names layers {mask.new_layers} but the model has {depth} layers")
    return attach_mask(model, mask)
