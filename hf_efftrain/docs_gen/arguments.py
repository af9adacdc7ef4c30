"""Tables of a dataclass's fields (name, type, default, ``metadata["help"]``): the knobs of each method.

The tables are generated from the arguments dataclasses that ``HfArgumentParser`` reads, so a page cannot
list a flag that does not exist or a stale default.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing

from hf_efftrain.docs_gen.markdown import cell, code, table


def type_name(annotation: object) -> str:
    """A readable type: ``int``, ``str | None``, ``Literal['a', 'b']`` (string annotations kept as written)."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def default_text(field: dataclasses.Field) -> str:
    """The default of a field as code, ``required`` when it has none."""
    if field.default is not dataclasses.MISSING:
        return code(repr(field.default))
    if field.default_factory is not dataclasses.MISSING:
        return code(repr(field.default_factory()))
    return "required"


def own_fields(cls: type, exclude: type | None = None) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` minus those that ``exclude`` (a dataclass base) already has."""
    skip = {f.name for f in dataclasses.fields(exclude)} if exclude is not None else set()
    return [f for f in dataclasses.fields(cls) if f.name not in skip and f.init]


def arguments_table(cls: type, exclude: type | None = None, names: set[str] | None = None) -> str:
    """Markdown table of the fields of ``cls`` (those of ``exclude`` left out; only ``names`` if given). Example::

    arguments_table(MATArguments)  # | argument | type | default | help |
    """
    from hf_efftrain.errors import DocsGenerationError

    if not dataclasses.is_dataclass(cls):
        raise DocsGenerationError(f"{cls!r} is not a dataclass: only dataclass fields can be tabulated")
    hints = _hints(cls)
    rows = [
        [code(f.name), code(type_name(hints.get(f.name, f.type))), default_text(f), cell(f.metadata.get("help", ""))]
        for f in own_fields(cls, exclude)
        if names is None or f.name in names
    ]
    if not any(row[3] for row in rows):  # no field has help: leave the column out
        return table(["argument", "type", "default"], [row[:3] for row in rows])
    return table(["argument", "type", "default", "help"], rows)


def arguments_table_for(dotted: str) -> str:
    """:func:`arguments_table` of the class named ``module.Class`` (the ``<!-- arguments: ... -->`` marker)."""
    from hf_efftrain.errors import DocsGenerationError

    module_name, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise DocsGenerationError(f"arguments marker: cannot import {dotted!r} ({err})") from err
    return arguments_table(cls)


def _hints(cls: type) -> dict[str, object]:
    """Resolved annotations (modules use ``from __future__ import annotations``); raw strings if that fails."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation naming something unimportable: show it as written
        return {}
