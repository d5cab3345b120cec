"""Timeouts: one rule for every wait the core offers.

A timeout is a number of seconds. ``None`` and ``math.inf`` wait without limit, and so does any
value too large for the platform's timers (``threading.TIMEOUT_MAX``, about 292 years); NaN and
values that are not numbers are refused with a ``ValueError`` naming the parameter.
"""

from __future__ import annotations

import math
import threading

__all__ = ["FOREVER_NAMES", "check_timeout"]

FOREVER_NAMES = "None or math.inf"
"""How the documentation and error messages name "wait without limit"."""


def check_timeout(name: str, value: object, *, positive: bool = False) -> float | None:
    """``value`` as seconds, or None for "without limit".

    ``positive`` refuses zero and negative values (a deadline that has already passed);
    otherwise they are returned as they are (callers treat them as "do not wait").
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"{name} must be a number of seconds or {FOREVER_NAMES} (no limit), got {value!r}"
        )
    seconds = float(value)
    if math.isnan(seconds):
        raise ValueError(
            f"{name} must be a number of seconds or {FOREVER_NAMES} (no limit), got nan"
        )
    if positive and seconds <= 0:
        raise ValueError(
            f"{name} must be a number of seconds > 0 or {FOREVER_NAMES} (no limit), got {value!r}"
        )
    if seconds >= threading.TIMEOUT_MAX:
        return None
    return seconds
