"""Balancer: the contract a balancer implements (``pick`` or ``turns``), and what every balancer
shares (picking under in-flight accounting, avoid-lists, waiting for an endpoint)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from sd_core._cache import Candidate, EndpointCache, _Entry, kept_share
from sd_core._clock import Clock, _Current, clock
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
# endpoint()'s lane when there is none: a step that yields nothing, and a cell always empty.
_NO_LANE: tuple[Iterator[Any], list[bool]] = (itertools.repeat(None), [])


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

    needs_key: bool = False
    """True when every pick needs a key (``endpoint(key)``, ``choose(key=...)``)."""

    latency_decay: float | None = None
    """Seconds, or None (the default): with a number, every ``choose()`` / ``achoose()`` block
    of this balancer is timed on the core's clock and folded into its candidate's peak-EWMA
    ``service_time`` with this decay time. Timing costs two readings of the clock per block: only
    the balancers that read ``service_time`` ask for it."""

    # Whether the class overrides observe(): read as each choose() block ends.
    _sd_observes: ClassVar[bool] = False
    # The choose() block of the class when it neither learns nor waits: one that steps the
    # turns of the set without a call when pick() is the default.
    _sd_choice: ClassVar[type[Choice[Any]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._sd_observes = cls.observe is not Balancer.observe
        cls._sd_choice = _TurnChoice if cls.pick is Balancer.pick else Choice

    def __init__(self, endpointer: Endpointer[E]) -> None:
        # Name-mangled: a subclass is free to use any name of its own (``_cache``, ``_lock``).
        self.__endpointer = endpointer  # for the balancers built on this one (Ejecting)
        self.__cache: EndpointCache[E] = endpointer._cache
        self.__lock = threading.RLock()  # builds per-set state (a build may call state_for)
        self.__state: tuple[Sequence[Candidate[E]], Any] = (_NO_SET, None)
        # (set, cycle over its turns): for the pick() of a balancer implementing turns().
        self.__turns: tuple[Sequence[Candidate[E]], Iterator[_Entry[E]]] = _NO_TURNS
        # When pick() is the default (the balancer has turns): (the cycle of the turns, the
        # cache's live cell of their set), for endpoint() and choose() to step it without a
        # call while that set is served.
        self.__lane: tuple[Iterator[_Entry[E]], list[bool]] = _NO_LANE

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

    def observe(self, candidate: Candidate[E], failed: bool) -> None:
        """Called after each ``choose()`` / ``achoose()`` block of this balancer ended, with
        its candidate (whose statistics already count it) and whether the block raised.

        For a balancer that learns from outcomes (:class:`Ejecting`). It runs in the caller's
        thread as the block exits, concurrently with picks and other calls, without a lock: it
        must be thread-safe and quick, and what it raises propagates from the ``with`` block.
        The base calls it only when a subclass overrides it.
        """

    # -- picking -------------------------------------------------------------------------------
    def endpoint(self, key: object = None) -> E:
        """One endpoint, or :class:`NoEndpointsError` at once; never one already closed."""
        # A balancer that goes round turns() steps its cycle here without a call. The cell is
        # checked after the step: while it is not empty the set of the cycle is the one
        # served, none of its entries has been retired, so none is closed.
        step, live = self.__lane
        entry = next(step)
        if live:
            return entry.endpoint
        return self.__endpoint(key)

    def __endpoint(self, key: object) -> E:
        cache = self.__cache
        # Read as entries() reads the set when no invalidation is due. The cache marks an
        # entry closed before it calls its closer: an entry still open here has not been
        # closed yet. One closed meanwhile came from a replaced set: pick again.
        if cache._deadline is None:
            entries = cache._entries
            if entries:
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
        if self.latency_decay is None and not self._sd_observes:
            if timeout is None and not avoid:
                choice: Choice[E] = _new(self._sd_choice)
                choice._balancer = self
                choice._cache = self.__cache
                choice._key = key
                return choice
            kind: type[_WaitingChoice[E]] = _WaitingChoice
        else:
            kind = _LearningChoice
        wait = 0.0 if timeout is None else _wait_for(timeout)
        return kind(self, self.__cache, key, wait, _Avoided(avoid) if avoid else None)

    def achoose(
        self, key: object = None, timeout: float | None = None, *, avoid: Collection[E] = ()
    ) -> AsyncChoice[E]:
        """Async twin of :meth:`choose`: waits without blocking the event loop."""
        kind = (
            AsyncChoice
            if self.latency_decay is None and not self._sd_observes
            else _AsyncLearningChoice
        )
        if timeout is None and not avoid:
            return kind(self, self.__cache, key)
        wait = 0.0 if timeout is None else _wait_for(timeout)
        return kind(self, self.__cache, key, wait, _Avoided(avoid) if avoid else None)

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
            cache = self.__cache
            live = cache._live  # read before the set: a cell of that set or an older one
            current = cache._entries
            turns = self.__turns
            if current and current is not candidates:
                candidates = current  # never build the turns of a set already replaced
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
            if type(self).pick is Balancer.pick and turns[0] is current:
                # Nobody else to ask: endpoint() and choose() may step the turns while their set
                # is served.
                self.__lane = (turns[1], live)
            return turns


# -- the shared machinery: it calls only the public contract of the balancer -------------------


def _endpointer_of(balancer: Balancer[E]) -> Endpointer[E]:
    """The endpointer ``balancer`` picks from, for a balancer built on it (:class:`Ejecting`)."""
    endpointer: Endpointer[E] = balancer._Balancer__endpointer  # type: ignore[attr-defined]
    return endpointer


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


def _now() -> float:
    """``clock().monotonic()``, without a call into the real clock's Python method."""
    current = _Current.clock
    return _monotonic() if type(current) is Clock else current.monotonic()


