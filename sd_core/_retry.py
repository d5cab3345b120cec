"""retry and aretry: call an endpoint, trying another pick until one succeeds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._balance.base import Balancer
from ._errors import RetryError

__all__ = ["aretry", "retry"]

RetryCallback = Callable[[int, Exception], object]


def _check(max_attempts: int, timeout: float) -> None:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")


def _give_up(errors: list[Exception], max_attempts: int, timeout: float) -> RetryError:
    if not errors:
        errors.append(TimeoutError(f"no attempt could start within {timeout} s"))
    return RetryError(
        f"gave up after {len(errors)} of {max_attempts} attempts within {timeout} s", errors
    )


def retry(
    max_attempts: int,
    timeout: float,
    balancer: Balancer[Any],
    *,
    callback: RetryCallback | None = None,
) -> Callable[..., Any]:
    """A callable that picks an endpoint with ``balancer.choose()`` and calls it with its
    arguments, trying again on another pick (avoiding the endpoints that already failed in this
    call while others are available) until a call succeeds, ``max_attempts`` calls
    failed or ``timeout`` seconds passed; then it raises :class:`RetryError` holding every
    attempt's error. While no endpoint is available it waits for one within ``timeout``.

    ``callback(attempt, error)`` runs after each failure; returning ``False`` stops early.
    A call already running is not interrupted at the deadline (use :func:`aretry` for that).
    """
    _check(max_attempts, timeout)

    def call(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + timeout
        errors: list[Exception] = []
        failed: list[Any] = []
        for attempt in range(1, max_attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            endpoint = None
            try:
                with balancer.choose(timeout=remaining, avoid=failed) as endpoint:
                    return endpoint(*args, **kwargs)
            except Exception as exc:
                errors.append(exc)
                if endpoint is not None:
                    failed.append(endpoint)
                if callback is not None and callback(attempt, exc) is False:
                    break
        raise _give_up(errors, max_attempts, timeout)

    return call


def aretry(
    max_attempts: int,
    timeout: float,
    balancer: Balancer[Any],
    *,
    callback: RetryCallback | None = None,
) -> Callable[..., Awaitable[Any]]:
    """Async twin of :func:`retry`: endpoints are called and awaited; an attempt still
    running at the deadline is cancelled and counts as a ``TimeoutError``."""
    _check(max_attempts, timeout)

    async def call(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + timeout
        errors: list[Exception] = []
        failed: list[Any] = []
        for attempt in range(1, max_attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            endpoint = None
            try:
                async with (
                    asyncio.timeout(remaining),
                    balancer.achoose(timeout=remaining, avoid=failed) as endpoint,
                ):
                    return await endpoint(*args, **kwargs)
            except Exception as exc:
                errors.append(exc)
                if endpoint is not None:
                    failed.append(endpoint)
                if callback is not None and callback(attempt, exc) is False:
                    break
        raise _give_up(errors, max_attempts, timeout)

    return call
