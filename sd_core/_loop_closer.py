"""Closing an asyncio resource (an httpx async pool, a grpc.aio channel) from the delivery thread
that runs an endpoint's closer: the resource belongs to the event loop that used it, so its
``aclose()`` / ``close()`` coroutine runs on that loop, and the closer waits for it (bounded)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any

from ._secrets import logger

__all__ = ["CLOSE_WAIT", "LoopBound"]

log = logger("sd_core.endpoints")

CLOSE_WAIT = 5.0
"""How long a closer waits for the coroutine it scheduled on the resource's loop."""


class LoopBound:
    """Remembers the event loop that uses a resource and closes the resource on that loop.

    :meth:`used` is called (on the loop) each time the resource is used; :meth:`close`, from
    any thread, runs ``aclose()`` on the loop last seen and waits for it up to
    :data:`CLOSE_WAIT` seconds. A resource never used holds no connection and is closed on a
    loop of its own; one whose loop is closed already cannot be closed any more (its loop took
    its connections with it) and is only logged.
    """

    __slots__ = ("_aclose", "_loop", "_what")

    def __init__(self, aclose: Callable[[], Coroutine[Any, Any, object]], what: object) -> None:
        self._aclose = aclose
        self._what = what
        self._loop: asyncio.AbstractEventLoop | None = None

    def used(self) -> None:
        """Note the running loop as the resource's (call it on the loop, at each use)."""
        self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        """Run ``aclose()`` on the resource's loop and wait for it (bounded)."""
        loop = self._loop
        if loop is None:
            asyncio.run(self._aclose())  # never used: no loop holds anything of it
            return
        if loop.is_closed():
            log.warning("%r was left open: its event loop closed before it", self._what)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # not a delivery thread: cannot wait for the loop on the loop
            loop.create_task(self._aclose())
            return
        future = asyncio.run_coroutine_threadsafe(self._aclose(), loop)
        try:
            future.result(CLOSE_WAIT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            log.warning(
                "closing %r: its event loop did not run the close within %s s "
                "(blocked, or stopped); not waiting for it",
                self._what,
                CLOSE_WAIT,
            )

    def __repr__(self) -> str:
        return f"<LoopBound {self._what!r} on {self._loop!r}>"