def _take(lock: threading.Lock) -> None:
    """Take ``lock``, found taken, without blocking in it while holding nothing else: each try
    gives the GIL away (``sleep(0)``) so that the thread holding it, if it was switched out
    right after taking it, runs on and lets it go. Blocking in ``acquire()`` instead, a thread
    would take the lock when it is freed and then wait for the GIL with it, for up to a switch
    interval, and every other thread would queue behind it: a convoy that costs 5x the
    throughput of 8 threads."""
    while not lock.acquire(False):
        _sleep(0)


def _slow_acquire(choice: Choice[E]) -> _Entry[E]:
    return _acquire(choice._balancer, choice._cache, choice._key, choice._wait, choice._avoided)


def _fast_acquire(choice: Choice[E] | AsyncChoice[E]) -> _Entry[E] | None:
    """The usual way into a block (what ``Choice.__enter__`` does inline): nothing avoided, a
    set served, a candidate not closed. None: take the general path."""
    cache = choice._cache
    if choice._avoided is None and cache._deadline is None:
        entries = cache._entries
        if entries:
            entry: _Entry[E] = choice._balancer.pick(entries, choice._key)  # type: ignore[assignment]
            if type(entry) is _Entry:
                lock = cache._lock
                if not lock.acquire(False):
                    _take(lock)
                if entry.closed:
                    lock.release()
                    return None
                entry.pending += 1
                lock.release()
                return entry
    return None


def _end(cache: EndpointCache[E], entry: _Entry[E], failed: bool) -> None:
    """End a block that is not timed (what ``Choice.__exit__`` does inline): what
    ``cache.release(entry, failed)`` does."""
    lock = cache._lock
    if not lock.acquire(False):
        _take(lock)
    entry.pending -= 1
    if failed:
        entry.failures += 1
        entry.consecutive_failures += 1
    else:
        entry.successes += 1
        entry.consecutive_failures = 0
    retired = entry.retired
    lock.release()
    if retired:
        cache.release_retired(entry)


