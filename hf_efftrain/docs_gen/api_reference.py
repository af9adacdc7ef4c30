"""The API reference, generated from ``__all__``, signatures and docstrings (``inspect``).

One section per public package (``hf_efftrain`` and each method package), one entry per name of its
``__all__``: signature, docstring, public methods; dataclasses also get their fields as a table. For
``EfficientTrainingArguments`` only hf_efftrain's own fields are listed, grouped by the method mixin that
declares them; the hundreds inherited from ``TrainingArguments`` are linked to the transformers docs. Example::

    markdown = api_reference()
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

from hf_efftrain.docs_gen.arguments import arguments_table
from hf_efftrain.docs_gen.markdown import docstring_markdown

PACKAGES = (
    "hf_efftrain",
    "hf_efftrain.mat",
    "hf_efftrain.growth",
    "hf_efftrain.twa",
    "hf_efftrain.cmd",
    "hf_efftrain.transfer",
    "hf_efftrain.report",
)
TRAINING_ARGUMENTS_DOCS = "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"


def public_names(package: str) -> list[str]:
    """The names a package exports (its ``__all__``), in documentation order (sorted, case-insensitively)."""
    return sorted(importlib.import_module(package).__all__, key=str.lower)


def api_reference(packages: tuple[str, ...] = PACKAGES) -> str:
    """Markdown reference of every public name of ``packages``."""
    return "\n\n".join(_package_section(name) for name in packages)


def _package_section(package: str) -> str:
    module = importlib.import_module(package)
    parts = [f"## `{package}`", "", docstring_markdown(inspect.getdoc(module) or "")]
    for name in public_names(package):
        parts += ["", _entry(f"{package}.{name}", getattr(module, name))]
    return "\n".join(parts)


def _entry(qualified: str, obj: Any) -> str:
    parts = [f"### `{qualified}`", "", f"```python\n{_signature_line(obj)}\n```", "", _doc(obj)]
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            parts += ["", _fields_section(obj)]
        parts += _methods(obj)
    return "\n".join(parts)


def _signature_line(obj: Any) -> str:
    name = getattr(obj, "__name__", type(obj).__name__)
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return f"class {name}({', '.join(b.__name__ for b in obj.__bases__)})"
        if dataclasses.is_dataclass(obj) and len(dataclasses.fields(obj)) > 20:
            return f"class {name}(**fields)  # dataclass: fields below"
        return f"class {name}{_signature(obj, returns=False)}"
    if callable(obj):
        return f"def {name}{_signature(obj)}"
    return f"{name} = {obj!r}"


class _Written:
    """An annotation kept as written: ``from __future__ import annotations`` makes them strings, shown unquoted."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(obj: Any, returns: bool = True) -> str:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins or C extensions without a signature
        return "(...)"

    def unquote(annotation: Any) -> Any:
        return _Written(annotation) if isinstance(annotation, str) else annotation

    parameters = [p.replace(annotation=unquote(p.annotation)) for p in signature.parameters.values()]
    ret = unquote(signature.return_annotation) if returns else inspect.Signature.empty
    return str(signature.replace(parameters=parameters, return_annotation=ret))


def _doc(obj: Any) -> str:
    doc = inspect.getdoc(obj)
    return docstring_markdown(doc) if doc else "*No docstring.*"


def _fields_section(cls: type) -> str:
    """Fields table; for ``TrainingArguments`` subclasses, one table per declaring class, inherited ones linked."""
    from transformers import TrainingArguments

    if not issubclass(cls, TrainingArguments):
        return "**Fields**\n\n" + arguments_table(cls)
    parts = [f"**Fields.** Every field of [`transformers.TrainingArguments`]({TRAINING_ARGUMENTS_DOCS}), plus:"]
    for owner in cls.__mro__:
        if dataclasses.is_dataclass(owner) and not issubclass(TrainingArguments, owner):
            names = set(owner.__dict__.get("__annotations__", {}))
            if names:
                table = arguments_table(cls, exclude=TrainingArguments, names=names)
                parts += ["", f"From `{owner.__name__}`:", "", table]
    return "\n".join(parts)


def _methods(cls: type) -> list[str]:
    """Public methods and properties defined by ``cls`` itself (inherited ones are documented where defined)."""
    parts: list[str] = []
    for name, member in sorted(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            doc = inspect.getdoc(member)
            parts += ["", f"**`{cls.__name__}.{name}`** *(property)*" + (f": {docstring_markdown(doc)}" if doc else "")]
        elif isinstance(member, staticmethod | classmethod) or inspect.isfunction(member):
            function = member.__func__ if isinstance(member, staticmethod | classmethod) else member
            doc = inspect.getdoc(function)  # protocol methods (state_dict...) may have none: signature alone
            parts += ["", f"**`{cls.__name__}.{name}{_method_signature(function)}`**"]
            parts += ["", docstring_markdown(doc)] if doc else []
    return parts


def _method_signature(function: Any) -> str:
    text = _signature(function)
    return text.replace("(self, ", "(").replace("(self)", "()").replace("(cls, ", "(").replace("(cls)", "()")
