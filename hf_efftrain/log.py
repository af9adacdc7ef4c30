"""One logger tree, ``hf_efftrain.*``, that follows transformers' verbosity, and progress bars that obey it.

Users already tune transformers' output (``--log_level``/``--log_level_replica`` in ``TrainingArguments``,
``TRANSFORMERS_VERBOSITY``, ``transformers.logging.set_verbosity_info()``, ``disable_progress_bar()``); the
Trainer itself silences replicas that way. hf_efftrain's messages obey the same switches instead of adding new
ones, so a 2-process run prints its method messages once and ``--log_level info`` shows them. Example::

    from hf_efftrain.log import get_logger, progress_bar

    logger = get_logger(__name__)
    logger.info("MAT: %d of %d heads active", active, total)
    for step in progress_bar(range(steps), desc="transfer", disable=args.disable_tqdm):
        ...

The module is ``log``, not ``logging``: a module named like a standard-library one shadows it for any script
run with this folder on ``sys.path``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm
from transformers.utils import logging as transformers_logging

ROOT_LOGGER = "hf_efftrain"


class _FollowTransformersVerbosity(logging.Filter):
    """Let a record through when transformers' current verbosity would let its own records through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= transformers_logging.get_verbosity()


class _CurrentStderrHandler(logging.StreamHandler):
    """Write to whatever ``sys.stderr`` is now (pytest and notebooks replace it after import)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # not setStream: it flushes the old stream, which may be closed by now
        super().emit(record)


def _root_logger() -> logging.Logger:
    root = logging.getLogger(ROOT_LOGGER)
    if not any(isinstance(h, _CurrentStderrHandler) for h in root.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s: %(message)s"))
        handler.addFilter(_FollowTransformersVerbosity())
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)  # the handler's filter decides, so a verbosity change applies at once
        root.propagate = False  # like transformers: no duplicates through the root logger
    return root


def get_logger(name: str = ROOT_LOGGER) -> logging.Logger:
    """The logger ``name`` (under ``hf_efftrain``), printed to stderr at transformers' verbosity."""
    _root_logger()
    if name != ROOT_LOGGER and not name.startswith(ROOT_LOGGER + "."):
        name = f"{ROOT_LOGGER}.{name}"
    return logging.getLogger(name)


def progress_enabled(disable: bool | None = None) -> bool:
    """Whether to draw a bar: not when the caller says so (``args.disable_tqdm``) or transformers' bars are off."""
    return not disable and transformers_logging.is_progress_bar_enabled()


def progress_bar(iterable: Iterable | None = None, *, disable: bool | None = None, **kwargs) -> tqdm:
    """A ``tqdm`` bar drawn only when :func:`progress_enabled`; ``kwargs`` go to ``tqdm`` (``total``, ``desc``)."""
    return tqdm(iterable, disable=not progress_enabled(disable), **kwargs)


@contextmanager
def preparation_output(args: Any) -> Iterator[None]:
    """Loading and tokenizing before the ``Trainer`` exists, under the Trainer's switches for its own output.

    ``Trainer.__init__`` applies ``--log_level``/``--log_level_replica`` and hides replicas' bars, but the model
    load and ``dataset.map`` come first: without this, every process draws its own "Map" and "Loading weights"
    bars. Inside, transformers' verbosity is the process's level (kept afterwards, as the Trainer would set it)
    and the bars of ``datasets`` and transformers are drawn only on process 0 and without ``--disable_tqdm``.
    """
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    transformers_logging.set_verbosity(args.get_process_log_level())
    hide = not (progress_enabled(args.disable_tqdm) and args.process_index == 0)
    hide_datasets = hide and not are_progress_bars_disabled()
    hide_transformers = hide and transformers_logging.is_progress_bar_enabled()
    if hide_datasets:
        disable_progress_bars()
    if hide_transformers:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide_datasets:
            enable_progress_bars()
        if hide_transformers:
            transformers_logging.enable_progress_bar()
