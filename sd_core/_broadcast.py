"""BaseInstancer: the subscriber registry every instancer shares (dedup, replay, broadcast)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from ._closing import Closing
from ._event import Event
from ._subscription import Subscription

__all__ = ["BaseInstancer", "Subscriber"]

log = logging.getLogger("sd_core.instancer")

Subscriber = Callable[[Event], None]
"""Receives each event an instancer publishes."""


class BaseInstancer(Closing):
    """Holds the current event of one service and hands it to subscribers.

    ``register()`` delivers the current event at once (when one is known) and every change
    after it; identical consecutive events are not sent again. A subscriber that raises is
    logged and the others are still served. Backends call :meth:`update`.
    """

    def __init__(self) -> None:
        # One re-entrant lock orders every delivery, so each subscriber sees events in order
        # and exactly once, and a subscriber may (de)register from inside its callback.
        self._lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._state: Event | None = None
        self._stopped = False

    @property
    def state(self) -> Event | None:
        """The latest event, or None before the backend first answered."""
        return self._state

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopped

    def update(self, event: Event) -> bool:
        """Publish ``event`` unless it says the same as the current one; True if sent."""
        with self._lock:
            if self._stopped or event.same_as(self._state):
                return False
            self._state = event
            for subscriber in tuple(self._subscribers):
                self._deliver(subscriber, event)
            return True

    def register(self, subscriber: Subscriber) -> None:
        """Add a subscriber and deliver the current event to it at once."""
        with self._lock:
            if subscriber in self._subscribers:
                return
            self._subscribers.append(subscriber)
            if self._state is not None:
                self._deliver(subscriber, self._state)

    def deregister(self, subscriber: Subscriber) -> None:
        """Remove a subscriber; unknown subscribers are ignored."""
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(subscriber)

    def subscribe(self) -> Subscription:
        """An iterator and async iterator of events that coalesces to the latest."""
        sub = Subscription(self.deregister)
        with self._lock:
            if self._stopped:
                sub._closed_by_instancer()
                return sub
            self.register(sub)
        return sub

    def stop(self) -> None:
        """Stop publishing and end every subscription (idempotent)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            if isinstance(subscriber, Subscription):
                subscriber._closed_by_instancer()

    def close(self) -> None:
        """Same as :meth:`stop` (so that ``with`` and ``async with`` stop the instancer)."""
        self.stop()

    async def astop(self) -> None:
        """Async twin of :meth:`stop`: joining the watch thread does not block the loop."""
        await self.aclose()

    def _deliver(self, subscriber: Subscriber, event: Event) -> None:
        try:
            subscriber(event)
        except Exception:
            log.exception(
                "subscriber %r raised on %r; other subscribers are still served", subscriber, event
            )
