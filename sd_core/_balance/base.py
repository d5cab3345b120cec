"""Balancer: what every balancer shares (picking under in-flight accounting, waiting)."""

from __future__ import annotations

import time
from collections.abc import Collection
from types import TracebackType
from typing import ClassVar, Generic, TypeVar

from sd_core._cache import EndpointCache, _Entry
from sd_core._endpointer import Endpointer
from sd_core._timeouts import check_timeout

__all__ = ["Balancer"]

E = TypeVar("E")

# A pick can race with the removal of the endpoint it picked; this bounds the re-picks.
_MAX_REPICKS = 64
_NOTHING: set[int] = set()


def _wait_for(timeout: object) -> float | None:
    """How long ``choose(timeout=...)`` waits: 0.0 not at all (``None``, zero or a negative
    number: fail fast), None without limit (``math.inf``), else that many seconds."""
    if timeout is None:
        return 0.0
    try:
        seconds = check_timeout("timeout", timeout)
    except ValueError:
        # check_timeout's message reads None as "no limit"; here None means "do not wait".
        raise ValueError(
            "timeout must be a number of seconds (math.inf waits without limit) "
            f"or None (do not wait), got {timeout!r}"
        ) from None
    return None if seconds is None else max(seconds, 0.0)


class Balancer(Generic[E]):
    """Picks an endpoint of an :class:`Endpointer` for each request.

    ``endpoint()`` returns one at once or raises :class:`NoEndpointsError`; it never returns
    an endpoint that was already closed. ``choose(key=None, timeout=None)`` is a context
    manager that yields an endpoint, counts it as in flight until the block exits and records
    a failure when the block raised; with a ``timeout`` it waits up to that many seconds for
    an endpoint to appear instead of failing at once (``math.inf``: without limit).
    ``achoose`` is its async twin. Subclasses implement ``_pick``.

    ``needs_key`` is True for balancers that cannot pick without a key (:class:`ConsistentHash`).
    """

    needs_key: ClassVar[bool] = False
    """True when every pick needs a key (``endpoint(key)``, ``choose(key=...)``)."""

    def __init__(self, endpointer: Endpointer[E]) -> None:
        self._cache: EndpointCache[E] = endpointer._cache

    def _pick(self, entries: tuple[_Entry[E], ...], key: object) -> _Entry[E]:
        """Pick one of ``entries`` (never empty)."""
        raise NotImplementedError

    def endpoint(self, key: object = None) -> E:
        """One endpoint, or :class:`NoEndpointsError` at once; never one already closed."""
        entries = self._cache.entries()
        if entries:
            entry = self._pick(entries, key)
            # The cache marks an entry closed before it calls its closer: an entry still open
            # here has not been closed yet. One closed meanwhile came from a replaced set.
            if not entry.closed:
                return entry.endpoint
        return self._endpoint_again(key)

    def _endpoint_again(self, key: object) -> E:
        """Pick again from the current set after a pick raced with its replacement."""
        cache = self._cache
        for _ in range(_MAX_REPICKS):
            entries = cache.entries()
            if not entries:
                break
            entry = self._pick(entries, key)
            if not entry.closed:
                return entry.endpoint
        raise cache.no_endpoints()

    def _latest(self, entries: tuple[_Entry[E], ...]) -> tuple[_Entry[E], ...]:
        """The cache's current entries when ``entries`` is a snapshot replaced since it was
        taken (and the current set is not empty), else ``entries``: per-set state (a cycle, a
        heap, a ring) is built for the current set, never rebuilt for an old one."""
        current = self._cache._entries
        return current if current and current is not entries else entries

    def choose(
        self, key: object = None, timeout: float | None = None, *, avoid: Collection[E] = ()
    ) -> Choice[E]:
        """A context manager yielding an endpoint counted as in flight until the block ends.

        ``timeout``: ``None`` (the default), zero or less fails at once with
        :class:`NoEndpointsError` when there is no endpoint; a number of seconds waits that long
        for one to appear; ``math.inf`` waits without limit. NaN raises ``ValueError``.
        Endpoints in ``avoid`` (compared by identity) are not picked while another is available:
        a retry passes those that already failed.
        """
        return Choice(self, key, _wait_for(timeout), avoid)

    def achoose(
        self, key: object = None, timeout: float | None = None, *, avoid: Collection[E] = ()
    ) -> AsyncChoice[E]:
        """Async twin of :meth:`choose`: waits without blocking the event loop."""
        return AsyncChoice(self, key, _wait_for(timeout), avoid)

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

    def _acquire(self, key: object, wait: float | None, avoid: set[int]) -> _Entry[E]:
        """Acquire an entry, waiting ``wait`` seconds for one (0.0: not at all, None: forever)."""
        entry = self._try_acquire(key, avoid)
        if entry is not None:
            return entry
        if wait is not None and wait <= 0:
            raise self._cache.no_endpoints()
        notifier = self._cache.notifier
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            seen = notifier.version
            entry = self._try_acquire(key, avoid)
            if entry is not None:
                return entry
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise self._cache.no_endpoints()
            if not notifier.wait(seen, remaining):
                raise self._cache.no_endpoints()

    async def _acquire_async(self, key: object, wait: float | None, avoid: set[int]) -> _Entry[E]:
        """Async twin of :meth:`_acquire`."""
        entry = self._try_acquire(key, avoid)
        if entry is not None:
            return entry
        if wait is not None and wait <= 0:
            raise self._cache.no_endpoints()
        notifier = self._cache.notifier
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            seen = notifier.version
            entry = self._try_acquire(key, avoid)
            if entry is not None:
                return entry
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise self._cache.no_endpoints()
            if not await notifier.wait_async(seen, remaining):
                raise self._cache.no_endpoints()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {len(self._cache._entries)} endpoints>"


class Choice(Generic[E]):
    """The context manager :meth:`Balancer.choose` returns."""

    __slots__ = ("_avoid", "_balancer", "_entry", "_key", "_timeout")

    def __init__(
        self, balancer: Balancer[E], key: object, wait: float | None, avoid: Collection[E]
    ) -> None:
        self._balancer = balancer
        self._key = key
        self._timeout = wait  # 0.0: fail fast, None: wait without limit
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
        self, balancer: Balancer[E], key: object, wait: float | None, avoid: Collection[E]
    ) -> None:
        self._balancer = balancer
        self._key = key
        self._timeout = wait  # 0.0: fail fast, None: wait without limit
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
