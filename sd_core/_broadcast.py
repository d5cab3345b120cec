"""BaseInstancer: the subscriber registry every instancer shares (dedup, replay, broadcast)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._clock import clock
from ._closing import Closing
from ._dispatch import Mailbox, is_never_blocking
from ._event import Event
from ._notifier import Notifier
from ._subscription import Subscription
from ._timeouts import check_timeout

__all__ = ["BaseInstancer", "Subscriber"]

Subscriber = Callable[[Event], None]
"""Receives each event an instancer publishes."""


def _same(new: Event, old: Event) -> bool:
    return new.same_as(old)


class BaseInstancer(Closing):
    """Holds the current event of one service and hands it to subscribers.

    ``register()`` delivers the current event (when one is known) on the caller's thread
    before it returns, and every change after it on the core's delivery threads: each
    subscriber sees events in order, one at a time, and a slow or blocking subscriber delays
    only itself (it then skips to the latest event, as every event is the whole truth).
    Identical consecutive events are not sent again. A subscriber that raises is logged and
    still gets later events. Backends call :meth:`update`, which never waits for subscribers.
    """

    def __init__(self) -> None:
        # Held only to change the registry and the state, never while a subscriber runs.
        self._lock = threading.Lock()
        self._mailboxes: list[Mailbox[Event]] = []
        self._state: Event | None = None
        self._seq = 0
        self._stopped = False
        self._taken = Notifier()

    @property
    def state(self) -> Event | None:
        """The latest event, or None before the backend first answered."""
        return self._state

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopped

    def update(self, event: Event) -> bool:
        """Publish ``event`` unless it says the same as the current one; True if it does not.

        Returns at once: subscribers get it on the delivery threads (see :meth:`settle`).
        """
        with self._lock:
            if self._stopped or event.same_as(self._state):
                return False
            self._state = event
            self._seq += 1
            for mailbox in self._mailboxes:
                mailbox.offer(event, self._seq)
            return True

    def settle(self, timeout: float | None = 5.0) -> bool:
        """Wait until every subscriber has taken the current event; False if ``timeout``
        seconds passed first (``None`` or ``math.inf``: no limit)."""
        limit = check_timeout("timeout", timeout)
        deadline = None if limit is None else clock().monotonic() + limit
        while True:
            seen = self._taken.version
            with self._lock:
                target = self._seq
                mailboxes = tuple(self._mailboxes)
            if all(m.closed or m.delivered >= target for m in mailboxes):
                return True
            remaining = None if deadline is None else deadline - clock().monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._taken.wait(seen, remaining)

    def register(self, subscriber: Subscriber) -> None:
        """Add a subscriber and deliver the current event to it before returning."""
        inline = isinstance(subscriber, Subscription) or is_never_blocking(subscriber)
        with self._lock:
            if self._stopped:
                if isinstance(subscriber, Subscription):
                    subscriber._closed_by_instancer()
                return
            if any(m.callback == subscriber for m in self._mailboxes):
                return
            mailbox = Mailbox(
                subscriber, inline=inline, same=_same, describe="subscriber", done=self._taken
            )
            self._mailboxes.append(mailbox)
            state = self._state
            if state is None:
                return
            if inline:
                mailbox.offer(state, self._seq)
                return
            mailbox.claim(state, self._seq)
        mailbox.deliver_claimed()

    def deregister(self, subscriber: Subscriber) -> None:
        """Remove a subscriber (a delivery in progress finishes); unknown ones are ignored."""
        with self._lock:
            for mailbox in self._mailboxes:
                if mailbox.callback == subscriber:
                    self._mailboxes.remove(mailbox)
                    mailbox.close()
                    break
        self._taken.notify()

    @property
    def subscribers(self) -> int:
        """How many subscribers are registered."""
        return len(self._mailboxes)

    def subscribe(self) -> Subscription:
        """An iterator and async iterator of events that coalesces to the latest."""
        sub = Subscription(self.deregister)
        self.register(sub)
        return sub

    def stop(self) -> None:
        """Stop publishing and end every subscription (idempotent; never waits for a
        subscriber)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            mailboxes, self._mailboxes = self._mailboxes, []
        for mailbox in mailboxes:
            mailbox.close()
            if isinstance(mailbox.callback, Subscription):
                mailbox.callback._closed_by_instancer()
        self._taken.notify()

    def close(self) -> None:
        """Same as :meth:`stop` (so that ``with`` and ``async with`` stop the instancer)."""
        self.stop()

    async def astop(self) -> None:
        """Async twin of :meth:`stop`: joining the watch thread does not block the loop."""
        await self.aclose()
