"""Ejecting: outlier ejection (gRPC, Envoy) around any balancer."""

from __future__ import annotations

import math
import threading
from collections.abc import Container, Mapping, Sequence
from typing import Any, TypeVar, cast

from sd_core._cache import Candidate
from sd_core._clock import clock

from .base import Balancer, _endpointer_of, _now

__all__ = ["Ejecting"]

E = TypeVar("E")


class _Out:
    """One ejected candidate: out until ``until``, then probed (one request at a time)."""

    __slots__ = ("times", "until")

    def __init__(self, until: float, times: int) -> None:
        self.until = until
        self.times = times  # ejections in a row, the multiplier of the ejection time


class _Avoided(Container[Candidate[Any]]):
    """What the wrapped balancer must not pick: the ejected candidates (a probed one while its
    probe is in flight) and those the caller avoids."""

    __slots__ = ("_also", "_now", "_out")

    def __init__(
        self, out: Mapping[Any, _Out], now: float, also: Container[Candidate[Any]] | None
    ) -> None:
        self._out = out
        self._now = now
        self._also = also

    def __contains__(self, candidate: object) -> bool:
        state = self._out.get(candidate)
        if state is not None and (
            self._now < state.until or cast("Candidate[Any]", candidate).pending > 0
        ):
            return True
        return self._also is not None and candidate in self._also


