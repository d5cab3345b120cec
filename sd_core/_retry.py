"""retry and aretry: call an endpoint, trying another pick until one succeeds."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from ._balance.base import Balancer
from ._clock import clock
from ._errors import NoEndpointsError, RetryError
from ._timeouts import check_timeout

__all__ = ["aretry", "retry"]

RetryCallback = Callable[[int, Exception], object]
KeyFunction = Callable[..., object]

# What choose() raises when it found nothing to pick (in time): an attempt that failed, to be
# retried. Anything else it raises (a missing key, a bad argument) is a misuse and propagates.
_NOT_PICKED = (NoEndpointsError, TimeoutError)


def _check(
    max_attempts: int, timeout: float | None, balancer: Balancer[Any], key: KeyFunction | None
) -> float | None:
    """Check the arguments; the overall timeout in seconds, or None for no deadline."""
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    seconds = check_timeout("timeout", timeout, positive=True)
    if key is not None and not callable(key):
        raise ValueError(
            f"key must be a function of the call's arguments returning the key, got {key!r}"
        )
    if key is None and getattr(balancer, "needs_key", False):
        raise ValueError(
            f"{type(balancer).__name__} needs a key: pass retry(..., key=...), a function of "
            "the call's arguments returning the key, e.g. key=lambda user_id, *args, **kwargs: "
            "user_id"
        )
    return seconds


def _give_up(errors: list[Exception], max_attempts: int, timeout: float | None) -> RetryError:
    within = "without a deadline" if timeout is None else f"within {timeout} s"
    if not errors:
        errors.append(TimeoutError(f"no attempt could start {within}"))
    return RetryError(f"gave up after {len(errors)} of {max_attempts} attempts {within}", errors)


def retry(
    max_attempts: int,
    timeout: float | None,
    balancer: Balancer[Any],
    *,
    key: KeyFunction | None = None,
    callback: RetryCallback | None = None,
) -> Callable[..., Any]:
    """A callable that picks an endpoint with ``balancer.choose()`` and calls it with its
    arguments, trying again on another pick (avoiding the endpoints that already failed in this
    call while others are available) until a call succeeds, ``max_attempts`` calls
    failed or ``timeout`` seconds passed; then it raises :class:`RetryError` holding every
    attempt's error. While no endpoint is available it waits for one within ``timeout``.
    ``timeout`` is a number of seconds > 0, or ``None`` / ``math.inf`` for no overall deadline.

    ``key(*args, **kwargs)``, when given, computes the balancer's key from the call's
    arguments (once per call); a balancer whose ``needs_key`` is true (:class:`ConsistentHash`)
    requires it, and ``retry()`` raises ``ValueError`` at once without it.
    ``callback(attempt, error)`` runs after each failure; returning ``False`` stops early.
    An error of ``choose()`` other than finding no endpoint (``NoEndpointsError``,
    ``TimeoutError``) is a misuse and propagates at once. A call already running is not
    interrupted at the deadline (use :func:`aretry` for that).
    """
    limit = _check(max_attempts, timeout, balancer, key)

    def call(*args: Any, **kwargs: Any) -> Any:
        pick_key = None if key is None else key(*args, **kwargs)
        deadline = math.inf if limit is None else clock().monotonic() + limit
        errors: list[Exception] = []
        failed: list[Any] = []
        for attempt in range(1, max_attempts + 1):
            remaining = deadline - clock().monotonic()
            if remaining <= 0:
                break
            endpoint = None
            picked = False
            try:
                with balancer.choose(pick_key, timeout=remaining, avoid=failed) as endpoint:
                    picked = True
                    return endpoint(*args, **kwargs)
            except Exception as exc:
                if not picked and not isinstance(exc, _NOT_PICKED):
                    raise
                errors.append(exc)
                if picked:
                    failed.append(endpoint)
                if callback is not None and callback(attempt, exc) is False:
                    break
        raise _give_up(errors, max_attempts, limit)

    return call


def aretry(
    max_attempts: int,
    timeout: float | None,
    balancer: Balancer[Any],
    *,
    key: KeyFunction | None = None,
    callback: RetryCallback | None = None,
) -> Callable[..., Awaitable[Any]]:
    """Async twin of :func:`retry`: endpoints are called and awaited; an attempt still
    running at the deadline is cancelled and counts as a ``TimeoutError``."""
    limit = _check(max_attempts, timeout, balancer, key)

    async def call(*args: Any, **kwargs: Any) -> Any:
        pick_key = None if key is None else key(*args, **kwargs)
        deadline = math.inf if limit is None else clock().monotonic() + limit
        errors: list[Exception] = []
        failed: list[Any] = []
        for attempt in range(1, max_attempts + 1):
            remaining = deadline - clock().monotonic()
            if remaining <= 0:
                break
            endpoint = None
            picked = False
            try:
                async with (
                    clock().timeout(None if limit is None else remaining),
                    balancer.achoose(pick_key, timeout=remaining, avoid=failed) as endpoint,
                ):
                    picked = True
                    return await endpoint(*args, **kwargs)
            except Exception as exc:
                if not picked and not isinstance(exc, _NOT_PICKED):
                    raise
                errors.append(exc)
                if picked:
                    failed.append(endpoint)
                if callback is not None and callback(attempt, exc) is False:
                    break
        raise _give_up(errors, max_attempts, limit)

    return call
