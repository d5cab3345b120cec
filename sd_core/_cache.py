"""EndpointCache: turns successive events into endpoints, reusing, draining and closing them."""

from __future__ import annotations

import functools
import math
import operator
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from ._clock import clock
from ._dispatch import dispatcher
from ._errors import NoEndpointsError
from ._event import Event
from ._instance import Instance
from ._notifier import Notifier
from ._secrets import logger
from ._timeouts import check_timeout

__all__ = ["Candidate", "EndpointCache"]

log = logger("sd_core.endpoints")

CLOSE_GRACE = 5.0
"""How long ``close()`` waits for closers still running after the drain timeout."""

# A faster sample keeps at most this share of service_time, however soon it follows the last:
# at high rates a peak fades over some 35 samples rather than over the decay time, so that a
# pause of the caller's process, which delays every request in flight at once, does not hide
# for seconds which endpoint is really slower.
_MOST_KEPT = 0.98

E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)


class Candidate(Protocol[E_co]):
    """What a balancer sees of one endpoint it may pick: a read-only view.

    The objects a balancer's ``pick()`` receives are the cache's own records, not copies:
    the same object stands for an endpoint for as long as its instance stays (so it may key a
    dict, compared and hashed by identity), and nothing is allocated per pick. Their counters
    are updated by the cache under its lock and read without one: a value may be a moment
    old. A balancer reads them and never assigns them.
    """

    @property
    def endpoint(self) -> E_co:
        """The endpoint the factory made (or the :class:`Instance` itself without a factory)."""

    @property
    def instance(self) -> Instance | None:
        """Its instance, with the latest data discovery gave for it (tags, meta, weight,
        zone may change while the endpoint stays); None for a :class:`FixedEndpointer`."""

    @property
    def pending(self) -> int:
        """Requests in flight: ``choose()`` / ``achoose()`` blocks on it not yet exited, of
        every balancer over the same endpointer."""

    @property
    def failures(self) -> int:
        """``choose()`` / ``achoose()`` blocks on it that raised, since it was created."""

    @property
    def successes(self) -> int:
        """``choose()`` / ``achoose()`` blocks on it that ended without raising."""

    @property
    def consecutive_failures(self) -> int:
        """``choose()`` / ``achoose()`` blocks on it that raised since the last that did not."""

    @property
    def service_time(self) -> float:
        """Seconds per request: a peak-EWMA of the duration of its timed ``choose()`` /
        ``achoose()`` blocks (those of balancers that set ``latency_decay``), each divided by
        the requests in flight on it when the block began (itself included), so that
        ``service_time * (pending + 1)`` estimates how long one more request would take;
        0.0 before the first. A slower sample replaces it at once (the peak); a faster one
        pulls it down by the share ``1 - exp(-dt / latency_decay)``, ``dt`` being the time
        since the previous sample, and by 2 % at least. A block that raised never lowers it."""

    @property
    def measured_at(self) -> float:
        """When the last timed block on it ended, on the core's clock (``clock().monotonic()``);
        0.0 before the first."""


class _Entry(Generic[E]):
    """One live endpoint with its in-flight count and statistics; shared by the cache and the
    balancers, which see it as a :class:`Candidate` (keep the two in step).

    Every ``choose()`` completion goes through :meth:`EndpointCache.release`: the one place
    that updates the statistics (add new ones there, under the cache's lock).
    """

    __slots__ = (
        "closed",
        "closer",
        "consecutive_failures",
        "endpoint",
        "failures",
        "instance",
        "measured_at",
        "pending",
        "retired",
        "service_time",
        "successes",
    )

    def __init__(self, instance: Instance | None, endpoint: E, closer: Any) -> None:
        self.instance = instance
        self.endpoint = endpoint
        self.closer = closer
        self.pending = 0
        self.failures = 0
        self.successes = 0
        self.consecutive_failures = 0
        self.service_time = 0.0
        self.measured_at = 0.0
        self.retired = False
        self.closed = False

    def __repr__(self) -> str:
        subject = self.endpoint if self.instance is None else self.instance
        return (
            f"<Candidate {subject!r} pending={self.pending} failures={self.failures} "
            f"successes={self.successes}{' closed' if self.closed else ''}>"
        )


def count_outcome(entry: _Entry[Any], failed: bool) -> None:
    """Count the outcome of a block on ``entry`` (hold the cache's lock)."""
    if failed:
        entry.failures += 1
        entry.consecutive_failures += 1
    else:
        entry.successes += 1
        entry.consecutive_failures = 0


