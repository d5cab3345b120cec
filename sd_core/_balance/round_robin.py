"""RoundRobin: each endpoint in turn."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from sd_core._cache import Candidate
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
        self._first = True

    def turns(self, candidates: Sequence[Candidate[E]]) -> list[Candidate[E]]:
        """Every candidate once, from a random one (from the first for the first set)."""
        start = 0 if self._first else random.randrange(len(candidates))
        self._first = False
        return [*candidates[start:], *candidates[:start]]
