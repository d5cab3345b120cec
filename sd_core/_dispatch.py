"""The delivery threads: callbacks of users (subscribers, closers, health listeners) run here,
so that a slow or blocking one delays only itself.

:class:`Dispatcher` is a pool of daemon threads that grows when every thread is busy (up to
``max_workers``) and shrinks when threads stay idle. :class:`Mailbox` delivers values to one
callback through it, one at a time, in order, coalescing to the latest value not yet delivered.
The process has one dispatcher, :func:`dispatcher`; it stops and joins its threads at exit.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from ._notifier import Notifier
from ._secrets import logger

__all__ = ["Dispatcher", "Mailbox", "dispatcher", "is_never_blocking", "never_blocks"]

log = logger("sd_core.dispatch")

T = TypeVar("T")

MAX_WORKERS = 64
"""Beyond this many threads stuck in callbacks, further deliveries queue."""
IDLE_SECONDS = 30.0
"""A thread idle this long ends."""


class Dispatcher:
    """Runs tasks on a pool of threads named ``sd-dispatch-N``."""

    def __init__(self, *, max_workers: int = MAX_WORKERS, idle: float = IDLE_SECONDS) -> None:
        self._max = max_workers
        self._idle_seconds = idle
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._tasks: collections.deque[Callable[[], object]] = collections.deque()
        self._workers: set[threading.Thread] = set()
        self._waiting = 0
        self._running = 0
        self._retire = 0
        self._stopping = False
        self._names = itertools.count(1)

    def submit(self, task: Callable[[], object]) -> None:
        """Run ``task()`` on a pool thread; its exceptions are logged, never raised."""
        with self._lock:
            if self._stopping:
                return
            self._tasks.append(task)
            if self._waiting >= len(self._tasks):
                self._cond.notify()
            elif len(self._workers) < self._max:
                thread = threading.Thread(
                    target=self._work, name=f"sd-dispatch-{next(self._names)}", daemon=True
                )
                self._workers.add(thread)
                thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                idle_since = time.monotonic()
                while not self._tasks:
                    if self._stopping or self._retire > 0:
                        if self._retire > 0:
                            self._retire -= 1
                        self._workers.discard(me)
                        self._cond.notify_all()
                        return
                    left = self._idle_seconds - (time.monotonic() - idle_since)
                    if left <= 0:
                        self._workers.discard(me)
                        return
                    self._waiting += 1
                    try:
                        self._cond.wait(left)
                    finally:
                        self._waiting -= 1
                task = self._tasks.popleft()
                self._running += 1
            try:
                task()
            except BaseException:
                log.exception("a callback raised on a delivery thread: %r", task)
            finally:
                with self._lock:
                    self._running -= 1
                    if not self._tasks and not self._running:
                        self._cond.notify_all()

    @property
    def threads(self) -> int:
        """How many pool threads exist now."""
        return len(self._workers)

    def quiesce(self, timeout: float = 5.0) -> bool:
        """Wait until no task is queued or running, then end the idle threads and join them.

        For tests, which check that no thread is left behind. False when tasks were still
        running after ``timeout`` seconds (their threads are left running).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._tasks or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            idle = list(self._workers)
            self._retire = len(idle)
            self._cond.notify_all()
        for thread in idle:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._retire = 0
        return True

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop taking tasks, let running ones end (up to ``timeout``) and join the threads."""
        with self._lock:
            self._stopping = True
            self._tasks.clear()
            self._cond.notify_all()
            workers = list(self._workers)
        deadline = time.monotonic() + timeout
        for thread in workers:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _after_fork(self) -> None:
        # In a forked child the parent's threads do not exist: start afresh.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._tasks.clear()
        self._workers = set()
        self._waiting = self._running = self._retire = 0


_DISPATCHER = Dispatcher()
atexit.register(_DISPATCHER.shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_DISPATCHER._after_fork)


F = TypeVar("F", bound=Callable[..., object])


def never_blocks(function: F) -> F:
    """Mark a callback (a function or a method) as one that returns at once: instancers call
    it on the publishing thread instead of a delivery thread."""
    function._sd_never_blocks = True  # type: ignore[attr-defined]
    return function


def is_never_blocking(callback: object) -> bool:
    """True for callbacks marked with :func:`never_blocks`."""
    return getattr(callback, "_sd_never_blocks", False) is True


def dispatcher() -> Dispatcher:
    """The process's dispatcher."""
    return _DISPATCHER