def fold_sample(
    entry: _Entry[Any], failed: bool, began: tuple[float, int], ended: float, decay: float
) -> None:
    """Fold a timed block into ``entry.service_time`` (hold the cache's lock): see
    :attr:`Candidate.service_time`. ``began``: when it began, and the requests in flight on
    ``entry`` then (itself included). (``choose()`` does the same inline, with
    :func:`kept_share` worked out before it takes the lock.)"""
    started, in_flight = began
    sample = (ended - started) / (in_flight if in_flight > 1 else 1)
    kept = kept_share(ended - entry.measured_at, decay)
    estimate = entry.service_time
    if sample >= estimate:
        entry.service_time = sample  # a peak replaces the estimate at once
    elif not failed:  # a failure never makes an endpoint look faster
        entry.service_time = estimate * kept + sample * (1.0 - kept)
    entry.measured_at = ended if ended > entry.measured_at else entry.measured_at


def kept_share(since: float, decay: float) -> float:
    """The share of ``service_time`` a faster sample keeps, ``since`` seconds after the last:
    ``exp(-since / decay)``, and at most 98 %."""
    if since <= 0:
        return _MOST_KEPT
    kept = math.exp(-since / decay)
    return kept if kept < _MOST_KEPT else _MOST_KEPT


SetFollower = Callable[
    [tuple[Candidate[E], ...], Sequence[Candidate[E]], Sequence[Candidate[E]]], object
]
"""What :meth:`EndpointCache.follow` calls: ``follower(entries, added, removed)``."""

_endpoint_of = operator.attrgetter("endpoint")


def follow(endpointer: Any, follower: SetFollower[Any]) -> None:
    """:meth:`EndpointCache.follow` on the cache of ``endpointer`` (for balancers, which see
    an :class:`Endpointer` and not its cache)."""
    endpointer._cache.follow(follower)


def _split(result: Any) -> tuple[Any, Any]:
    if (
        isinstance(result, tuple)
        and len(result) == 2
        and callable(getattr(result[1], "close", None))
    ):
        return result[0], result[1]
    closer = result if callable(getattr(result, "close", None)) else None
    return result, closer


