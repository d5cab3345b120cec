"""PriorityWeighted: RFC 2782 selection on ``Instance.priority`` and ``Instance.weight``."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Container, Sequence
from typing import Generic, TypeVar

from sd_core._cache import Candidate
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["PriorityWeighted"]

E = TypeVar("E")


class _Tier(Generic[E]):
    """The candidates of one priority: cumulative positive weights, and those weighing 0."""

    __slots__ = ("candidates", "cumulative", "positive", "total", "zero")

    def __init__(self, candidates: Sequence[Candidate[E]]) -> None:
        self.candidates = tuple(candidates)
        self.positive = tuple(c for c in candidates if _weight(c) > 0)
        self.zero = tuple(c for c in candidates if _weight(c) == 0)
        self.cumulative = list(itertools.accumulate(_weight(c) for c in self.positive))
        self.total = self.cumulative[-1] if self.cumulative else 0

    def draw(self, uniform: float) -> Candidate[E]:
        """The candidate that ``uniform`` (a random number in [0, 1)) selects."""
        if not self.total:
            return self.zero[int(uniform * len(self.zero))]
        if not self.zero:
            return self.positive[bisect.bisect_right(self.cumulative, uniform * self.total)]
        # Weight 0 gets "a very small chance" (RFC 2782): one share against total shares.
        point = uniform * (self.total + 1)
        if point < 1:
            return self.zero[int(point * len(self.zero))]
        return self.positive[bisect.bisect_right(self.cumulative, point - 1)]


def _priority(candidate: Candidate[object]) -> int:
    return 0 if candidate.instance is None else candidate.instance.priority


def _weight(candidate: Candidate[object]) -> int:
    return 1 if candidate.instance is None else candidate.instance.weight


def _tiers(candidates: Sequence[Candidate[E]]) -> list[_Tier[E]]:
    """The candidates grouped by priority, the lowest (the preferred) first."""
    ordered = sorted(candidates, key=_priority)
    return [_Tier(list(group)) for _, group in itertools.groupby(ordered, key=_priority)]


class PriorityWeighted(Balancer[E]):
    """RFC 2782 (DNS SRV) selection: the lowest ``priority`` first, weighted random within it.

    Only the endpoints of the lowest priority present are picked; an endpoint of a higher
    priority value is used only when no endpoint of a lower one is left (or, in a retry, every
    one left was avoided). Within a priority, an endpoint is picked with probability
    ``weight / sum(weights)``; endpoints of weight 0 share one chance in ``sum(weights) + 1``
    (RFC 2782's "very small chance"), and are picked evenly when all weigh 0. Endpoints
    without an instance have priority 0 and weight 1. ``seed`` makes the sequence repeatable.
    """

    def __init__(self, endpointer: Endpointer[E], seed: int | None = None) -> None:
        super().__init__(endpointer)
        self._random = random.Random(seed).random
        # What state_for() returned last: read first by every pick (one identity test).
        self._last: tuple[Sequence[Candidate[E]], list[_Tier[E]]] | None = None

    def pick(self, candidates: Sequence[Candidate[E]], key: object) -> Candidate[E]:
        """A weighted random candidate of the lowest priority."""
        last = self._last
        if last is None or last[0] is not candidates:
            last = self._last = self.state_for(candidates, _tiers)
        tier = last[1][0]
        if tier.zero:
            return tier.draw(self._random())
        return tier.positive[bisect.bisect_right(tier.cumulative, self._random() * tier.total)]

    def pick_avoiding(
        self,
        candidates: Sequence[Candidate[E]],
        key: object,
        avoided: Container[Candidate[E]],
    ) -> Candidate[E]:
        """A weighted random candidate of the lowest priority that has one not avoided; the
        usual pick when every candidate is avoided."""
        _, tiers = self.state_for(candidates, _tiers)
        for tier in tiers:
            left = [c for c in tier.candidates if c not in avoided]
            if len(left) == len(tier.candidates):
                return tier.draw(self._random())
            if left:
                return _Tier(left).draw(self._random())
        return tiers[0].draw(self._random())
