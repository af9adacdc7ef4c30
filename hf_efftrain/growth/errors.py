"""The one exception of the growth package: a growth that cannot be built as asked."""

from __future__ import annotations

from hf_efftrain.errors import HfEfftrainError


class GrowthError(HfEfftrainError):
    """A recipe or operator call is invalid (bad layer range, mismatched widths, vocab mismatch...)."""
