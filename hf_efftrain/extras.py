"""Optional dependencies, grouped in pyproject extras: import them where needed, or say which extra to install.

Heavy libraries only a few paths use (matplotlib for figures, pandas for one data loader) are extras, so a
plain install stays light; a missing one ends with one line naming the pip command. Example::

    plt = pyplot()                      # MissingExtraError: ... pip install 'hf-efftrain[plots]'
    pd = require("pandas", extra="data")
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hf_efftrain.errors import MissingExtraError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``pip install 'hf-efftrain[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{module} is not installed; it comes with the {extra!r} extra: pip install 'hf-efftrain[{extra}]'"
        ) from None


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display needed), from the ``plots`` extra."""
    matplotlib = require("matplotlib", extra="plots")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")
