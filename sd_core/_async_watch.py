"""AsyncWatchInstancer: a backend's watch coroutine, run on the core's event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Iterable

from ._backoff import Backoff
from ._clock import clock
from ._instance import Instance
from ._loop import core_loop
from ._secrets import logger
from ._watch import WatchingInstancer

__all__ = ["AsyncWatch", "AsyncWatchContext", "AsyncWatchInstancer"]

log = logger("sd_core.instancer")


class AsyncWatchContext:
    """What an async watch function is given: publish, fail, and sleep."""

    def __init__(self, owner: AsyncWatchInstancer) -> None:
        self._owner = owner
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """True once the instancer is stopping (the watch is also cancelled)."""
        return self._stopping

    def publish(self, instances: Iterable[Instance]) -> None:
        """Report the complete current set of instances (never a delta)."""
        self._owner._published(instances)

    def fail(self, error: BaseException) -> None:
        """Report an error without ending the watch (the next publish recovers)."""
        self._owner._failed(error)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of the core's clock (cancelled when the instancer stops)."""
        await clock().sleep(seconds)


AsyncWatch = Callable[[AsyncWatchContext], Awaitable[None]]
"""A backend's async watch loop: publishes full sets until cancelled, raises on failure."""


class AsyncWatchInstancer(WatchingInstancer):
    """An instancer fed by ``async def watch(ctx)``, run as a task of the core's event loop.

    Every async instancer of the process shares that one loop and its one thread. When the
    coroutine raises, one error event is sent on the transition to failure and it is run
    again after the backoff; the next publish sends the full set. ``stop()`` cancels it and
    waits for it to end, up to ``join_timeout`` seconds.
    """

    def __init__(
        self,
        watch: AsyncWatch,
        *,
        name: str,
        backoff: Backoff | None = None,
        on_close: Callable[[], object] | None = None,
        join_timeout: float = 10.0,
    ) -> None:
        super().__init__(name=name, backoff=backoff)
        self._watch = watch
        self._on_close = on_close
        self._join_timeout = join_timeout
        self._ctx = AsyncWatchContext(self)
        self._task: asyncio.Task[None] | None = None
        self._future = core_loop().submit(self._start())

    async def _start(self) -> None:
        self._task = asyncio.current_task()
        ctx = self._ctx
        while not ctx.stopping:
            try:
                await self._watch(ctx)
            except asyncio.CancelledError:
                if ctx.stopping:
                    return
                raise
            except BaseException as exc:  # a watch must not end the task, whatever it raises
                if ctx.stopping:
                    return
                self._failed(exc)
            else:
                if ctx.stopping:
                    return
                log.debug("%s: watch returned; starting it again", self.name)
            await clock().sleep(self._backoff.next())

    def _alive(self) -> bool:
        return not self._future.done()

    def _cancel(self) -> None:
        self._ctx._stopping = True
        loop = core_loop().loop()
        task = self._task
        if task is not None:
            loop.call_soon_threadsafe(task.cancel)
        else:
            self._future.cancel()

    def stop(self) -> None:
        """Stop watching, end subscriptions and wait for the watch to end (idempotent)."""
        super().stop()
        self._cancel()
        if not core_loop().in_loop():
            try:
                self._future.result(self._join_timeout)
            except (concurrent.futures.CancelledError, asyncio.CancelledError):
                pass
            except concurrent.futures.TimeoutError:
                log.error("%s: watch did not stop within %s s", self.name, self._join_timeout)
            except Exception:
                log.debug("%s: the watch ended with an error", self.name, exc_info=True)
        self._closed()

    async def astop(self) -> None:
        """Async twin of :meth:`stop`: waits for the watch without blocking the loop."""
        WatchingInstancer.stop(self)
        self._cancel()
        if not core_loop().in_loop():
            ended = asyncio.wrap_future(self._future)
            done, _ = await asyncio.wait({ended}, timeout=self._join_timeout)
            if not done:
                log.error("%s: watch did not stop within %s s", self.name, self._join_timeout)
        self._closed()

    async def aclose(self) -> None:
        """Same as :meth:`astop`."""
        await self.astop()

    def _closed(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()
