"""Balancer: the contract a balancer implements (``pick`` or ``turns``), and what every balancer
shares (picking under in-flight accounting, avoid-lists, waiting for an endpoint)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from sd_core._cache import Candidate, EndpointCache, _Entry
from sd_core._clock import clock
from sd_core._endpointer import Endpointer
from sd_core._timeouts import check_timeout

__all__ = ["Balancer"]

E = TypeVar("E")
S = TypeVar("S")

# A pick can race with the removal of the endpoint it picked; this bounds the re-picks.
_MAX_REPICKS = 64
# Per-set memos start out as a set that the cache never publishes.
_NO_SET: Sequence[Any] = (object(),)
_NO_TURNS: tuple[Sequence[Any], Iterator[Any]] = (_NO_SET, iter(()))


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
    its outcome; with a ``timeout`` it waits up to that many seconds for an endpoint to appear
    instead of failing at once (``math.inf``: without limit). ``achoose`` is its async twin.

    A balancer implements :meth:`pick` (choose one of the current :class:`Candidate` objects)
    or :meth:`turns` (the order in which a set's candidates take turns). It may override
    :meth:`pick_avoiding`, and keep state per set of endpoints with :meth:`state_for`.
    Everything else (no endpoints, endpoints closed meanwhile, avoid-lists, waiting, in-flight
    accounting, statistics) is done here, the same for every balancer.

    ``needs_key`` is True for balancers that cannot pick without a key (:class:`ConsistentHash`).
    """

    needs_key: ClassVar[bool] = False
    """True when every pick needs a key (``endpoint(key)``, ``choose(key=...)``)."""

    def __init__(self, endpointer: Endpointer[E]) -> None:
        # Name-mangled: a subclass is free to use any name of its own (``_cache``, ``_lock``).
        self.__cache: EndpointCache[E] = endpointer._cache
        self.__lock = threading.RLock()  # builds per-set state (a build may call state_for)
        self.__state: tuple[Sequence[Candidate[E]], Any] = (_NO_SET, None)
        # (set, cycle over its turns): for the pick() of a balancer implementing turns(), and
        # as __lane, for endpoint() to step without a call when pick() is that one.
        self.__turns: tuple[Sequence[Candidate[E]], Iterator[_Entry[E]]] = _NO_TURNS
        self.__lane: tuple[Sequence[Candidate[E]], Iterator[_Entry[E]]] = _NO_TURNS

    # -- the contract ------------------------------------------------------------------------
    def pick(self, candidates: Sequence[Candidate[E]], key: object) -> Candidate[E]:
        """Choose one of ``candidates`` for a request with ``key``.

        ``candidates`` is never empty. It is the set the cache published, in a stable order: a
        tuple replaced whole when the set (or an instance's data) changes and the same object
        while nothing changed, so per-set state may be keyed on its identity (see
        :meth:`state_for`). It may be a set replaced a moment ago: a candidate closed meanwhile
        is discarded and ``pick`` called again with the current set.

        ``pick`` runs in the caller's thread, concurrently with other picks, without a lock: it
        must be thread-safe, must not block, and must return one of ``candidates`` (or of a
        newer set). What it raises (``ValueError`` for a missing key) propagates to the caller
        of ``endpoint()`` / ``choose()``, and ``retry()`` treats it as a misuse.

        This default goes round :meth:`turns`; a balancer overrides one or the other.
        """
        turns = self.__turns
        if turns[0] is not candidates:
            turns = self.__turns_for(candidates)
        return next(turns[1])

    def turns(self, candidates: Sequence[Candidate[E]]) -> Iterable[Candidate[E]]:
        """The order in which the candidates of a set take turns, for a balancer that goes
        round a list instead of implementing :meth:`pick`.

        One round, as candidates of ``candidates``: each may appear several times (a weight)
        or not at all (never picked while this set lasts), and the round must not be empty.
        It is computed once per set (never for a set already replaced) and picks then go round
        it endlessly from every thread, ``endpoint()`` stepping it without calling the balancer.
        """
        raise NotImplementedError(
            f"{type(self).__name__} implements neither pick(candidates, key) nor turns(candidates)"
        )

    def pick_avoiding(
        self,
        candidates: Sequence[Candidate[E]],
        key: object,
        avoided: Container[Candidate[E]],
    ) -> Candidate[E]:
        """Choose a candidate not in ``avoided`` while there is one; called instead of
        :meth:`pick` when ``choose(avoid=...)`` names endpoints (``retry()`` passes those that
        already failed). The same rules as :meth:`pick`.

        This default picks again (up to ``len(candidates)`` times, at most 64) until the pick
        is not avoided, then takes the first candidate not avoided. A balancer whose pick is
        determined by the key (:class:`ConsistentHash`) overrides it.
        """
        first = self.pick(candidates, key)
        if first not in avoided:
            return first
        for _ in range(min(len(candidates), _MAX_REPICKS) - 1):
            chosen = self.pick(candidates, key)
            if chosen not in avoided:
                return chosen
        for candidate in candidates:
            if candidate not in avoided:
                return candidate
        return first

    def state_for(
        self,
        candidates: Sequence[Candidate[E]],
        build: Callable[[Sequence[Candidate[E]]], S],
    ) -> tuple[Sequence[Candidate[E]], S]:
        """Per-set state (a schedule, a hash ring): ``(current, build(current))``, built once
        per set and shared by the picks of that set.

        ``current`` is ``candidates``, or the set that replaced it when ``candidates`` is a
        snapshot taken before an update: the state is never rebuilt for a set already gone.
        Pick from the returned set, which the state was built for. ``build`` runs under a lock,
        once per set; a balancer keeps one such state (pass the same ``build`` every time).
        """
        state = self.__state
        if state[0] is candidates:
            return state
        with self.__lock:
            state = self.__state
            candidates = self.__newest(candidates)
            if state[0] is not candidates:
                state = self.__state = (candidates, build(candidates))
            return state

    # -- picking -------------------------------------------------------------------------------
    def endpoint(self, key: object = None) -> E:
        """One endpoint, or :class:`NoEndpointsError` at once; never one already closed."""
        cache = self.__cache
        entries = cache._entries
        # The fast path reads the set as entries() does when no invalidation is due. The cache
        # marks an entry closed before it calls its closer: an entry still open here has not
        # been closed yet. One closed meanwhile came from a replaced set: pick again.
        if cache._deadline is None:
            lane = self.__lane
            if entries is lane[0]:
                entry = next(lane[1])
                if not entry.closed:
                    return entry.endpoint
            elif entries:
                picked: Any = self.pick(entries, key)
                try:
                    if not picked.closed:
                        return picked.endpoint  # type: ignore[no-any-return]
                except AttributeError:
                    pass  # not a candidate: _endpoint_again() says so
        return _endpoint_again(self, cache, key)

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
        return Choice(self, self.__cache, key, _wait_for(timeout), avoid)

    def achoose(
        self, key: object = None, timeout: float | None = None, *, avoid: Collection[E] = ()
    ) -> AsyncChoice[E]:
        """Async twin of :meth:`choose`: waits without blocking the event loop."""
        return AsyncChoice(self, self.__cache, key, _wait_for(timeout), avoid)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {len(self.__cache._entries)} endpoints>"

    # -- per-set state ---------------------------------------------------------------------------
    def __newest(self, candidates: Sequence[Candidate[E]]) -> Sequence[Candidate[E]]:
        """The cache's current set when ``candidates`` was replaced since (and the current set
        is not empty), else ``candidates``: per-set state is built for the current set only."""
        current = self.__cache._entries
        return current if current and current is not candidates else candidates

    def __turns_for(
        self, candidates: Sequence[Candidate[E]]
    ) -> tuple[Sequence[Candidate[E]], Iterator[_Entry[E]]]:
        with self.__lock:
            turns = self.__turns
            candidates = self.__newest(candidates)
            if turns[0] is not candidates:
                name = type(self).__name__
                round_: list[_Entry[E]] = []
                for candidate in self.turns(candidates):
                    if not isinstance(candidate, _Entry):
                        raise TypeError(f"{name}.turns() returned {candidate!r}, not a candidate")
                    round_.append(candidate)
                if not round_:
                    raise ValueError(f"{name}.turns() returned no candidates")
                # next() on an itertools.cycle is atomic under the GIL and returns existing
                # objects: a pick takes no lock and allocates nothing.
                turns = self.__turns = (candidates, itertools.cycle(round_))
                if type(self).pick is Balancer.pick:  # nobody else to ask: endpoint() may step
                    self.__lane = turns
            return turns


