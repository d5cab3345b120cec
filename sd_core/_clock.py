"""The clock every timer of the core reads, and a fake one that tests move by hand.

Watch waits and backoff, keepalives, endpoint drain and invalidation, balancer waits, retry
deadlines and registrar health all take the time, and wait, through :func:`clock`. Tests
install a :class:`FakeClock` with :func:`use_clock` and run minutes of simulated time in
milliseconds: waits end when the fake time passes their deadline, or when they are
signalled, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

__all__ = ["Clock", "FakeClock", "Signal", "clock", "use_clock"]


class Clock:
    """Real time: ``time.monotonic()`` and ``time.time()``, waits with real timeouts."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines and ages)."""
        return time.monotonic()

    def time(self) -> float:
        """Wall-clock seconds since the epoch (timestamps shown to people)."""
        return time.time()

    def wait_for(
        self, cond: threading.Condition, predicate: Callable[[], bool], timeout: float | None
    ) -> bool:
        """``cond.wait_for(predicate, timeout)`` in this clock's time; hold ``cond``'s lock."""
        return cond.wait_for(predicate, timeout)

    async def sleep(self, seconds: float) -> None:
        """Sleep in this clock's time (async)."""
        await asyncio.sleep(seconds)

    def timeout(self, seconds: float | None) -> contextlib.AbstractAsyncContextManager[object]:
        """``asyncio.timeout(seconds)`` in this clock's time."""
        return asyncio.timeout(seconds)

    def __repr__(self) -> str:
        return "<Clock real time>"


class FakeClock(Clock):
    """A clock that moves only when :meth:`advance` moves it.

    Threads waiting through it (:meth:`wait_for`) wake when the fake time reaches their
    deadline or when their condition is notified; coroutines sleeping through it wake when the
    fake time reaches their end. :meth:`advance` returns once every thread it woke is waiting
    again (or has ended), so a test can step through time deterministically.
    """

    def __init__(self, start: float = 1_000.0, wall: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiting: dict[int, tuple[float, threading.Condition]] = {}
        self._sleepers: list[
            tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []
        self._ids = itertools.count()
        self._sleeps = 0

    def monotonic(self) -> float:
        """The fake time."""
        return self._now

    def time(self) -> float:
        """The fake wall-clock time (moves with the fake time)."""
        return self._now + self._wall_offset

    def wait_for(
        self, cond: threading.Condition, predicate: Callable[[], bool], timeout: float | None
    ) -> bool:
        """Wait until ``predicate()`` or the fake time passed ``timeout``; hold ``cond``'s lock."""
        result = predicate()
        if result:
            return result
        deadline = None if timeout is None else self._now + timeout
        me = threading.get_ident()
        while True:
            with self._lock:  # checked and registered at once: advance() sees one or the other
                if deadline is not None and self._now >= deadline:
                    break
                self._waiting[me] = (float("inf") if deadline is None else deadline, cond)
                self._changed.notify_all()
            try:
                cond.wait()
            finally:
                with self._lock:
                    self._waiting.pop(me, None)
                    self._changed.notify_all()
            result = predicate()
            if result:
                return result
        return predicate()

    async def sleep(self, seconds: float) -> None:
        """Sleep until the fake time has moved ``seconds`` on."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            heapq.heappush(self._sleepers, (self._now + seconds, next(self._ids), loop, future))
            self._sleeps += 1
            self._changed.notify_all()
        try:
            await future
        finally:
            if not future.done():
                future.cancel()

    def timeout(self, seconds: float | None) -> contextlib.AbstractAsyncContextManager[object]:
        """``asyncio.timeout`` that expires when the fake time has moved ``seconds`` on."""
        return self._timeout(seconds)

    @contextlib.asynccontextmanager
    async def _timeout(self, seconds: float | None) -> AsyncIterator[object]:
        async with asyncio.timeout(None) as scope:
            if seconds is None:
                yield scope
                return
            loop = asyncio.get_running_loop()

            async def expire() -> None:
                await self.sleep(seconds)
                scope.reschedule(loop.time())

            watcher = asyncio.ensure_future(expire())
            try:
                yield scope
            finally:
                watcher.cancel()

    def advance(self, seconds: float, *, settle: float = 2.0) -> None:
        """Move the fake time ``seconds`` on, in one step, and wake what is due.

        Returns once every thread that was waiting through the clock and is now due is waiting
        again or has ended, and the woken coroutines ran; ``settle`` bounds that wait in real
        seconds.
        """
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds})")
        with self._lock:
            self._now += seconds
            now = self._now
            due = {
                ident: cond for ident, (deadline, cond) in self._waiting.items() if deadline <= now
            }
            woken: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
            while self._sleepers and self._sleepers[0][0] <= now:
                _, _, loop, future = heapq.heappop(self._sleepers)
                woken.append((loop, future))
        for cond in due.values():
            with cond:
                cond.notify_all()
        loops: set[asyncio.AbstractEventLoop] = set()
        for loop, future in woken:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)
                loops.add(loop)
        deadline = time.monotonic() + settle
        self._settle_loops(loops, deadline)
        self._settle(set(due), deadline)

    def _settle_loops(self, loops: set[asyncio.AbstractEventLoop], deadline: float) -> None:
        # The woken coroutines run, maybe for several turns of their loop, then go back to
        # sleep through the clock: wait until a turn of each loop finds nothing else to run.
        for loop in loops:
            while time.monotonic() < deadline and not _idle_turn(loop, deadline):
                pass

    def _settle(self, woken: set[int], deadline: float) -> None:
        alive = {thread.ident for thread in threading.enumerate()}
        with self._lock:
            while True:
                running = {
                    ident
                    for ident in woken
                    if ident in alive and self._waiting.get(ident, (0.0,))[0] <= self._now
                }
                if not running:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(min(left, 0.05))
                alive = {thread.ident for thread in threading.enumerate()}

    def __repr__(self) -> str:
        return f"<FakeClock at {self._now:.3f}>"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _idle_turn(loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
    """Run one turn of ``loop``; True when nothing else was ready to run after it (waits in
    real time, up to ``deadline``)."""
    if loop.is_closed() or not loop.is_running():
        return True
    done = threading.Event()
    idle: list[bool] = []

    def probe() -> None:
        ready = getattr(loop, "_ready", None)  # CPython's queue of callbacks ready to run
        idle.append(ready is None or len(ready) == 0)
        done.set()

    try:
        loop.call_soon_threadsafe(probe)
    except RuntimeError:
        return True
    done.wait(max(0.0, deadline - time.monotonic()))
    return bool(idle) and idle[0]


class Signal:
    """A flag threads wait on through the clock (a ``threading.Event`` that fake time ends)."""

    __slots__ = ("_cond", "_flag")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._flag = False

    def set(self) -> None:
        """Raise the flag and wake every waiter."""
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        """Lower the flag."""
        with self._cond:
            self._flag = False

    def is_set(self) -> bool:
        """Whether the flag is up."""
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is up or ``timeout`` seconds of the clock passed; the flag."""
        with self._cond:
            return clock().wait_for(self._cond, lambda: self._flag, timeout)


class _Current:
    clock: Clock = Clock()


def clock() -> Clock:
    """The clock of the process (real time unless a test installed another)."""
    return _Current.clock


@contextlib.contextmanager
def use_clock(replacement: Clock) -> Iterator[Clock]:
    """Within the block, every timer of the core reads ``replacement``."""
    previous, _Current.clock = _Current.clock, replacement
    try:
        yield replacement
    finally:
        _Current.clock = previous
