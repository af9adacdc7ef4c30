"""The one registry of model families, keyed by ``config.model_type``.

Methods look a model up here rather than testing ``model_type`` themselves, so supporting a new family is one
:func:`register_architecture` call (the built-in ones are in :mod:`~hf_efftrain.architectures.families`).
Example::

    register_architecture(ArchitectureSpec(name="mybert", model_types=("mybert",), ...))
    get_architecture("mybert").num_layers(config)
"""

from __future__ import annotations

from hf_efftrain.architectures.spec import ArchitectureSpec
from hf_efftrain.errors import UnknownArchitectureError

_REGISTRY: dict[str, ArchitectureSpec] = {}


def register_architecture(spec: ArchitectureSpec, overwrite: bool = False) -> ArchitectureSpec:
    """Add a model family to the registry (keyed by each of ``spec.model_types``)."""
    for model_type in spec.model_types:
        if model_type in _REGISTRY and not overwrite:
            raise ValueError(f"model type {model_type!r} is already registered; pass overwrite=True")
        _REGISTRY[model_type] = spec
    return spec


def registered_model_types() -> list[str]:
    """Model types the registry knows, sorted."""
    return sorted(_REGISTRY)


def get_architecture(model_or_config) -> ArchitectureSpec:
    """The registry entry for a model, a config, or a ``model_type`` string."""
    if isinstance(model_or_config, str):
        model_type = model_or_config
    else:
        config = getattr(model_or_config, "config", model_or_config)
        model_type = getattr(config, "model_type", None)
    if model_type not in _REGISTRY:
        raise UnknownArchitectureError(
            f"model type {model_type!r} is not in the hf_efftrain architecture registry "
            f"(known: {', '.join(registered_model_types())}). Describe where its layers and attention "
            "projections live with hf_efftrain.architectures.register_architecture(ArchitectureSpec(...)); "
            "see docs/architectures.md."
        )
    return _REGISTRY[model_type]
