"""RoundRobin: each endpoint in turn."""

from __future__ import annotations

import itertools
from typing import TypeVar

from sd_core._cache import _Entry
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["RoundRobin"]

E = TypeVar("E")


class RoundRobin(Balancer[E]):
    """Picks the endpoints in turn."""

    def __init__(self, endpointer: Endpointer[E]) -> None:
        super().__init__(endpointer)
        # next() on itertools.count is atomic under the GIL: no lock on the hot path.
        self._counter = itertools.count()

    def _pick(self, entries: tuple[_Entry[E], ...], key: object) -> _Entry[E]:
        return entries[next(self._counter) % len(entries)]

    def endpoint(self, key: object = None) -> E:
        """The next endpoint in turn, or :class:`NoEndpointsError` at once."""
        cache = self._cache
        endpoints = cache._endpoints
        if endpoints and cache._deadline is None:
            return endpoints[next(self._counter) % len(endpoints)]
        return super().endpoint(key)
