"""Checking knobs up front, and step budgets given as a whole number of steps or as a fraction of the run.

Every knob that counts optimizer steps (``mat_every``, ``mat_warmup_steps``, ``twa_every``, ``twa_steps``, ...)
takes either a whole number ``>= 1`` (that many steps) or a fraction in ``(0, 1)`` of the run's ``max_steps``,
resolved once the Trainer knows ``max_steps``; a fraction never resolves below one step. Example::

    check_steps("mat_warmup_steps", 0.1, zero=True)     # fine: 10 % of the run
    resolve_steps(0.1, max_steps=200)                   # -> 20
    resolve_steps(30, max_steps=200)                    # -> 30
"""

from __future__ import annotations

import math
from numbers import Real

from hf_efftrain.errors import ArgumentsError


def check_number(
    flag: str,
    value: object,
    low: float = -math.inf,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    error: type[ArgumentsError] = ArgumentsError,
) -> None:
    """Raise ``error`` naming ``flag`` unless ``value`` is a finite real number within the bounds."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise error(f"{flag} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if high is None:
            bounds = f"{'>' if low_open else '>='} {low:g}"
        else:
            bounds = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise error(f"{flag} must be {bounds}, got {value!r}")


def check_steps(flag: str, value: object, *, zero: bool = False, error: type[ArgumentsError] = ArgumentsError) -> None:
    """A step budget: a fraction of max_steps in (0, 1), a whole number of steps >= 1, or 0 when ``zero`` means off."""
    check_number(flag, value, 0, error=error)
    if value == 0 and not zero:
        raise error(f"{flag} must be a fraction of max_steps in (0, 1) or a whole number of steps >= 1, got 0")
    if value >= 1 and value != int(value):
        raise error(f"{flag} must be a fraction of max_steps in (0, 1) or a whole number of steps, got {value!r}")


def resolve_steps(value: float, max_steps: int) -> int:
    """Steps a budget stands for in a run of ``max_steps``: a fraction is rounded (at least 1), a count is kept."""
    if 0 < value < 1:
        return max(1, round(value * max_steps))
    return int(value)
