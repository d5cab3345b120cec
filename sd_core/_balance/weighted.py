"""Weighted: smooth weighted round robin on ``Instance.weight``."""

from __future__ import annotations

import heapq
import threading
from typing import TypeVar

from sd_core._cache import _Entry
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["Weighted"]

E = TypeVar("E")


class Weighted(Balancer[E]):
    """Smooth weighted round robin: over any run of ``sum(weights)`` picks each endpoint is
    picked ``weight`` times, interleaved rather than in bursts.

    Implemented as stride scheduling (earliest virtual deadline first, the k-th pick of an
    endpoint of weight w due at (2k - 1) / 2w), which costs O(log n) a pick. Endpoints of
    weight 0 are not picked while any endpoint has a positive weight; when all weigh 0 they
    are picked evenly. Endpoints without an instance weigh 1.
    """

    def __init__(self, endpointer: Endpointer[E]) -> None:
        super().__init__(endpointer)
        self._lock = threading.Lock()
        self._entries: tuple[_Entry[E], ...] = ()
        self._weights: list[int] = []
        self._heap: list[tuple[float, int, int]] = []

    def _rebuild(self, entries: tuple[_Entry[E], ...]) -> None:
        weights = [1 if e.instance is None else e.instance.weight for e in entries]
        if not any(weights):
            weights = [1] * len(entries)
        self._weights = weights
        self._heap = [(1 / (2 * w), i, 1) for i, w in enumerate(weights) if w > 0]
        heapq.heapify(self._heap)
        self._entries = entries

    def _pick(self, entries: tuple[_Entry[E], ...], key: object) -> _Entry[E]:
        with self._lock:
            if entries is not self._entries:
                # A caller holding a replaced snapshot picks from the current set rather than
                # rebuilding the schedule for an old one (and the next caller rebuilding back).
                entries = self._latest(entries)
                if entries is not self._entries:
                    self._rebuild(entries)
            heap = self._heap
            _, index, k = heap[0]
            weight = self._weights[index]
            heapq.heapreplace(heap, ((2 * k + 1) / (2 * weight), index, k + 1))
        return entries[index]
