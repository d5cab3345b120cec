"""Ending by hand a ``choose()`` / ``achoose()`` block entered by hand: for a request that stays
in flight after the call that started it returned (a response body still to read, a stream, a
future), so that its latency and outcome reach the balancer when it really ends."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

__all__ = ["aexit_choice", "exit_choice"]


def exit_choice(choice: AbstractContextManager[Any], error: BaseException | None) -> None:
    """End a ``choose()`` block with ``error`` as its outcome (None: a success)."""
    if error is None:
        choice.__exit__(None, None, None)
    else:
        choice.__exit__(type(error), error, error.__traceback__)


async def aexit_choice(
    choice: AbstractAsyncContextManager[Any], error: BaseException | None
) -> None:
    """Async twin of :func:`exit_choice`, for an ``achoose()`` block."""
    if error is None:
        await choice.__aexit__(None, None, None)
    else:
        await choice.__aexit__(type(error), error, error.__traceback__)
