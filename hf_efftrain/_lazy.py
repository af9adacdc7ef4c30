"""Lazy public names for packages: a name's module is imported on first use, not when the package is.

Why: ``import hf_efftrain`` and ``hf-efftrain --help`` must not pay for torch, transformers' Trainer, datasets
or matplotlib before anything uses them. A package lists where each public name lives; PEP 562's module
``__getattr__`` imports it on first access and caches it on the package. Example::

    __getattr__, __dir__ = lazy_exports(__name__, {"hf_efftrain.mat.callback": ("MATCallback",)})
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any


class _LazyPackage(types.ModuleType):
    """Keeps a public name when the import system binds a submodule of the same spelling on the package.

    ``hf_efftrain.twa.collect`` is the function from ``twa/train.py``; importing ``twa/collect.py`` (as the
    function's own module does) would otherwise replace it with the module, as eager imports never did.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        home = self.__dict__.get("_lazy_homes", {}).get(name)
        if isinstance(value, types.ModuleType) and home is not None and value.__name__ != home:
            return
        super().__setattr__(name, value)


def lazy_exports(
    package: str, modules: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose public names live in ``modules`` (module -> names)."""
    homes = {name: module for module, names in modules.items() for name in names}
    module_object = sys.modules[package]
    module_object.__class__ = _LazyPackage
    module_object._lazy_homes = homes

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(module_object, name, value)  # cached: later look-ups do not come back here
        return value

    def __dir__() -> list[str]:
        return sorted(set(module_object.__dict__) | set(homes))

    return __getattr__, __dir__
