"""Waiting for an instancer's events in tests, with a bound on every wait."""

from __future__ import annotations

import time
from collections.abc import Callable

from sd_core import Event, Subscription

__all__ = ["wait_for_event", "wait_for_event_async"]


def wait_for_event(
    sub: Subscription, check: Callable[[Event], bool], timeout: float, what: str
) -> Event:
    """Take events from ``sub`` until one passes ``check`` and return it; raise
    ``AssertionError`` naming ``what`` and the last event after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Event | None = None
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            last = sub.get(remaining)
        except (TimeoutError, StopIteration):
            break
        if check(last):
            return last
    raise AssertionError(f"no event with {what} within {timeout:g} s; last event: {last!r}")


async def wait_for_event_async(
    sub: Subscription, check: Callable[[Event], bool], timeout: float, what: str
) -> Event:
    """Async twin of :func:`wait_for_event`."""
    deadline = time.monotonic() + timeout
    last: Event | None = None
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            last = await sub.get_async(remaining)
        except (TimeoutError, StopAsyncIteration):
            break
        if check(last):
            return last
    raise AssertionError(f"no event with {what} within {timeout:g} s; last event: {last!r}")
