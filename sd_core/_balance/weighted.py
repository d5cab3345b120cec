"""Weighted: smooth weighted round robin on ``Instance.weight``, without a lock."""

from __future__ import annotations

import itertools
import math
import operator
import random
from bisect import bisect_right
from collections.abc import Sequence
from typing import TypeVar

from sd_core._cache import Candidate
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["Weighted"]

E = TypeVar("E")

_GOLDEN = (math.sqrt(5) - 1) / 2  # 0.618...: the step of the most even spread
_SEARCH = 64  # steps looked at on either side of the golden section
_weight_of = operator.attrgetter("instance.weight")


def _largest_quotient(total: int, step: int) -> int:
    """The largest partial quotient of the continued fraction of ``total / step``: the smaller,
    the more evenly ``n * step % total`` spreads (the golden ratio's are all 1)."""
    largest = 0
    while step:
        quotient, rest = divmod(total, step)
        largest = max(largest, quotient)
        total, step = step, rest
    return largest


def _step_for(total: int) -> int:
    """A step coprime with ``total`` near its golden section: ``n * step % total`` then visits
    every point of ``[0, total)`` once in any ``total`` consecutive picks, each pick far from the
    last. Of the coprime steps near ``total * 0.618``, the one spreading most evenly."""
    if total <= 2:
        return 1
    middle = round(total * _GOLDEN)
    steps = {middle + offset for offset in range(-_SEARCH, _SEARCH + 1)}
    usable = [step for step in steps if 0 < step < total and math.gcd(step, total) == 1]
    if not usable:
        return 1
    return min(usable, key=lambda step: (_largest_quotient(total, step), abs(step - middle), step))


class _Schedule:
    """The picks of one set: the n-th pick (over every thread) is the candidate owning the
    share ``n * step % total`` of the cumulative weights. ``n`` comes from a shared counter,
    whose step is atomic: picks take no lock."""

    __slots__ = ("bounds", "counter", "indexes", "step", "total")

    def __init__(self, candidates: Sequence[Candidate[object]], start: int) -> None:
        try:
            weights = list(map(_weight_of, candidates))  # in C: no Python code per endpoint
        except AttributeError:  # endpoints without an instance weigh 1
            weights = [1 if c.instance is None else c.instance.weight for c in candidates]
        if not any(weights):
            weights = [1] * len(candidates)
        self.indexes: Sequence[int] = range(len(weights))
        if 0 in weights:  # weight 0: never picked
            self.indexes = [i for i, w in enumerate(weights) if w]
            weights = [weights[i] for i in self.indexes]
        divisor = math.gcd(*weights)
        if divisor > 1:
            weights = [w // divisor for w in weights]
        # bounds[j]: the end of the share of indexes[j] in [0, total)
        self.bounds = list(itertools.accumulate(weights))
        self.total = self.bounds[-1]
        self.step = _step_for(self.total)
        self.counter = itertools.count(start % self.total)


class Weighted(Balancer[E]):
    """Smooth weighted round robin: over any run of ``sum(weights)`` consecutive picks (of all
    threads together) each endpoint is picked ``weight`` times, interleaved rather than in
    bursts.

    The n-th pick takes the endpoint owning the point ``n * step mod sum(weights)`` of the
    cumulative weights, ``step`` being coprime with the sum and near its golden section: a
    permutation of the points, so the proportions are exact over every ``sum(weights)``
    consecutive picks, and a low-discrepancy one, so the picks of an endpoint come at nearly
    even intervals. A pick is a step of a shared counter and a bisection, O(log n), without a
    lock (weights are first divided by their greatest common divisor). Endpoints of weight 0
    are not picked while any endpoint has a positive weight; when all weigh 0 they are picked
    evenly. Endpoints without an instance weigh 1.
    """

    def __init__(self, endpointer: Endpointer[E]) -> None:
        super().__init__(endpointer)
        self._sets = 0
        # What state_for() returned last: read first by every pick (one identity test).
        self._last: tuple[Sequence[Candidate[E]], _Schedule] | None = None

    def _schedule(self, candidates: Sequence[Candidate[E]]) -> _Schedule:
        # The first set starts at its first point; later ones at a random point, so that
        # frequent changes of the set do not favour the first endpoints.
        self._sets += 1
        return _Schedule(candidates, 0 if self._sets == 1 else random.getrandbits(64))

    def pick(self, candidates: Sequence[Candidate[E]], key: object) -> Candidate[E]:
        """The candidate whose turn it is in the schedule of the current set."""
        # A caller holding a replaced snapshot picks from the current set (state_for) rather
        # than rebuilding the schedule for an old one (and the next caller rebuilding back).
        last = self._last
        if last is None or last[0] is not candidates:
            last = self._last = self.state_for(candidates, self._schedule)
        current, schedule = last
        point = next(schedule.counter) * schedule.step % schedule.total
        return current[schedule.indexes[bisect_right(schedule.bounds, point)]]
