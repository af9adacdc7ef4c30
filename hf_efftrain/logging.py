"""The old name of :mod:`hf_efftrain.log`, kept importable while code still uses it (``hf_efftrain/transfer/``).

It shadows the standard library's ``logging`` for scripts run from inside this folder, which is why the module
was renamed; delete this file once nothing imports ``hf_efftrain.logging`` (a test lists who still does).
"""

from hf_efftrain.log import get_logger, preparation_output, progress_bar, progress_enabled

__all__ = ["get_logger", "preparation_output", "progress_bar", "progress_enabled"]
