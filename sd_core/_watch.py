"""Watching a backend: what the three watch styles share, and the blocking style.

Every style gives the same guarantees: the current state at once, identical sets not sent
again, one error event on the transition to failure, a full set on recovery, capped
exponential backoff with jitter, nothing raised into a subscriber, and a bounded ``stop()``.

- :class:`WatchInstancer`: a blocking function in a thread (clients whose calls block);
- :class:`~sd_core._async_watch.AsyncWatchInstancer`: a coroutine on the core's event loop;
- :class:`~sd_core._push.PushInstancer`: the client's own callbacks publish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from ._backoff import Backoff
from ._broadcast import BaseInstancer
from ._clock import Signal
from ._errors import BackendUnavailableError, SDError
from ._event import Event
from ._instance import Instance
from ._secrets import logger, scrub, scrub_error
from ._timeouts import check_timeout

__all__ = ["Watch", "WatchContext", "WatchInstancer", "WatchingInstancer"]

log = logger("sd_core.instancer")


class WatchingInstancer(BaseInstancer):
    """An instancer fed by a backend: what the three watch styles share.

    :meth:`_published` takes a full set (and resets the backoff); :meth:`_failed` takes an
    error and sends one error event on the transition to failure (a non-:class:`SDError`
    becomes :class:`BackendUnavailableError`), secrets scrubbed.
    """

    def __init__(self, *, name: str, backoff: Backoff | None = None) -> None:
        super().__init__()
        self.name = name
        self._backoff = backoff or Backoff(initial=0.2, maximum=30.0)

    def _published(self, instances: Iterable[Instance]) -> None:
        event = Event(instances)
        self._backoff.reset()
        self.update(event)

    def _failed(self, exc: BaseException) -> None:
        error: SDError
        scrub_error(exc)
        if isinstance(exc, SDError):
            error = exc
        else:
            error = BackendUnavailableError(f"{self.name}: {type(exc).__name__}: {scrub(str(exc))}")
            error.__cause__ = exc
        current = self.state
        if current is None or current.ok:
            log.warning("%s: discovery failed, retrying with backoff: %s", self.name, error)
            self.update(Event(error=error))
        else:
            log.debug("%s: still failing: %s", self.name, error)

    def _alive(self) -> bool:
        """Whether what feeds the instancer still runs (a thread, a task, callbacks)."""
        return True

    def __repr__(self) -> str:
        if self.stopped:
            state = "stopped"
        elif not self._alive():
            state = "dead"
        elif self._state is not None and self._state.error is not None:
            state = "failing"
        else:
            state = "watching"
        return f"<{type(self).__name__} {self.name} {state}>"


class WatchContext:
    """What a blocking watch function is given: publish, wait, and learn of stop."""

    def __init__(self, owner: WatchInstancer) -> None:
        self._owner = owner
        self._stop = Signal()
        self._interrupters: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def stopping(self) -> bool:
        """True once the instancer is stopping: return as soon as possible."""
        return self._stop.is_set()

    def publish(self, instances: Iterable[Instance]) -> None:
        """Report the complete current set of instances (never a delta)."""
        self._owner._published(instances)

    def wait(self, seconds: float | None) -> bool:
        """Sleep up to ``seconds`` of the core's clock (``None``: until stopping); True (at
        once) if the instancer is stopping."""
        return self._stop.wait(check_timeout("seconds", seconds))

    def on_stop(self, interrupt: Callable[[], None]) -> None:
        """Call ``interrupt`` when the instancer stops, to break a blocking call.

        Registered interrupters hold for the current run of the watch function only.
        """
        with self._lock:
            self._interrupters.append(interrupt)
        if self._stop.is_set():
            self._run_interrupter(interrupt)

    def _new_run(self) -> None:
        with self._lock:
            self._interrupters.clear()

    def _set_stopping(self) -> None:
        self._stop.set()
        with self._lock:
            interrupters = tuple(self._interrupters)
        for interrupt in interrupters:
            self._run_interrupter(interrupt)

    def _run_interrupter(self, interrupt: Callable[[], None]) -> None:
        try:
            interrupt()
        except Exception:
            log.debug("interrupting %s raised", self._owner.name, exc_info=True)


Watch = Callable[[WatchContext], None]
"""A backend's blocking watch loop: publishes full sets until stopped, raises on failure."""


class WatchInstancer(WatchingInstancer):
    """An instancer fed by a backend's blocking watch function, run in a background thread.

    ``watch(ctx)`` calls ``ctx.publish(instances)`` each time it knows the whole set and
    returns when ``ctx.stopping``. When it raises (anything, ``BaseException`` included),
    one error event is sent on the transition to failure and the function is called again
    after a capped exponential backoff with jitter; the next successful publish sends the
    full set. ``stop()`` interrupts the function (see :meth:`WatchContext.on_stop`) and joins
    the thread within ``join_timeout``.
    """

    def __init__(
        self,
        watch: Watch,
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
        self._ctx = WatchContext(self)
        self._crashed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"sd-watch-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ctx = self._ctx
        try:
            while not ctx.stopping:
                ctx._new_run()
                try:
                    self._watch(ctx)
                except BaseException as exc:  # a watch must not end the thread, whatever it raises
                    if ctx.stopping:
                        break
                    self._failed(exc)
                else:
                    if ctx.stopping:
                        break
                    log.debug("%s: watch returned; starting it again", self.name)
                ctx.wait(self._backoff.next())
        except BaseException as exc:  # pragma: no cover - the machinery itself failed
            self._crashed = exc
            log.critical("%s: the watch thread ended: %r", self.name, exc, exc_info=True)
            raise

    def _alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop watching, end subscriptions and join the watch thread (idempotent)."""
        super().stop()
        self._ctx._set_stopping()
        if self._thread is not threading.current_thread():
            self._thread.join(self._join_timeout)
            if self._thread.is_alive():
                log.error(
                    "%s: watch thread did not stop within %s s", self.name, self._join_timeout
                )
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()
