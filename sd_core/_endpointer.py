"""Endpointer and FixedEndpointer: the endpoints of a service, kept current."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, overload

from ._cache import EndpointCache
from ._closing import Closing
from ._contracts import Closer, Instancer
from ._event import Event
from ._instance import Instance

__all__ = ["Endpointer", "FixedEndpointer"]

E = TypeVar("E")


class Endpointer(Closing, Generic[E]):
    """Subscribes an :class:`EndpointCache` to an instancer.

    ``endpoints()`` returns the current endpoints. On an error event it keeps serving the
    last good set; with ``invalidate_on_error=seconds`` it closes them all once that long
    passed without recovery and ``endpoints()`` then raises the error. Without a factory,
    each endpoint is the :class:`Instance` itself. ``close()`` (or leaving the ``with``
    block) unsubscribes and closes every endpoint; the instancer is not stopped.
    """

    @overload
    def __init__(
        self: Endpointer[Instance],
        instancer: Instancer,
        factory: None = None,
        *,
        invalidate_on_error: float | None = None,
        drain_timeout: float = 5.0,
    ) -> None: ...

    @overload
    def __init__(
        self,
        instancer: Instancer,
        factory: Callable[[Instance], E | tuple[E, Closer]],
        *,
        invalidate_on_error: float | None = None,
        drain_timeout: float = 5.0,
    ) -> None: ...

    def __init__(
        self,
        instancer: Instancer,
        factory: Callable[[Instance], Any] | None = None,
        *,
        invalidate_on_error: float | None = None,
        drain_timeout: float = 5.0,
    ) -> None:
        self._cache: EndpointCache[E] = EndpointCache(
            factory,
            drain_timeout=drain_timeout,
            invalidate_on_error=invalidate_on_error,
        )
        self._instancer = instancer
        self._closed = False
        instancer.register(self._on_event)

    def _on_event(self, event: Event) -> None:
        self._cache.update(event)

    def endpoints(self) -> list[E]:
        """The current endpoints (raises the discovery error once invalidated)."""
        return self._cache.endpoints()

    def close(self) -> None:
        """Unsubscribe and close every endpoint, draining in-flight requests (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._instancer.deregister(self._on_event)
        self._cache.close()

    stop = close

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self._cache._entries)} endpoints>"


class FixedEndpointer(Endpointer[E]):
    """A constant list of endpoints, for tests and static configuration."""

    def __init__(self, endpoints: Sequence[E]) -> None:
        self._cache = EndpointCache()
        self._cache.set_fixed(endpoints)
        self._closed = False

    def close(self) -> None:
        """Nothing to release: a fixed endpointer owns no endpoint."""
        self._closed = True

    stop = close
