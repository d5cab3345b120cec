"""LeastPending: the power of two choices on the in-flight count."""

from __future__ import annotations

import random
from collections.abc import Sequence
from math import floor
from typing import TypeVar

from sd_core._cache import Candidate
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["LeastPending"]

E = TypeVar("E")


class LeastPending(Balancer[E]):
    """Picks two endpoints at random and takes the one with fewer requests in flight.

    In-flight requests are those inside a ``choose()`` block; ``endpoint()`` alone counts
    nothing, so use ``choose()`` with this balancer.
    """

    def __init__(self, endpointer: Endpointer[E], seed: int | None = None) -> None:
        super().__init__(endpointer)
        self._random = random.Random(seed).random

    def pick(self, candidates: Sequence[Candidate[E]], key: object) -> Candidate[E]:
        """Of two distinct candidates drawn at random, the one with fewer ``pending``."""
        count = len(candidates)
        if count == 1:
            return candidates[0]
        # One draw for both: k uniform in [0, count * (count - 1)), then the first of
        # count and the second of the count - 1 others.
        first, second = divmod(floor(self._random() * (count * (count - 1))), count - 1)
        if second >= first:
            second += 1
        a, b = candidates[first], candidates[second]
        return b if b.pending < a.pending else a
