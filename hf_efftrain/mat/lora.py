"""Where a head's *trainable* parameters live in a PEFT LoRA model, so MAT can gate LoRA fine-tuning per head.

LoRA adds ``B·A`` to a projection. For q/k/v, head h's output features are rows of ``B`` (``A`` mixes every input
into the rank and is shared by all heads); for the output projection, head h's input features are columns of
``A`` (``B`` is shared). So a head owns rows of ``lora_B`` of q/k/v and columns of ``lora_A`` of o: the same
feature ranges as in the base weight, on the adapter's small matrices. The shared factors train whenever any head
does; the frozen base weight is never touched. An FFN block owns both factors of its projections' adapters.
Example::

    adapter = active_lora_adapter(model)                      # "default", or None for a model without PEFT
    part = trainable_part(model.get_submodule(path), "q", adapter)   # (".lora_B.default", that Linear)
"""

from __future__ import annotations

from torch import nn

from hf_efftrain.errors import MATConfigError


def active_lora_adapter(model: nn.Module) -> str | None:
    """The one active LoRA adapter of a PEFT model (None without PEFT); refuse what MAT cannot slice."""
    config = getattr(model, "peft_config", None)
    wrapped = any(hasattr(m, "base_layer") for m in model.modules())
    if config is None and not wrapped:
        return None
    active = getattr(model, "active_adapters", None) or [getattr(model, "active_adapter", "default")]
    if isinstance(active, str):
        active = [active]
    if len(active) != 1:
        raise MATConfigError(f"MAT gates one LoRA adapter at a time; this model has {len(active)} active: {active}")
    name = active[0]
    settings = (config or {}).get(name)
    peft_type = str(getattr(settings, "peft_type", "LORA")).rsplit(".", 1)[-1]
    if peft_type != "LORA":
        raise MATConfigError(
            f"MAT can gate LoRA adapters only, not {peft_type}: train with mat=False, or use a LoRA adapter"
        )
    if getattr(settings, "use_dora", False):
        raise MATConfigError("MAT cannot gate DoRA adapters (their weight norm mixes every head); use plain LoRA")
    return name


def trainable_part(module: nn.Module, role: str, adapter: str) -> tuple[str, nn.Module] | None:
    """(suffix, Linear) holding ``role``'s per-head slices in a LoRA-wrapped projection; None if it has no LoRA.

    ``role`` is q/k/v (rows of ``lora_B``), o (columns of ``lora_A``).
    """
    if not hasattr(module, "base_layer"):
        return None
    factors = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
    if not all(isinstance(f, nn.ModuleDict) for f in factors) or adapter not in factors[0]:
        raise MATConfigError(
            f"MAT cannot slice the adapter layer {type(module).__name__} per head (only LoRA on Linear/Conv1D "
            "projections); leave that module out of target_modules or train with mat=False"
        )
    name = "lora_A" if role == "o" else "lora_B"
    part = getattr(module, name)[adapter]
    if not isinstance(part, nn.Linear):
        raise MATConfigError(f"MAT cannot slice {type(part).__name__} LoRA factors per head; use Linear LoRA layers")
    return f".{name}.{adapter}", part


def whole_parts(module: nn.Module, adapter: str) -> list[tuple[str, nn.Module]]:
    """Both LoRA factors of a wrapped FFN projection (an FFN block is one module); empty without LoRA."""
    if not hasattr(module, "base_layer"):
        return []
    return [(f".{name}.{adapter}", getattr(module, name)[adapter]) for name in ("lora_A", "lora_B")]