class Mailbox(Generic[T]):
    """Delivers values to ``callback`` one at a time, in order, keeping only the latest value
    not yet delivered (every value must be a whole truth, like an :class:`~sd_core.Event`).

    ``offer()`` never blocks on the callback. Deliveries run on the dispatcher, or on the
    offering thread when ``inline`` (for callbacks known never to block). ``same(a, b)`` says
    when a value need not be delivered after the previous one. A callback that raises is
    logged (``describe`` names it) and still gets later values. ``done`` is notified after
    each value taken.
    """

    __slots__ = (
        "_busy",
        "_callback",
        "_closed",
        "_describe",
        "_done",
        "_inline",
        "_last",
        "_lock",
        "_pending",
        "_same",
        "_seq",
        "callback",
    )

    def __init__(
        self,
        callback: Callable[[T], object],
        *,
        inline: bool = False,
        same: Callable[[T, T], bool] | None = None,
        describe: str = "subscriber",
        done: Notifier | None = None,
    ) -> None:
        self.callback = callback
        self._callback = callback
        self._inline = inline
        self._same = same
        self._describe = describe
        self._lock = threading.Lock()
        self._pending: tuple[int, T] | None = None
        self._last: tuple[int, T] | None = None
        self._busy = False
        self._closed = False
        self._seq = 0
        self._done = done

    @property
    def delivered(self) -> int:
        """The sequence number of the latest value taken (delivered or found the same)."""
        last = self._last
        return -1 if last is None else last[0]

    @property
    def closed(self) -> bool:
        """True once closed: nothing more is delivered."""
        return self._closed

    def offer(self, value: T, seq: int | None = None) -> None:
        """Deliver ``value`` after the values before it (or instead of those not yet taken)."""
        with self._lock:
            if self._closed:
                return
            if seq is None:
                self._seq += 1
                seq = self._seq
            self._pending = (seq, value)
            if self._busy:
                return
            self._busy = True
        if self._inline:
            self._drain()
        else:
            dispatcher().submit(self._drain)

    def claim(self, value: T, seq: int) -> None:
        """Hold ``value`` for :meth:`deliver_claimed` on the caller's thread; offers that come
        meanwhile queue behind it."""
        with self._lock:
            self._pending = (seq, value)
            self._busy = True

    def deliver_claimed(self) -> None:
        """Deliver the claimed value on this thread; later values go to the dispatcher."""
        self._drain(limit=1, contain=False)

    def close(self) -> None:
        """Deliver nothing more (a delivery in progress finishes)."""
        with self._lock:
            self._closed = True
            self._pending = None

    def _drain(self, limit: int | None = None, contain: bool = True) -> None:
        count = 0
        while True:
            with self._lock:
                item = self._pending
                if item is None or self._closed:
                    self._busy = False
                    return
                if limit is not None and count >= limit:
                    break
                self._pending = None
            count += 1
            last = self._last
            try:
                # The offerer already dropped a value the same as its predecessor: compare
                # only when values were skipped in between.
                if (
                    last is None
                    or self._same is None
                    or item[0] == last[0] + 1
                    or not self._same(item[1], last[1])
                ):
                    self._call(item[1])
            except BaseException:
                if not contain:  # the caller's own thread: its KeyboardInterrupt is its own
                    self._last = item
                    self._hand_off()
                    raise
                log.error(
                    "%s %r raised a BaseException; contained, it still gets later events",
                    self._describe,
                    self.callback,
                    exc_info=True,
                )
            self._last = item
            if self._done is not None:
                self._done.notify()
        dispatcher().submit(self._drain)

    def _call(self, value: T) -> None:
        try:
            self._callback(value)
        except Exception:
            log.exception("%s %r raised; it still gets later events", self._describe, self.callback)

    def _hand_off(self) -> None:
        with self._lock:
            if self._pending is None or self._closed:
                self._busy = False
                return
        dispatcher().submit(self._drain)

    def __repr__(self) -> str:
        return f"<Mailbox {self.callback!r}>"