def _end_learning(
    balancer: Balancer[E],
    cache: EndpointCache[E],
    entry: _Entry[E],
    failed: bool,
    timing: tuple[float, int] | None,
) -> None:
    """End the block of a balancer that learns: count its outcome and its time (``timing``:
    when it began and the requests in flight on it then, itself included; None when it is
    not timed), then tell the balancer."""
    if timing is None:
        _end(cache, entry, failed)
    else:  # nothing that may switch threads under the lock: no call while it is held
        ended = _now()
        started, in_flight = timing
        sample = (ended - started) / (in_flight if in_flight > 1 else 1)
        kept = kept_share(ended - entry.measured_at, balancer.latency_decay or 10.0)
        lock = cache._lock
        if not lock.acquire(False):
            _take(lock)
        entry.pending -= 1
        if failed:
            entry.failures += 1
            entry.consecutive_failures += 1
        else:
            entry.successes += 1
            entry.consecutive_failures = 0
        estimate = entry.service_time
        if sample >= estimate:
            entry.service_time = sample  # a peak replaces the estimate at once
        elif not failed:  # a failure never makes an endpoint look faster
            entry.service_time = estimate * kept + sample * (1.0 - kept)
        entry.measured_at = ended if ended > entry.measured_at else entry.measured_at
        retired = entry.retired
        lock.release()
        if retired:
            cache.release_retired(entry)
    if balancer._sd_observes:
        balancer.observe(entry, failed)


class Choice(Generic[E]):
    """The context manager :meth:`Balancer.choose` returns."""

    # Made without __init__ by choose() (object.__new__ and three stores: this is the hot
    # path); _entry is set by __enter__.
    __slots__ = ("_balancer", "_cache", "_entry", "_key")
    # A plain block neither avoids nor waits; the class of a block that does holds its own.
    _avoided: _Avoided | None = None
    _wait: float | None = 0.0  # 0.0: fail fast, None: wait without limit

    _balancer: Balancer[E]
    _cache: EndpointCache[E]
    _entry: _Entry[E] | None
    _key: object

    def __enter__(self) -> E:
        # _fast_acquire() inline (a plain block avoids nothing), else the general path.
        cache = self._cache
        if cache._deadline is None:
            entries = cache._entries
            if entries:
                entry: _Entry[E] = self._balancer.pick(entries, self._key)  # type: ignore[assignment]
                if type(entry) is _Entry:
                    lock = cache._lock
                    if not lock.acquire(False):
                        _take(lock)
                    if not entry.closed:
                        entry.pending += 1
                        lock.release()
                        self._entry = entry
                        return entry.endpoint
                    lock.release()
        entry = self._entry = _slow_acquire(self)
        return entry.endpoint

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # _end() inline.
        try:
            entry = self._entry
        except AttributeError:
            return  # never entered
        if entry is None:
            return  # ended already
        self._entry = None
        cache = self._cache
        # A with statement: no switch of threads between taking the lock and entering the
        # block (after lock.acquire() returns there is one, and a thread preempted holding
        # the lock stalls all the others).
        lock = cache._lock
        if not lock.acquire(False):
            _take(lock)
        entry.pending -= 1
        if exc_type is None:
            entry.successes += 1
            entry.consecutive_failures = 0
        else:
            entry.failures += 1
            entry.consecutive_failures += 1
        retired = entry.retired
        lock.release()
        if retired:
            cache.release_retired(entry)


class _TurnChoice(Choice[E]):
    """The :class:`Choice` of a balancer that goes round :meth:`Balancer.turns`, neither
    waiting nor avoiding: steps the turns of the set served without calling ``pick()``."""

    __slots__ = ()

    def __enter__(self) -> E:
        lane = self._balancer._Balancer__lane  # type: ignore[attr-defined]
        entry = next(lane[0])
        if lane[1]:  # the set of the turns is served: the step was a pick of it
            lock = self._cache._lock
            if not lock.acquire(False):
                _take(lock)
            if not entry.closed:  # retired and closed since the check
                entry.pending += 1
                lock.release()
                self._entry = entry
                return entry.endpoint  # type: ignore[no-any-return]
            lock.release()
        return Choice.__enter__(self)


