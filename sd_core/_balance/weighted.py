"""Weighted: smooth weighted round robin on ``Instance.weight``."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence
from typing import TypeVar

from sd_core._cache import Candidate

from .base import Balancer

__all__ = ["Weighted"]

E = TypeVar("E")


class _Schedule:
    """The order of picks of one set: stride scheduling, earliest virtual deadline first."""

    __slots__ = ("heap", "lock", "weights")

    def __init__(self, candidates: Sequence[Candidate[object]]) -> None:
        weights = [1 if c.instance is None else c.instance.weight for c in candidates]
        if not any(weights):
            weights = [1] * len(candidates)
        self.weights = weights
        # (virtual deadline of the next pick, index, picks so far + 1)
        self.heap = [(1 / (2 * w), i, 1) for i, w in enumerate(weights) if w > 0]
        heapq.heapify(self.heap)
        self.lock = threading.Lock()


class Weighted(Balancer[E]):
    """Smooth weighted round robin: over any run of ``sum(weights)`` picks each endpoint is
    picked ``weight`` times, interleaved rather than in bursts.

    Implemented as stride scheduling (earliest virtual deadline first, the k-th pick of an
    endpoint of weight w due at (2k - 1) / 2w), which costs O(log n) a pick. Endpoints of
    weight 0 are not picked while any endpoint has a positive weight; when all weigh 0 they
    are picked evenly. Endpoints without an instance weigh 1.
    """

    def pick(self, candidates: Sequence[Candidate[E]], key: object) -> Candidate[E]:
        """The candidate whose turn it is in the schedule of the current set."""
        # A caller holding a replaced snapshot picks from the current set (state_for) rather
        # than rebuilding the schedule for an old one (and the next caller rebuilding back).
        current, schedule = self.state_for(candidates, _Schedule)
        with schedule.lock:
            heap = schedule.heap
            _, index, k = heap[0]
            weight = schedule.weights[index]
            heapq.heapreplace(heap, ((2 * k + 1) / (2 * weight), index, k + 1))
        return current[index]
