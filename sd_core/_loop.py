"""The core's event loop: one asyncio loop in one background thread, shared by every async
watch, async registrar and timer of the process, so that a thousand async instancers cost
one thread, not a thousand.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._secrets import logger

__all__ = ["CoreLoop", "core_loop"]

log = logger("sd_core.loop")

T = TypeVar("T")


class CoreLoop:
    """Starts the loop thread (``sd-loop``) on first use; :meth:`stop` ends it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (started if needed)."""
        with self._lock:
            loop = self._loop
            if loop is not None:
                return loop
            loop = asyncio.new_event_loop()
            started = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(loop, started), name="sd-loop", daemon=True
            )
            thread.start()
            started.wait()
            self._loop, self._thread = loop, thread
            return loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            try:
                pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def in_loop(self) -> bool:
        """True when called from the loop's own thread."""
        return self._thread is threading.current_thread()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; its result as a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (not from the loop's thread)."""
        if self.in_loop():
            coro.close()
            raise RuntimeError("a blocking call on the sd-loop thread would deadlock it")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout} s") from None

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` run on the core loop from any event loop, without a worker thread."""
        if self.in_loop():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def idle(self) -> bool:
        """True when the loop is not running or has no task left."""
        loop = self._loop
        if loop is None:
            return True
        tasks = concurrent.futures.Future[int]()

        def count() -> None:
            tasks.set_result(sum(1 for task in asyncio.all_tasks(loop) if not task.done()))

        try:
            loop.call_soon_threadsafe(count)
            return tasks.result(5) == 0
        except (RuntimeError, concurrent.futures.TimeoutError):
            return False

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until the loop has no task left (cancelled ones take a turn to end); False if
        tasks still run after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what still runs, stop the loop and join its thread (it starts again on use)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            return
        if thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.error("the sd-loop thread did not stop within %s s", timeout)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._loop = self._thread = None


_CORE_LOOP = CoreLoop()
atexit.register(_CORE_LOOP.stop)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_CORE_LOOP._after_fork)


def core_loop() -> CoreLoop:
    """The process's core loop."""
    return _CORE_LOOP
