"""Load a checkpoint under a new task head, telling the user only what concerns them.

Putting a head on a base checkpoint (a classifier on MiniLM, an MLM head before growth) leaves the head's
weights missing by design. transformers reports that as a LOAD REPORT table, and for heads with tied biases
(BERT's MLM head) as "This checkpoint seem corrupted", on every load and every process. Here the load is
checked instead: weights missing from the model's *body* (``base_model_prefix``) or mismatched in shape are
warned about in one line; the new head and dropped checkpoint parts are one line at info level. Example::

    model = from_pretrained_with_head(AutoModelForSequenceClassification, "minilm/", num_labels=2)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hf_efftrain.log import get_logger

logger = get_logger(__name__)
LOAD_REPORT_LOGGER = "transformers.modeling_utils"  # logs the LOAD REPORT table and the tied-weights warnings


@contextmanager
def _load_report_checked_here() -> Iterator[None]:
    # A filter, not setLevel: transformers checks its tensor-parallel plan (and warns) when that level is raised.
    report = logging.getLogger(LOAD_REPORT_LOGGER)
    errors_only = lambda record: record.levelno >= logging.ERROR  # noqa: E731
    report.addFilter(errors_only)
    try:
        yield
    finally:
        report.removeFilter(errors_only)


def from_pretrained_with_head(auto_class: Any, path: str, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained(path, **kwargs)``; only missing body weights (not the head) are warned about."""
    with _load_report_checked_here():
        model, info = auto_class.from_pretrained(path, output_loading_info=True, **kwargs)
    body = model.base_model_prefix + "."
    missing = sorted(info.get("missing_keys", []))
    in_body = [key for key in missing if key.startswith(body)]
    mismatched = [str(entry[0] if isinstance(entry, tuple) else entry) for entry in info.get("mismatched_keys", [])]
    if in_body or mismatched:
        logger.warning(
            "%s: %d body weights missing from %s and newly initialized (%s); %d with another shape (%s)",
            type(model).__name__, len(in_body), path, ", ".join(in_body[:5]) or "-", len(mismatched),
            ", ".join(mismatched[:5]) or "-",
        )  # fmt: skip
    head = [key for key in missing if not key.startswith(body)]
    unexpected = sorted(info.get("unexpected_keys", []))
    if head or unexpected:
        logger.info(
            "%s from %s: new head weights %s; checkpoint weights not used: %s",
            type(model).__name__, path, ", ".join(head) or "-", ", ".join(unexpected) or "-",
        )  # fmt: skip
    return model
