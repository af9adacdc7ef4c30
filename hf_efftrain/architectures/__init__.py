"""Where layers and attention heads live, per model family: one registry instead of if-chains.

Every method needs the same facts about a model: the list of transformer layers, the config key that holds
the depth, and, for each attention head, which rows or columns of the q/k/v/output projections belong to it
(and, under grouped-query attention, which k/v head serves it). This package is the only place that knows them:

* :mod:`.spec` — :class:`ArchitectureSpec` and the head arithmetic derived from it;
* :mod:`.registry` — :func:`register_architecture`, :func:`get_architecture`;
* :mod:`.families` — the built-in families (registered on import).

Example::

    arch = get_architecture(model)                  # looks up model.config.model_type
    for piece in arch.head_slices(model, layer=0, head=3):
        piece.weight(model).zero_()                 # e.g. silence head 3 of layer 0 (use "o" rows only)

Register a new family with :func:`register_architecture`.
"""

from hf_efftrain.architectures import families  # noqa: F401  (registers the built-in families)
from hf_efftrain.architectures.registry import get_architecture, register_architecture, registered_model_types
from hf_efftrain.architectures.spec import (
    ArchitectureSpec,
    HeadGeometry,
    ParamSlice,
    Projection,
    ProjectionKind,
    Role,
    base_model_of,
)

__all__ = [
    "ArchitectureSpec",
    "HeadGeometry",
    "ParamSlice",
    "Projection",
    "ProjectionKind",
    "Role",
    "base_model_of",
    "get_architecture",
    "register_architecture",
    "registered_model_types",
]