class EndpointCache(Generic[E]):
    """Keeps one endpoint per instance across events.

    An instance that stays (same id and address) keeps its endpoint; the factory is called
    only for new instances; the endpoints of instances that left are closed once their
    in-flight requests end, or after ``drain_timeout`` seconds. A factory that raises is
    logged and its instance skipped (and tried again on the next event); so is one that
    returns None. On an error event the last good set is kept; with
    ``invalidate_on_error=seconds`` every endpoint is closed once that long passed without
    recovery, and :meth:`endpoints` raises the error. Each closer is called exactly once, on
    a delivery thread (a slow ``close()`` never holds up an update or a request), at the
    latest during :meth:`close`.

    A closer is the second item of a ``(endpoint, closer)`` pair the factory returns, or the
    endpoint itself when it has a ``close()`` method.
    """

    def __init__(
        self,
        factory: Callable[[Instance], Any] | None = None,
        *,
        drain_timeout: float = 5.0,
        invalidate_on_error: float | None = None,
    ) -> None:
        drain = check_timeout("drain_timeout", drain_timeout)
        if drain is not None and drain < 0:
            raise ValueError(f"drain_timeout must be >= 0 seconds, got {drain_timeout}")
        invalidate = check_timeout("invalidate_on_error", invalidate_on_error)
        if invalidate is not None and invalidate < 0:
            raise ValueError(f"invalidate_on_error must be >= 0 seconds, got {invalidate_on_error}")
        self._factory = factory
        self._drain_timeout = drain
        self._invalidate_after = invalidate
        # _lock guards in-flight counts and closing (taken on every pick); _state_lock orders
        # the changes of the set (update, expiry, close) and is never taken while holding _lock.
        self._lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._by_id: dict[str, _Entry[E]] = {}
        # Readers (the balancers) take these without a lock; update() replaces them whole.
        self._entries: tuple[_Entry[E], ...] = ()
        # Not empty ([True]) while _entries is served as it is (no newer set, no invalidation
        # due): a balancer that keeps something of a set with this cell (read before _entries)
        # may serve from it while the cell is not empty. Replaced with each set; the old cell
        # is emptied before any entry of its set is retired.
        self._live: list[bool] = []
        self._endpoints: tuple[E, ...] = ()
        self._error: BaseException | None = None
        self._deadline: float | None = None
        self._pending_error: BaseException | None = None
        self._closed = False
        self.notifier = Notifier()
        self._draining: dict[_Entry[E], float | None] = {}
        self._drain_cond = threading.Condition(self._lock)
        self._drain_changes = 0
        self._drainer: threading.Thread | None = None
        self._closing = 0
        # Followers of the set (follow()), told each change before it is served; _told is the
        # set they were last told of (an expiry empties the set without telling them).
        self._followers: list[Callable[[], SetFollower[E] | None]] = []
        self._told: tuple[_Entry[E], ...] = ()

    # -- reading -------------------------------------------------------------------------
    def endpoints(self) -> list[E]:
        """The current endpoints; raises the backend's error once invalidated."""
        if self._deadline is not None:
            self._expire_if_due()
        if self._error is not None and not self._entries:
            raise self._error
        return list(self._endpoints)

    def entries(self) -> tuple[_Entry[E], ...]:
        """The current entries for balancers: a tuple replaced whole when the set or an
        instance's data changes, the same object while nothing changed."""
        if self._deadline is not None:
            self._expire_if_due()
        return self._entries

    def no_endpoints(self) -> NoEndpointsError:
        """The error a balancer raises when there is nothing to pick."""
        if self._error is not None:
            err = NoEndpointsError(f"no endpoints: discovery failed: {self._error}")
            err.__cause__ = self._error
            return err
        if self._closed:
            return NoEndpointsError("no endpoints: the endpointer is closed")
        return NoEndpointsError("no endpoints available")

    # -- in-flight accounting ------------------------------------------------------------
    def acquire(self, entry: _Entry[E]) -> bool:
        """Count a request on ``entry``; False when it was closed meanwhile (pick again)."""
        with self._lock:
            if entry.closed:
                return False
            entry.pending += 1
            return True

    def release(
        self,
        entry: _Entry[E],
        failed: bool = False,
        timing: tuple[float, float, int, float] | None = None,
    ) -> None:
        """End a request on ``entry`` and count its outcome (the statistics of an entry are
        kept here); closes the entry if it left and this was its last request.

        ``timing``, for a timed request, is ``(started, ended, in_flight, decay)``: when it
        began and ended on the core's clock, the requests in flight on ``entry`` when it began
        (itself included), and the decay time of ``entry.service_time`` in seconds.

        The ``choose()`` blocks of the balancers do the same inline (the hot path), with the
        same lock: :func:`count_outcome`, :func:`fold_sample` and :meth:`release_retired`.
        """
        with self._lock:
            entry.pending -= 1
            count_outcome(entry, failed)
            if timing is not None:
                started, ended, in_flight, decay = timing
                fold_sample(entry, failed, (started, in_flight), ended, decay)
            retired = entry.retired
        if retired:
            self.release_retired(entry)

    def release_retired(self, entry: _Entry[E]) -> None:
        """Close ``entry``, which left the set, if the request just released was its last."""
        with self._lock:
            if entry.pending > 0 or entry.closed:
                return
            entry.closed = True
            if entry in self._draining:
                del self._draining[entry]
                self._drained()
        self._close_soon([entry])

    # -- updating ------------------------------------------------------------------------
    def update(self, event: Event) -> None:
        """Apply an event from the instancer."""
        with self._state_lock:
            if self._closed:
                return
            if event.error is not None:
                self._failed(event.error)
            else:
                self._apply(event)

    def _apply(self, event: Event) -> None:
        # One pass over the event, as cheap as possible per instance that stays (one dict
        # lookup, an identity test or host and port, one store): 10,000 instances of which one
        # changed take a few milliseconds.
        old = self._by_id
        get = old.get
        by_id: dict[str, _Entry[E]] = {}
        added: list[_Entry[E]] = []
        left: list[_Entry[E]] = []
        check = not event._unique_ids
        previous = None
        for instance in event.instances:
            ident = instance.id
            if check:
                if ident == previous:  # sorted by id: a duplicate follows the first
                    log.warning("two instances share the id %r; keeping the first", ident)
                    continue
                previous = ident
            entry = get(ident)
            if entry is not None:
                known = entry.instance
                if known is instance:
                    by_id[ident] = entry
                    continue
                if (
                    known is not None
                    and known.port == instance.port
                    and known.host == instance.host
                ):
                    entry.instance = instance  # its latest data; the endpoint stays
                    by_id[ident] = entry
                    continue
            created = self._create(instance)
            if created is not None:
                by_id[ident] = created
                added.append(created)
                if entry is not None:
                    left.append(entry)  # the same id at another address: another endpoint
        if len(by_id) - len(added) + len(left) != len(old):  # ids gone (or not made again)
            left += [old[ident] for ident in old.keys() - by_id.keys()]
        self._publish(by_id, added, left)
        self._retire(left)

    def set_fixed(self, endpoints: Sequence[E]) -> None:
        """Serve a constant list of endpoints (for :class:`FixedEndpointer`)."""
        by_id: dict[str, _Entry[E]] = {}
        for index, endpoint in enumerate(endpoints):
            by_id[str(index)] = _Entry(None, endpoint, None)
        with self._state_lock:
            self._publish(by_id)

    def close(self, wait: bool = True) -> None:
        """Close every endpoint: at once when idle, else after its in-flight requests end
        (bounded by the drain timeout; with ``wait`` this call waits for that)."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            left = list(self._by_id.values())
            self._publish({})
            self._retire(left)
        if wait:
            self._wait_closed()

    def settle(self, timeout: float | None = 5.0) -> bool:
        """Wait until every closer already due has run (endpoints still draining excepted);
        False if ``timeout`` seconds (of the core's clock) passed first."""
        limit = check_timeout("timeout", timeout)
        with self._lock:
            return clock().wait_for(self._drain_cond, lambda: not self._closing, limit)

    def _wait_closed(self) -> None:
        drain = self._drain_timeout
        limit = None if drain is None else drain + CLOSE_GRACE
        with self._lock:
            done = clock().wait_for(
                self._drain_cond, lambda: not self._draining and not self._closing, limit
            )
            if not done:
                log.warning(
                    "closing endpoints: %d still draining and %d closers still running "
                    "after %s s; not waiting for them",
                    len(self._draining),
                    self._closing,
                    limit,
                )

    def _drained(self) -> None:
        """Wake the drainer and the waiters of :meth:`close` (hold ``_lock``)."""
        self._drain_changes += 1
        self._drain_cond.notify_all()

    # -- machinery -----------------------------------------------------------------------
    def _create(self, instance: Instance) -> _Entry[E] | None:
        if self._factory is None:
            return _Entry(instance, instance, None)  # type: ignore[arg-type]
        try:
            made = self._factory(instance)
        except Exception:
            log.exception("factory failed for %r; skipping that instance", instance)
            return None
        endpoint, closer = _split(made)
        if endpoint is None:
            log.error(
                "factory %r returned None for %r; skipping that instance (a factory returns "
                "an endpoint or an (endpoint, closer) pair)",
                self._factory,
                instance,
            )
            return None
        return _Entry(instance, endpoint, closer)

    def _publish(
        self,
        by_id: dict[str, _Entry[E]],
        added: list[_Entry[E]] | None = None,
        left: list[_Entry[E]] | None = None,
    ) -> None:
        """Serve the set ``by_id``; ``added`` and ``left`` are the entries that came and went
        since the set served now (None: work them out). Hold ``_state_lock``."""
        entries = tuple(by_id.values())
        if self._followers:
            self._tell(entries, added, left)
        self._by_id = by_id
        self._error = None
        self._deadline = None
        self._entries = entries
        self._endpoints = tuple(map(_endpoint_of, entries))
        stale, self._live = self._live, [True]
        stale.clear()
        self.notifier.notify()

    # -- followers of the set ----------------------------------------------------------------
    def follow(self, follower: SetFollower[E]) -> None:
        """Tell ``follower`` of every change of the set, before the new set is served.

        ``follower(entries, added, removed)`` is called at once with the current set (all of
        it ``added``), then on each change with the new set and the entries that came and
        went; on the thread that applies the change, with the cache's state lock held (so
        calls never overlap), and before any balancer can pick from the new set: state kept
        this way (a hash ring) is never behind the set a pick sees. ``removed`` may name
        entries it was never told of (ignore those). It must be quick; what it raises is
        logged. A bound method is held weakly: following ends with its object.
        """
        ref: Callable[[], SetFollower[E] | None]
        if hasattr(follower, "__self__") and hasattr(follower, "__func__"):
            ref = weakref.WeakMethod(follower)
        else:

            def ref() -> SetFollower[E]:
                return follower

        with self._state_lock:
            if not self._followers:
                self._told = self._entries  # the set this follower is told of now
            self._followers.append(ref)
            entries = self._entries
            self._call(follower, entries, entries, ())

    def _tell(
        self,
        entries: tuple[_Entry[E], ...],
        added: Sequence[_Entry[E]] | None,
        left: Sequence[_Entry[E]] | None,
    ) -> None:
        told = self._told
        if added is None or left is None or told is not self._entries:
            # Not a change of the set served now (an expiry emptied it meanwhile, or the
            # caller did not say): the difference from the set the followers know.
            now = set(entries)
            before = set(told)
            added = [entry for entry in entries if entry not in before]
            left = [entry for entry in told if entry not in now]
        self._told = entries
        alive = []
        for ref in self._followers:
            follower = ref()
            if follower is not None:
                alive.append(ref)
                self._call(follower, entries, added, left)
        self._followers = alive

    @staticmethod
    def _call(
        follower: SetFollower[E],
        entries: tuple[_Entry[E], ...],
        added: Sequence[_Entry[E]],
        left: Sequence[_Entry[E]],
    ) -> None:
        try:
            follower(entries, added, left)
        except Exception:
            log.exception("a follower of the endpoints failed: %r", follower)

    def _failed(self, error: BaseException) -> None:
        if self._invalidate_after is None:
            return
        if self._deadline is None:
            self._deadline = clock().monotonic() + self._invalidate_after
            self._live.clear()  # entries() must check the deadline from now on
        self._pending_error = error
        self._expire_if_due()

    def _expire_if_due(self) -> None:
        deadline = self._deadline
        if deadline is None or clock().monotonic() < deadline:
            return
        with self._state_lock:
            deadline = self._deadline
            if deadline is None or clock().monotonic() < deadline:
                return  # recovered, or expired by another thread, meanwhile
            left = list(self._by_id.values())
            error = self._pending_error
            self._by_id = {}
            self._entries = ()
            self._live.clear()
            self._endpoints = ()
            self._error = error
            self._deadline = None
            log.warning(
                "discovery failed for %s s; closing %d endpoints: %s",
                self._invalidate_after,
                len(left),
                error,
            )
            self._retire(left)
        self.notifier.notify()

    def _retire(self, entries: list[_Entry[E]]) -> None:
        now_closed: list[_Entry[E]] = []
        with self._lock:
            drain = self._drain_timeout
            deadline = None if drain is None else clock().monotonic() + drain
            for entry in entries:
                if entry.retired:
                    continue
                entry.retired = True
                if entry.pending <= 0:
                    entry.closed = True
                    now_closed.append(entry)
                else:
                    self._draining[entry] = deadline
            if self._draining:
                self._drained()
                if self._drainer is None:
                    self._drainer = threading.Thread(
                        target=self._drain_loop, name="sd-endpoint-drain", daemon=True
                    )
                    self._drainer.start()
        self._close_soon(now_closed)

    def _drain_loop(self) -> None:
        while True:
            expired: list[_Entry[E]] = []
            with self._lock:
                if not self._draining:
                    self._drainer = None
                    self._drained()
                    return
                now = clock().monotonic()
                for entry, deadline in list(self._draining.items()):
                    if deadline is not None and deadline <= now:
                        del self._draining[entry]
                        entry.closed = True
                        expired.append(entry)
                if not expired:
                    due = [d for d in self._draining.values() if d is not None]
                    seen = self._drain_changes
                    clock().wait_for(
                        self._drain_cond,
                        lambda seen=seen: self._drain_changes != seen,  # type: ignore[misc]
                        min(due) - now if due else None,
                    )
                    continue
            for entry in expired:
                log.warning(
                    "closing the endpoint of %r with %d requests still in flight "
                    "after the %s s drain timeout",
                    entry.instance,
                    entry.pending,
                    self._drain_timeout,
                )
            self._close_soon(expired)

    def _close_soon(self, entries: list[_Entry[E]]) -> None:
        """Call the closers of ``entries`` (already marked closed) on a delivery thread."""
        closing = [entry for entry in entries if entry.closer is not None]
        if not closing:
            return
        with self._lock:
            self._closing += len(closing)
        for entry in closing:
            dispatcher().submit(functools.partial(self._close_entry, entry))

    def _close_entry(self, entry: _Entry[E]) -> None:
        try:
            entry.closer.close()
        except Exception:
            log.exception("closing the endpoint of %r failed", entry.instance)
        finally:
            with self._lock:
                self._closing -= 1
                if not self._closing:
                    self._drained()
