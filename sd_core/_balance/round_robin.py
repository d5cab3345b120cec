"""RoundRobin: each endpoint in turn."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator
from typing import TypeVar

from sd_core._cache import _Entry
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["RoundRobin"]

E = TypeVar("E")


class RoundRobin(Balancer[E]):
    """Picks the endpoints in turn.

    When the set changes, the turn starts again at a random endpoint of the new set, so that
    frequent updates do not favour the first one.
    """

    def __init__(self, endpointer: Endpointer[E]) -> None:
        super().__init__(endpointer)
        self._lock = threading.Lock()
        # next() on an itertools.cycle is atomic under the GIL and returns existing objects,
        # so a pick takes no lock and allocates nothing. The cycle is stored before the entries
        # it walks: a reader that sees the new entries also sees their cycle.
        self._cycle: Iterator[_Entry[E]] = iter(())
        self._walked: object = object()
        self._first = True

    def _pick(self, entries: tuple[_Entry[E], ...], key: object) -> _Entry[E]:
        if entries is not self._walked:
            with self._lock:
                entries = self._latest(entries)
                if entries is not self._walked:
                    start = 0 if self._first else random.randrange(len(entries))
                    self._first = False
                    self._cycle = itertools.cycle(entries[start:] + entries[:start])
                    self._walked = entries
        return next(self._cycle)

    def endpoint(self, key: object = None) -> E:
        """The next endpoint in turn, or :class:`NoEndpointsError` at once."""
        cache = self._cache
        if cache._entries is self._walked and cache._deadline is None:
            entry = next(self._cycle)
            # Closed when the set was replaced between the check above and the step.
            if not entry.closed:
                return entry.endpoint
        return super().endpoint(key)
