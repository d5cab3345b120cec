"""A change signal that both threads and asyncio tasks can wait on."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from ._clock import clock
from ._timeouts import check_timeout

__all__ = ["Notifier"]


class Notifier:
    """Wakes every thread and every asyncio task waiting for the next change.

    ``notify()`` may be called from any thread; async waiters are woken on their own loop.
    """

    __slots__ = ("_cond", "_futures", "_version")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._version = 0

    @property
    def version(self) -> int:
        """Counts notifications; a waiter passes the version it has seen."""
        return self._version

    def notify(self) -> None:
        """Wake all waiters."""
        with self._cond:
            self._version += 1
            futures, self._futures = self._futures, []
            self._cond.notify_all()
        for loop, future in futures:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    def wait(self, seen: int, timeout: float | None) -> bool:
        """Block until the version differs from ``seen``; False if ``timeout`` passed first.

        ``timeout`` is in seconds of the core's clock; ``None`` or ``math.inf`` waits without
        limit; NaN raises ``ValueError``.
        """
        timeout = check_timeout("timeout", timeout)
        if timeout is not None and timeout <= 0:
            return self._version != seen
        with self._cond:
            return clock().wait_for(self._cond, lambda: self._version != seen, timeout)

    async def wait_async(self, seen: int, timeout: float | None) -> bool:
        """Await until the version differs from ``seen``; False if ``timeout`` passed first
        (the same ``timeout`` as :meth:`wait`)."""
        timeout = check_timeout("timeout", timeout)
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._version != seen:
                return True
            if timeout is not None and timeout <= 0:
                return False
            future: asyncio.Future[None] = loop.create_future()
            self._futures.append((loop, future))
        sleeper = None if timeout is None else asyncio.ensure_future(clock().sleep(timeout))
        try:
            if sleeper is None:
                await asyncio.shield(future)
            else:
                await asyncio.wait({future, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if sleeper is not None:
                sleeper.cancel()
            if not future.done():
                future.cancel()
                with self._cond, contextlib.suppress(ValueError):
                    self._futures.remove((loop, future))
        return future.done() and not future.cancelled()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