def _check_count(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


class Ejecting(Balancer[E]):
    """Outlier ejection around any balancer, as gRPC and Envoy do it: an endpoint that fails
    is taken out of the picks for a while, then probed and let back in when it answers.

    ``Ejecting(PeakEwma(endpointer))`` picks as the balancer it wraps, over the same
    endpointer, except that ejected endpoints are avoided (through the wrapped balancer's
    ``pick_avoiding``, so that :class:`ConsistentHash` moves only their keys). Use the
    ``choose()`` / ``achoose()`` of the wrapper: they are what it learns from.

    An endpoint is ejected when its last ``consecutive_failures`` blocks failed, or when at
    least ``failure_rate`` of its blocks failed over an ``interval`` (seconds) in which it had
    ``minimum_requests`` or more (None disables either rule). It stays out for
    ``ejection_time`` times the number of times it was ejected in a row (at most
    ``max_ejection_time``); then the next request goes to it (a probe, one at a time,
    whatever the wrapped balancer still holds against it; around a balancer that picks by key,
    the next request whose key it owns): a success lets it back in, a failure ejects it again
    for longer. Each ``interval`` it stays in takes one off
    its count. At most ``max_ejected`` of the endpoints (a share; at least one) are out at
    once (0: none). ``ejected`` lists the endpoints out now; ``balancer`` is the one wrapped.
    """

    def __init__(
        self,
        balancer: Balancer[E],
        *,
        consecutive_failures: int | None = 5,
        failure_rate: float | None = 0.85,
        minimum_requests: int = 50,
        interval: float = 10.0,
        ejection_time: float = 30.0,
        max_ejection_time: float = 300.0,
        max_ejected: float = 0.1,
    ) -> None:
        if not isinstance(balancer, Balancer):
            raise TypeError(f"Ejecting wraps a Balancer, got {balancer!r}")
        _check_count("consecutive_failures", consecutive_failures)
        _check_count("minimum_requests", minimum_requests)
        if failure_rate is not None and (
            isinstance(failure_rate, bool)
            or not isinstance(failure_rate, int | float)
            or not 0 < failure_rate <= 1
        ):
            raise ValueError(
                f"failure_rate must be a share in (0, 1] or None, got {failure_rate!r}"
            )
        if (
            isinstance(max_ejected, bool)
            or not isinstance(max_ejected, int | float)
            or not (0 <= max_ejected <= 1)
        ):
            raise ValueError(f"max_ejected must be a share in [0, 1], got {max_ejected!r}")
        super().__init__(_endpointer_of(balancer))
        self.balancer = balancer
        self.needs_key = balancer.needs_key
        self.latency_decay = balancer.latency_decay
        self._consecutive = consecutive_failures
        self._rate = failure_rate
        self._minimum = minimum_requests
        self._interval = _check_seconds("interval", interval)
        self._base = _check_seconds("ejection_time", ejection_time)
        self._max_time = max(_check_seconds("max_ejection_time", max_ejection_time), self._base)
        self._max_share = float(max_ejected)
        self._forward = type(balancer).observe is not Balancer.observe
        self._lock = threading.Lock()
        # Read without the lock by every pick; replaced whole under it.
        self._out: dict[Candidate[E], _Out] = {}
        self._next_due = math.inf  # the earliest ``until`` of those out
        # Ejections in a row of those let back in, and since when they are in.
        self._history: dict[Candidate[E], tuple[int, float]] = {}
        self._set: Sequence[Candidate[E]] = ()
        self._members: frozenset[Candidate[E]] = frozenset()
        # Those out whose ejection ended: each gets one request (a probe) as soon as it can.
        self._due: list[Candidate[E]] = []
        # The failure-rate window: when it ends, and the counts of each candidate at its start.
        self._window_end = -math.inf
        self._counts: dict[Candidate[E], tuple[int, int]] = {}

    # -- picking -----------------------------------------------------------------------------
    def pick(self, candidates: Sequence[Candidate[E]], key: object) -> Candidate[E]:
        """The wrapped balancer's pick, avoiding the ejected endpoints (or the probe of one
        whose ejection ended)."""
        if candidates is not self._set:
            candidates = self._current(candidates)
        out = self._out
        if not out:
            return self.balancer.pick(candidates, key)
        now = self._now()
        if self._due:
            probe = self._probe(candidates, None)
            if probe is not None:
                return probe
        return self.balancer.pick_avoiding(candidates, key, _Avoided(out, now, None))

    def pick_avoiding(
        self,
        candidates: Sequence[Candidate[E]],
        key: object,
        avoided: Container[Candidate[E]],
    ) -> Candidate[E]:
        """The wrapped balancer's ``pick_avoiding``, avoiding the ejected endpoints too."""
        if candidates is not self._set:
            candidates = self._current(candidates)
        out = self._out
        if out:
            now = self._now()
            if self._due:
                probe = self._probe(candidates, avoided)
                if probe is not None:
                    return probe
            avoided = _Avoided(out, now, avoided)
        return self.balancer.pick_avoiding(candidates, key, avoided)

    def _probe(
        self, candidates: Sequence[Candidate[E]], avoided: Container[Candidate[E]] | None
    ) -> Candidate[E] | None:
        """An endpoint whose ejection ended, with no request in flight, to probe: sent one
        request whatever the wrapped balancer would pick (which may still hold its failures
        against it), so that an endpoint that recovered is back when its ejection ends. Not
        for a balancer whose pick a key decides: a probe there is the next request whose key
        it owns."""
        if self.needs_key:
            return None
        for candidate in self._due:
            if (
                candidate.pending == 0
                and (avoided is None or candidate not in avoided)
                and candidate in self._members
            ):
                return candidate
        return None

    def _current(self, candidates: Sequence[Candidate[E]]) -> Sequence[Candidate[E]]:
        """The set to pick from: ``candidates``, or the set that replaced it (per-set state is
        never built for a set already replaced); what is held against endpoints that left is
        forgotten."""
        current, _ = self.state_for(candidates, self._seen)
        return current

    @property
    def ejected(self) -> list[E]:
        """The endpoints out now (ejected, or waiting for the answer to their probe)."""
        now = clock().monotonic()
        return [
            candidate.endpoint
            for candidate, state in self._out.items()
            if now < state.until or candidate.pending > 0
        ]

    def __repr__(self) -> str:
        return f"<Ejecting {self.balancer!r}, {len(self._out)} out>"

    # -- learning ----------------------------------------------------------------------------
    def observe(self, candidate: Candidate[E], failed: bool) -> None:
        """Eject ``candidate`` after too many failures; let a probed one back in, or out again."""
        if self._forward:
            self.balancer.observe(candidate, failed)
        state = self._out.get(candidate)
        if state is None and not failed:
            return
        now = clock().monotonic()
        with self._lock:
            state = self._out.get(candidate)
            if state is not None:
                if now < state.until:
                    return  # a request sent before it was ejected
                if failed:  # the probe failed: out again, for longer
                    self._eject(candidate, state.times + 1, now)
                else:  # the probe succeeded: back in
                    out = dict(self._out)
                    del out[candidate]
                    self._history[candidate] = (state.times, now)
                    self._publish(out)
                return
            if self._consecutive is not None and (
                candidate.consecutive_failures >= self._consecutive
            ):
                self._eject_new(candidate, now)
            if self._rate is not None and now >= self._window_end:
                self._sweep(now)

    # -- machinery (under the lock) --------------------------------------------------------------
    def _now(self) -> float:
        now = _now()
        if now >= self._next_due:  # some ejection ended: its probe is due
            with self._lock:
                self._publish(dict(self._out))  # recomputes the next due time
        return now

    def _seen(self, candidates: Sequence[Candidate[E]]) -> None:
        """A new set (built once per set by state_for()): forget the candidates that left."""
        with self._lock:
            self._set = candidates
            self._members = members = frozenset(candidates)
            if self._out or self._history or self._counts:
                out = {c: s for c, s in self._out.items() if c in members}
                self._history = {c: h for c, h in self._history.items() if c in members}
                self._counts = {c: n for c, n in self._counts.items() if c in members}
                self._publish(out)

    def _publish(self, out: dict[Candidate[E], _Out]) -> None:
        now = _now()
        self._next_due = min((s.until for s in out.values() if s.until > now), default=math.inf)
        self._due = [c for c, s in out.items() if s.until <= now]
        self._out = out

    def _eject_new(self, candidate: Candidate[E], now: float) -> None:
        """Eject a candidate that is in, if the share out allows it."""
        share = self._max_share
        allowed = max(1, math.floor(share * len(self._set))) if share > 0 else 0
        if sum(1 for state in self._out.values() if now < state.until) >= allowed:
            return
        times, since = self._history.pop(candidate, (0, now))
        # One ejection forgiven per interval spent in since the last one.
        times = max(0, times - int((now - since) // self._interval))
        self._eject(candidate, times + 1, now)

    def _eject(self, candidate: Candidate[E], times: int, now: float) -> None:
        out = dict(self._out)
        out[candidate] = _Out(now + min(self._base * times, self._max_time), times)
        self._publish(out)

    def _sweep(self, now: float) -> None:
        """End the failure-rate window: eject those that failed too often in it."""
        counts = self._counts
        rate, minimum = self._rate, self._minimum
        assert rate is not None
        fresh: dict[Candidate[E], tuple[int, int]] = {}
        worst: list[tuple[float, Candidate[E]]] = []
        for candidate in self._set:
            failures, successes = candidate.failures, candidate.successes
            fresh[candidate] = (failures, successes)
            before = counts.get(candidate)
            if before is None or candidate in self._out:
                continue
            failed = failures - before[0]
            total = failed + successes - before[1]
            if total >= minimum and failed >= rate * total:
                worst.append((failed / total, candidate))
        for _, candidate in sorted(worst, key=lambda item: -item[0]):
            self._eject_new(candidate, now)
        self._counts = fresh
        self._window_end = now + self._interval