# -- the shared machinery: it calls only the public contract of the balancer -------------------


class _Avoided(Container[Candidate[Any]]):
    """The ``avoided`` that :meth:`Balancer.pick_avoiding` receives: the candidates whose
    endpoint is one of ``choose(avoid=...)``, compared by identity."""

    __slots__ = ("_ids",)

    def __init__(self, endpoints: Collection[object]) -> None:
        self._ids = {id(endpoint) for endpoint in endpoints}

    def __contains__(self, candidate: object) -> bool:
        return isinstance(candidate, _Entry) and id(candidate.endpoint) in self._ids

    def __repr__(self) -> str:
        return f"<avoided: {len(self._ids)} endpoints>"


def _not_a_candidate(balancer: Balancer[Any], picked: object, method: str = "pick") -> TypeError:
    return TypeError(
        f"{type(balancer).__name__}.{method}() must return one of the candidates it was given, "
        f"got {picked!r}"
    )


def _endpoint_again(balancer: Balancer[E], cache: EndpointCache[E], key: object) -> E:
    """Pick again from the current set after a pick raced with its replacement."""
    for _ in range(_MAX_REPICKS):
        entries = cache.entries()
        if not entries:
            break
        entry = balancer.pick(entries, key)
        if not isinstance(entry, _Entry):
            raise _not_a_candidate(balancer, entry)
        if not entry.closed:
            return entry.endpoint  # type: ignore[no-any-return]
    raise cache.no_endpoints()


