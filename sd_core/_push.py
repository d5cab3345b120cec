"""Push watches: the backend's own callbacks publish; and fan-out of one registry-wide watch
to the instancers of many services. Neither costs a thread of ours per instancer.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Mapping

from ._backoff import Backoff
from ._clock import clock
from ._dispatch import dispatcher
from ._instance import Instance
from ._loop import core_loop
from ._secrets import logger
from ._watch import WatchingInstancer

__all__ = ["Fanout", "PushContext", "PushInstancer", "PushStart"]

log = logger("sd_core.instancer")


class PushContext:
    """What a push backend's callbacks are given: publish and fail, from any thread."""

    def __init__(self, owner: PushInstancer) -> None:
        self._owner = owner

    @property
    def stopping(self) -> bool:
        """True once the instancer is stopping: publishing does nothing any more."""
        return self._owner.stopped

    def publish(self, instances: Iterable[Instance]) -> None:
        """Report the complete current set of instances (never a delta)."""
        if not self._owner.stopped:
            self._owner._published(instances)

    def fail(self, error: BaseException, *, restart: bool = False) -> None:
        """Report an error: one error event on the transition to failure. With ``restart``,
        the watch is stopped and started again after the backoff (for a watch that cannot
        recover by itself); otherwise the backend's next publish recovers."""
        owner = self._owner
        if owner.stopped:
            return
        owner._failed(error)
        if restart:
            owner._schedule_restart()


PushStart = Callable[[PushContext], Callable[[], object] | None]
"""Starts a push watch: registers the callbacks that publish, returns how to stop them."""


class PushInstancer(WatchingInstancer):
    """An instancer fed by a backend's callbacks (a client that watches by itself).

    ``start(ctx)`` registers callbacks that call ``ctx.publish(instances)`` with each whole
    set and ``ctx.fail(error)`` on trouble, and returns a function that unregisters them
    (called by :meth:`stop`). It runs in the constructor's thread, and again on a delivery
    thread after the backoff when the backend asked for a restart.
    """

    def __init__(
        self,
        start: PushStart,
        *,
        name: str,
        backoff: Backoff | None = None,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(name=name, backoff=backoff)
        self._start = start
        self._on_close = on_close
        self._ctx = PushContext(self)
        self._lock = threading.Lock()
        self._unwatch: Callable[[], object] | None = None
        self._restart: concurrent.futures.Future[None] | None = None
        self._begin()

    def _begin(self) -> None:
        try:
            unwatch = self._start(self._ctx)
        except BaseException as exc:  # a failed start is an error event and a restart
            self._failed(exc)
            self._schedule_restart()
            return
        with self._lock:
            if not self.stopped:
                self._unwatch = unwatch
                return
        _call(unwatch, self.name)

    def _schedule_restart(self) -> None:
        with self._lock:
            if self.stopped or self._restart is not None:
                return
            unwatch, self._unwatch = self._unwatch, None
            delay = self._backoff.next()
            self._restart = core_loop().submit(self._after(delay))
        _call(unwatch, self.name)

    async def _after(self, delay: float) -> None:
        await clock().sleep(delay)
        with self._lock:
            self._restart = None
            if self.stopped:
                return
        dispatcher().submit(self._begin)

    def stop(self) -> None:
        """Stop watching (unregister the callbacks) and end subscriptions (idempotent)."""
        super().stop()
        with self._lock:
            unwatch, self._unwatch = self._unwatch, None
            restart, self._restart = self._restart, None
        if restart is not None:
            restart.cancel()
        _call(unwatch, self.name)
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


def _call(unwatch: Callable[[], object] | None, name: str) -> None:
    if unwatch is None:
        return
    try:
        unwatch()
    except Exception:
        log.warning("%s: stopping the watch raised", name, exc_info=True)


class Fanout:
    """One watch of a whole registry serving the instancers of many services.

    ``start(fanout)`` starts the registry-wide watch when the first instancer attaches and
    returns how to stop it (called when the last one stops). The watch calls
    :meth:`publish` with the whole registry, ``{service: instances}``: every attached service
    gets its set, and a service that is absent gets an empty one; :meth:`fail` reports an
    error to all of them. A new instancer gets the latest registry at once.
    """

    def __init__(
        self, start: Callable[[Fanout], Callable[[], object] | None], *, name: str
    ) -> None:
        self.name = name
        self._start = start
        self._lock = threading.Lock()
        self._attached: dict[str, set[PushContext]] = {}
        self._latest: Mapping[str, Iterable[Instance]] | None = None
        self._unwatch: Callable[[], object] | None = None

    def instancer(self, service: str, *, backoff: Backoff | None = None) -> PushInstancer:
        """An instancer of ``service`` fed by the registry-wide watch."""
        return PushInstancer(
            lambda ctx: self._attach(service, ctx), name=f"{self.name}:{service}", backoff=backoff
        )

    @property
    def services(self) -> frozenset[str]:
        """The services that have instancers now."""
        with self._lock:
            return frozenset(self._attached)

    def publish(self, registry: Mapping[str, Iterable[Instance]]) -> None:
        """The whole registry now: each attached service gets its instances."""
        frozen = {service: tuple(instances) for service, instances in registry.items()}
        with self._lock:
            self._latest = frozen
            targets = [(s, tuple(contexts)) for s, contexts in self._attached.items()]
        for service, contexts in targets:
            for ctx in contexts:
                ctx.publish(frozen.get(service, ()))

    def fail(self, error: BaseException) -> None:
        """An error for every attached service (one error event each, on the transition)."""
        with self._lock:
            contexts = [ctx for group in self._attached.values() for ctx in group]
        for ctx in contexts:
            ctx.fail(error)

    def _attach(self, service: str, ctx: PushContext) -> Callable[[], None]:
        with self._lock:
            first = not self._attached
            self._attached.setdefault(service, set()).add(ctx)
            latest = self._latest
        if first:
            unwatch = self._start(self)
            with self._lock:
                self._unwatch = unwatch
        elif latest is not None:
            ctx.publish(latest.get(service, ()))
        return lambda: self._detach(service, ctx)

    def _detach(self, service: str, ctx: PushContext) -> None:
        with self._lock:
            group = self._attached.get(service)
            if group is not None:
                group.discard(ctx)
                if not group:
                    del self._attached[service]
            if self._attached:
                return
            unwatch, self._unwatch = self._unwatch, None
            self._latest = None
        _call(unwatch, self.name)

    def __repr__(self) -> str:
        return f"<Fanout {self.name} serving {len(self._attached)} services>"
