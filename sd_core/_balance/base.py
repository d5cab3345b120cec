"""Balancer: what every balancer shares (picking under in-flight accounting, waiting)."""

from __future__ import annotations

import time
from collections.abc import Collection
from types import TracebackType
from typing import Generic, TypeVar

from sd_core._cache import EndpointCache, _Entry
from sd_core._endpointer import Endpointer

__all__ = ["Balancer"]

E = TypeVar("E")

# A pick can race with the removal of the endpoint it picked; this bounds the re-picks.
_MAX_REPICKS = 64
_NOTHING: set[int] = set()


class Balancer(Generic[E]):
    """Picks an endpoint of an :class:`Endpointer` for each request.

    ``endpoint()`` returns one at once or raises :class:`NoEndpointsError`.
    ``choose(key=None, timeout=None)`` is a context manager that yields an endpoint, counts
    it as in flight until the block exits and records a failure when the block raised; with
    a ``timeout`` it waits up to that many seconds for an endpoint to appear instead of
    failing at once. ``achoose`` is its async twin. Subclasses implement ``_pick``.
    """

    def __init__(self, endpointer: Endpointer[E]) -> None:
        self._cache: EndpointCache[E] = endpointer._cache

    def _pick(self, entries: tuple[_Entry[E], ...], key: object) -> _Entry[E]:
        """Pick one of ``entries`` (never empty)."""
        raise NotImplementedError

    def endpoint(self, key: object = None) -> E:
        """One endpoint, or :class:`NoEndpointsError` at once."""
        entries = self._cache.entries()
        if not entries:
            raise self._cache.no_endpoints()
        return self._pick(entries, key).endpoint

    def choose(
        self, key: object = None, timeout: float | None = None, *, avoid: Collection[E] = ()
    ) -> Choice[E]:
        """A context manager yielding an endpoint counted as in flight until the block ends.

        Endpoints in ``avoid`` (compared by identity) are not picked while another is available:
        a retry passes those that already failed.
        """
        return Choice(self, key, timeout, avoid)

    def achoose(
        self, key: object = None, timeout: float | None = None, *, avoid: Collection[E] = ()
    ) -> AsyncChoice[E]:
        """Async twin of :meth:`choose`: waits without blocking the event loop."""
        return AsyncChoice(self, key, timeout, avoid)

    def _pick_avoiding(
        self, entries: tuple[_Entry[E], ...], key: object, avoid: set[int], first: _Entry[E]
    ) -> _Entry[E]:
        for _ in range(min(len(entries), _MAX_REPICKS)):
            entry = self._pick(entries, key)
            if id(entry.endpoint) not in avoid:
                return entry
        for entry in entries:
            if id(entry.endpoint) not in avoid:
                return entry
        return first

    def _try_acquire(self, key: object, avoid: set[int]) -> _Entry[E] | None:
        cache = self._cache
        for _ in range(_MAX_REPICKS):
            entries = cache.entries()
            if not entries:
                return None
            entry = self._pick(entries, key)
            if avoid and id(entry.endpoint) in avoid:
                entry = self._pick_avoiding(entries, key, avoid, entry)
            if cache.acquire(entry):
                return entry
        return None

    def _acquire(self, key: object, timeout: float | None, avoid: set[int]) -> _Entry[E]:
        entry = self._try_acquire(key, avoid)
        if entry is not None:
            return entry
        if not timeout or timeout <= 0:
            raise self._cache.no_endpoints()
        notifier = self._cache.notifier
        deadline = time.monotonic() + timeout
        while True:
            seen = notifier.version
            entry = self._try_acquire(key, avoid)
            if entry is not None:
                return entry
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not notifier.wait(seen, remaining):
                raise self._cache.no_endpoints()

    async def _acquire_async(
        self, key: object, timeout: float | None, avoid: set[int]
    ) -> _Entry[E]:
        entry = self._try_acquire(key, avoid)
        if entry is not None:
            return entry
        if not timeout or timeout <= 0:
            raise self._cache.no_endpoints()
        notifier = self._cache.notifier
        deadline = time.monotonic() + timeout
        while True:
            seen = notifier.version
            entry = self._try_acquire(key, avoid)
            if entry is not None:
                return entry
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await notifier.wait_async(seen, remaining):
                raise self._cache.no_endpoints()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {len(self._cache._entries)} endpoints>"


class Choice(Generic[E]):
    """The context manager :meth:`Balancer.choose` returns."""

    __slots__ = ("_avoid", "_balancer", "_entry", "_key", "_timeout")

    def __init__(
        self, balancer: Balancer[E], key: object, timeout: float | None, avoid: Collection[E]
    ) -> None:
        self._balancer = balancer
        self._key = key
        self._timeout = timeout
        self._avoid = {id(endpoint) for endpoint in avoid} if avoid else _NOTHING
        self._entry: _Entry[E] | None = None

    def __enter__(self) -> E:
        entry = self._entry = self._balancer._acquire(self._key, self._timeout, self._avoid)
        return entry.endpoint

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            self._balancer._cache.release(entry, exc_type is not None)


class AsyncChoice(Generic[E]):
    """The async context manager :meth:`Balancer.achoose` returns."""

    __slots__ = ("_avoid", "_balancer", "_entry", "_key", "_timeout")

    def __init__(
        self, balancer: Balancer[E], key: object, timeout: float | None, avoid: Collection[E]
    ) -> None:
        self._balancer = balancer
        self._key = key
        self._timeout = timeout
        self._avoid = {id(endpoint) for endpoint in avoid} if avoid else _NOTHING
        self._entry: _Entry[E] | None = None

    async def __aenter__(self) -> E:
        entry = self._entry = await self._balancer._acquire_async(
            self._key, self._timeout, self._avoid
        )
        return entry.endpoint

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            self._balancer._cache.release(entry, exc_type is not None)