def _try_acquire(
    balancer: Balancer[E], cache: EndpointCache[E], key: object, avoided: _Avoided | None
) -> _Entry[E] | None:
    for _ in range(_MAX_REPICKS):
        entries = cache.entries()
        if not entries:
            return None
        if avoided is None:
            entry = balancer.pick(entries, key)
            if not isinstance(entry, _Entry):
                raise _not_a_candidate(balancer, entry)
        else:
            entry = balancer.pick_avoiding(entries, key, avoided)
            if not isinstance(entry, _Entry):
                raise _not_a_candidate(balancer, entry, "pick_avoiding")
        if cache.acquire(entry):
            return entry
    return None


def _acquire(
    balancer: Balancer[E],
    cache: EndpointCache[E],
    key: object,
    wait: float | None,
    avoided: _Avoided | None,
) -> _Entry[E]:
    """Acquire an entry, waiting ``wait`` seconds for one (0.0: not at all, None: forever)."""
    entry = _try_acquire(balancer, cache, key, avoided)
    if entry is not None:
        return entry
    if wait is not None and wait <= 0:
        raise cache.no_endpoints()
    notifier = cache.notifier
    deadline = None if wait is None else clock().monotonic() + wait
    while True:
        seen = notifier.version
        entry = _try_acquire(balancer, cache, key, avoided)
        if entry is not None:
            return entry
        remaining = None if deadline is None else deadline - clock().monotonic()
        if remaining is not None and remaining <= 0:
            raise cache.no_endpoints()
        if not notifier.wait(seen, remaining):
            raise cache.no_endpoints()


async def _acquire_async(
    balancer: Balancer[E],
    cache: EndpointCache[E],
    key: object,
    wait: float | None,
    avoided: _Avoided | None,
) -> _Entry[E]:
    """Async twin of :func:`_acquire`."""
    entry = _try_acquire(balancer, cache, key, avoided)
    if entry is not None:
        return entry
    if wait is not None and wait <= 0:
        raise cache.no_endpoints()
    notifier = cache.notifier
    deadline = None if wait is None else clock().monotonic() + wait
    while True:
        seen = notifier.version
        entry = _try_acquire(balancer, cache, key, avoided)
        if entry is not None:
            return entry
        remaining = None if deadline is None else deadline - clock().monotonic()
        if remaining is not None and remaining <= 0:
            raise cache.no_endpoints()
        if not await notifier.wait_async(seen, remaining):
            raise cache.no_endpoints()


class Choice(Generic[E]):
    """The context manager :meth:`Balancer.choose` returns."""

    __slots__ = ("_avoided", "_balancer", "_cache", "_entry", "_key", "_wait")

    def __init__(
        self,
        balancer: Balancer[E],
        cache: EndpointCache[E],
        key: object,
        wait: float | None,
        avoid: Collection[E],
    ) -> None:
        self._balancer = balancer
        self._cache = cache
        self._key = key
        self._wait = wait  # 0.0: fail fast, None: wait without limit
        self._avoided = _Avoided(avoid) if avoid else None
        self._entry: _Entry[E] | None = None

    def __enter__(self) -> E:
        entry = self._entry = _acquire(
            self._balancer, self._cache, self._key, self._wait, self._avoided
        )
        return entry.endpoint

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            self._cache.release(entry, exc_type is not None)


class AsyncChoice(Generic[E]):
    """The async context manager :meth:`Balancer.achoose` returns."""

    __slots__ = ("_avoided", "_balancer", "_cache", "_entry", "_key", "_wait")

    def __init__(
        self,
        balancer: Balancer[E],
        cache: EndpointCache[E],
        key: object,
        wait: float | None,
        avoid: Collection[E],
    ) -> None:
        self._balancer = balancer
        self._cache = cache
        self._key = key
        self._wait = wait  # 0.0: fail fast, None: wait without limit
        self._avoided = _Avoided(avoid) if avoid else None
        self._entry: _Entry[E] | None = None

    async def __aenter__(self) -> E:
        entry = self._entry = await _acquire_async(
            self._balancer, self._cache, self._key, self._wait, self._avoided
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
            self._cache.release(entry, exc_type is not None)