class _WaitingChoice(Choice[E]):
    """A :class:`Choice` that may wait for an endpoint or avoid some."""

    __slots__ = ("_avoided", "_wait")

    def __init__(
        self,
        balancer: Balancer[E],
        cache: EndpointCache[E],
        key: object,
        wait: float | None,
        avoided: _Avoided | None,
    ) -> None:
        self._balancer = balancer
        self._cache = cache
        self._key = key
        self._wait = wait
        self._avoided = avoided

    def __enter__(self) -> E:
        entry = _fast_acquire(self)
        if entry is None:
            entry = _slow_acquire(self)
        self._entry = entry
        return entry.endpoint


class _LearningChoice(_WaitingChoice[E]):
    """The :class:`Choice` of a balancer that learns: timed when it asks, then observed."""

    __slots__ = ("_timing",)

    def __enter__(self) -> E:
        # _fast_acquire() inline, else the general path.
        cache = self._cache
        balancer = self._balancer
        entry: _Entry[E] | None = None
        if self._avoided is None and cache._deadline is None:
            entries = cache._entries
            if entries:
                picked: _Entry[E] = balancer.pick(entries, self._key)  # type: ignore[assignment]
                if type(picked) is _Entry:
                    lock = cache._lock
                    if not lock.acquire(False):
                        _take(lock)
                    if not picked.closed:
                        picked.pending += 1
                        entry = picked
                    lock.release()
        if entry is None:
            entry = _slow_acquire(self)
        self._entry = entry
        if balancer.latency_decay is None:
            self._timing = None
        else:  # when it began (_now() inline) and the requests in flight on it then
            current = _Current.clock
            began = _monotonic() if type(current) is Clock else current.monotonic()
            self._timing = (began, entry.pending)
        return entry.endpoint

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            entry = self._entry
        except AttributeError:
            return  # never entered
        if entry is None:
            return  # ended already
        self._entry = None
        _end_learning(self._balancer, self._cache, entry, exc_type is not None, self._timing)


class AsyncChoice(Generic[E]):
    """The async context manager :meth:`Balancer.achoose` returns."""

    __slots__ = ("_avoided", "_balancer", "_cache", "_entry", "_key", "_wait")

    def __init__(
        self,
        balancer: Balancer[E],
        cache: EndpointCache[E],
        key: object,
        wait: float | None = 0.0,
        avoided: _Avoided | None = None,
    ) -> None:
        self._balancer = balancer
        self._cache = cache
        self._key = key
        self._wait = wait  # 0.0: fail fast, None: wait without limit
        self._avoided = avoided
        self._entry: _Entry[E] | None = None

    async def __aenter__(self) -> E:
        entry = _fast_acquire(self)
        if entry is None:
            entry = await _acquire_async(
                self._balancer, self._cache, self._key, self._wait, self._avoided
            )
        self._entry = entry
        return entry.endpoint

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = self._entry
        if entry is not None:
            self._entry = None
            _end(self._cache, entry, exc_type is not None)


class _AsyncLearningChoice(AsyncChoice[E]):
    """The :class:`AsyncChoice` of a balancer that learns: timed when it asks, then observed."""

    __slots__ = ("_timing",)

    async def __aenter__(self) -> E:
        entry = _fast_acquire(self)
        if entry is None:
            entry = await _acquire_async(
                self._balancer, self._cache, self._key, self._wait, self._avoided
            )
        self._entry = entry
        self._timing = None if self._balancer.latency_decay is None else (_now(), entry.pending)
        return entry.endpoint

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = self._entry
        if entry is not None:
            self._entry = None
            _end_learning(self._balancer, self._cache, entry, exc_type is not None, self._timing)


_new = object.__new__
_monotonic = time.monotonic
_sleep = time.sleep
Balancer._sd_choice = _TurnChoice  # Balancer's own pick() goes round turns()
