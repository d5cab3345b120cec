"""Random: a uniformly random endpoint."""

from __future__ import annotations

import random
from collections.abc import Sequence
from math import floor
from typing import TypeVar

from sd_core._cache import Candidate
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["Random"]

E = TypeVar("E")


class Random(Balancer[E]):
    """Picks an endpoint uniformly at random; ``seed`` makes the sequence repeatable."""

    def __init__(self, endpointer: Endpointer[E], seed: int | None = None) -> None:
        super().__init__(endpointer)
        self._random = random.Random(seed).random

    def pick(self, candidates: Sequence[Candidate[E]], key: object) -> Candidate[E]:
        """A candidate drawn uniformly at random."""
        return candidates[floor(self._random() * len(candidates))]
