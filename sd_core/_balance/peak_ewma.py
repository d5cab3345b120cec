"""PeakEwma: the endpoint with the least expected wait, peak-EWMA latency * (in flight + 1)."""

from __future__ import annotations

import math
import random
from collections.abc import Container, Sequence
from math import floor
from typing import Any, TypeVar

from sd_core._cache import Candidate
from sd_core._endpointer import Endpointer

from .base import Balancer, _now

__all__ = ["PeakEwma"]

E = TypeVar("E")

# The cost of a candidate never timed, per request in flight on it (Finagle's penalty): wait for
# its first answer before sending it more. One never timed and idle costs 0: it is tried first.
# A failing candidate when no other was timed yet costs more still (a known failure is worse
# than an unknown latency). Both stay far from overflowing: 1e200 * 1e6 * 2 ** 20 < 1e308.
_PENALTY = 1e200
_UNKNOWN_FAILING = 1e206
# A candidate whose last k blocks failed costs 2 ** min(k, _MAX_DOUBLINGS) times more.
_MAX_DOUBLINGS = 20
_NONE: Container[Any] = frozenset()


class PeakEwma(Balancer[E]):
    """Picks the endpoint with the least expected wait: the time it takes per request (a
    peak-EWMA of its latency) * (its requests in flight + 1), as Finagle's and Linkerd's
    balancers do.

    Every ``choose()`` / ``achoose()`` block is timed and folded into its candidate's
    ``service_time``: its duration divided by the requests that were in flight on it when it
    began, so that the queue a request waited in is not counted twice. The estimate jumps to
    a slower sample at once and forgets it with the decay time ``decay`` (seconds); while an
    endpoint is not picked its estimate decays towards 0 at that pace, so one that was slow
    is tried again. An endpoint never timed is tried first, then gets nothing more until its
    first answer. A block that raised never lowers the estimate, and an endpoint whose last
    ``k`` blocks raised counts as ``2 ** k`` times slower (at least as slow as the fastest
    compared), a penalty that fades over ``decay / 10``: failing fast does not attract
    requests, and a failing endpoint is tried again after about ``k * decay / 14`` seconds
    (a backoff). For ejection on failures, wrap it in :class:`Ejecting`.

    With up to ``scan`` endpoints every pick compares them all; above, it compares
    ``choices`` drawn at random (the power of d choices). ``endpoint()`` alone times nothing:
    use ``choose()``.
    """

    latency_decay = 10.0

    def __init__(
        self,
        endpointer: Endpointer[E],
        *,
        decay: float = 10.0,
        scan: int = 16,
        choices: int = 3,
        seed: int | None = None,
    ) -> None:
        if (
            isinstance(decay, bool)
            or not isinstance(decay, int | float)
            or not 0 < decay < math.inf
        ):
            raise ValueError(f"decay must be a number of seconds > 0, got {decay!r}")
        if isinstance(choices, bool) or not isinstance(choices, int) or choices < 2:
            raise ValueError(f"choices must be an integer >= 2, got {choices!r}")
        if isinstance(scan, bool) or not isinstance(scan, int) or scan < 0:
            raise ValueError(f"scan must be an integer >= 0, got {scan!r}")
        super().__init__(endpointer)
        self.latency_decay = float(decay)
        self._scan = scan
        self._choices = choices
        self._random = random.Random(seed).random

    def pick(self, candidates: Sequence[Candidate[E]], key: object) -> Candidate[E]:
        """The candidate of least expected wait: of all when they are few, else of a sample."""
        count = len(candidates)
        if count == 1:
            return candidates[0]
        if count > self._scan:
            return self._best(candidates, _NONE)
        # The scan of _best(), inline (the usual case: every pick comes here).
        now = _now()
        decay = self.latency_decay
        fresh = now - decay * 0.01  # measured since: decayed by less than 1 %, no exp()
        start = floor(self._random() * count)  # ties go round: start from a random one
        best: Candidate[E] | None = None
        best_cost = math.inf
        failing: list[Candidate[E]] | None = None
        for index in range(start - count, start):
            candidate = candidates[index]
            if candidate.consecutive_failures:
                if failing is None:
                    failing = [candidate]
                else:
                    failing.append(candidate)
                continue
            estimate = candidate.service_time
            if estimate:
                measured = candidate.measured_at
                if measured < fresh:
                    estimate *= math.exp((measured - now) / decay)
                cost = estimate * (candidate.pending + 1)
            else:
                cost = _PENALTY * candidate.pending
            if cost < best_cost:
                best = candidate
                best_cost = cost
        if failing is not None:
            best, _ = self._failing(failing, candidates, _NONE, best, best_cost, now=now)
        assert best is not None
        return best

    def pick_avoiding(
        self,
        candidates: Sequence[Candidate[E]],
        key: object,
        avoided: Container[Candidate[E]],
    ) -> Candidate[E]:
        """The candidate of least expected wait among those not avoided; an avoided one only
        when all are."""
        return self._best(candidates, avoided)

    def _best(
        self, candidates: Sequence[Candidate[E]], avoided: Container[Candidate[E]]
    ) -> Candidate[E]:
        count = len(candidates)
        rand = self._random
        start = floor(rand() * count)
        check = avoided is not _NONE
        if count <= self._scan:  # all of them, from a random one (ties go round)
            order: Sequence[int] = range(start - count, start)
        else:
            order = [start]
            choices = self._choices
            for _ in range(4 * choices):  # distinct and not avoided, a few tries
                index = floor(rand() * count)
                if index not in order and not (check and candidates[index] in avoided):
                    order.append(index)
                    if len(order) == choices:
                        break
        now = _now()
        decay = self.latency_decay
        fresh = now - decay * 0.01  # measured since: decayed by less than 1 %, no exp()
        best: Candidate[E] | None = None
        best_cost = math.inf
        failing: list[Candidate[E]] = []
        for index in order:
            candidate = candidates[index]
            if check and candidate in avoided:
                continue
            if candidate.consecutive_failures:
                failing.append(candidate)
                continue
            estimate = candidate.service_time
            if estimate:
                measured = candidate.measured_at
                if measured < fresh:
                    estimate *= math.exp((measured - now) / decay)
                cost = estimate * (candidate.pending + 1)
            else:
                cost = _PENALTY * candidate.pending
            if cost < best_cost:
                best, best_cost = candidate, cost
        if failing:
            best, best_cost = self._failing(
                failing, [candidates[i] for i in order], avoided, best, best_cost, now=now
            )
        if best is None:  # every one compared is avoided
            if count > self._scan:
                allowed = [c for c in candidates if c not in avoided]
                if allowed:
                    return self._best(allowed, _NONE)
            return candidates[start]
        return best

    def _failing(
        self,
        failing: list[Candidate[E]],
        compared: Sequence[Candidate[E]],
        avoided: Container[Candidate[E]],
        best: Candidate[E] | None,
        best_cost: float,
        *,
        now: float,
    ) -> tuple[Candidate[E] | None, float]:
        """Weigh the candidates whose last blocks failed against the best of the others."""
        decay = self.latency_decay
        fastest = math.inf  # the least service time of the others compared
        for candidate in compared:
            if (
                candidate.service_time > 0.0
                and not candidate.consecutive_failures
                and candidate not in avoided
            ):
                since = max(now - candidate.measured_at, 0.0)
                fastest = min(fastest, candidate.service_time * math.exp(-since / decay))
        for candidate in failing:
            # 2 ** k times slower than its own estimate or the fastest compared, whichever is
            # larger, the penalty fading over a tenth of the decay time since its last failure:
            # tried again after about k * decay / 14 seconds (an exponential backoff), so that
            # one that recovered is soon back, and an Ejecting around it sees enough failures
            # of one that does not to eject it.
            since = max(now - candidate.measured_at, 0.0)
            weight = 2.0 ** min(candidate.consecutive_failures, _MAX_DOUBLINGS)
            factor = max(1.0, weight * math.exp(-since * 10.0 / decay)) * (candidate.pending + 1)
            if fastest < math.inf:
                cost = max(candidate.service_time * math.exp(-since / decay), fastest) * factor
            else:
                cost = _UNKNOWN_FAILING * factor
            if best is None or cost < best_cost:
                best, best_cost = candidate, cost
        return best, best_cost
