"""Subscription: an iterator and async iterator over an instancer's events."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator

from ._clock import clock
from ._closing import Closing
from ._event import Event
from ._notifier import Notifier
from ._timeouts import check_timeout

__all__ = ["Subscription"]


class Subscription(Closing, Iterator[Event], AsyncIterator[Event]):
    """The events of one instancer, coalesced to the latest one not yet taken.

    Iterate it (``for event in sub`` or ``async for event in sub``) or call ``get()``.
    Iteration ends when the subscription or its instancer is closed. Use it as a (async)
    context manager so that it unsubscribes on exit.
    """

    def __init__(self, unsubscribe: Callable[[Subscription], None]) -> None:
        self._unsubscribe = unsubscribe
        self._lock = threading.Lock()
        self._latest: Event | None = None
        self._closed = False
        self._notifier = Notifier()

    def __call__(self, event: Event) -> None:
        """Receive an event (the instancer calls this); keeps only the latest."""
        with self._lock:
            if self._closed:
                return
            self._latest = event
        self._notifier.notify()

    def _take(self) -> tuple[Event | None, bool, int]:
        with self._lock:
            event, self._latest = self._latest, None
            return event, self._closed, self._notifier.version

    def get(self, timeout: float | None = None) -> Event:
        """The next event; raises ``TimeoutError`` after ``timeout`` seconds and
        ``StopIteration`` once closed. ``None`` (the default) or ``math.inf`` waits without
        limit; NaN raises ``ValueError``."""
        deadline = _deadline(timeout)
        while True:
            event, closed, seen = self._take()
            if event is not None:
                return event
            if closed:
                raise StopIteration
            if not self._notifier.wait(seen, _remaining(deadline)):
                raise TimeoutError(f"no event within {timeout} s")

    async def get_async(self, timeout: float | None = None) -> Event:
        """Async twin of :meth:`get`; raises ``StopAsyncIteration`` once closed."""
        deadline = _deadline(timeout)
        while True:
            event, closed, seen = self._take()
            if event is not None:
                return event
            if closed:
                raise StopAsyncIteration
            if not await self._notifier.wait_async(seen, _remaining(deadline)):
                raise TimeoutError(f"no event within {timeout} s")

    def __next__(self) -> Event:
        return self.get()

    async def __anext__(self) -> Event:
        return await self.get_async()

    def __iter__(self) -> Subscription:
        return self

    def __aiter__(self) -> Subscription:
        return self

    @property
    def closed(self) -> bool:
        """True once closed; a pending event can still be taken."""
        return self._closed

    def close(self) -> None:
        """Unsubscribe and end iteration (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._unsubscribe(self)
        self._notifier.notify()

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (which never blocks)."""
        self.close()

    def _closed_by_instancer(self) -> None:
        with self._lock:
            self._closed = True
        self._notifier.notify()


def _deadline(timeout: object) -> float | None:
    seconds = check_timeout("timeout", timeout)
    return None if seconds is None else clock().monotonic() + seconds


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - clock().monotonic()
