"""Random: a uniformly random endpoint."""

from __future__ import annotations

import random
from typing import TypeVar

from sd_core._cache import _Entry
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["Random"]

E = TypeVar("E")


class Random(Balancer[E]):
    """Picks an endpoint uniformly at random; ``seed`` makes the sequence repeatable."""

    def __init__(self, endpointer: Endpointer[E], seed: int | None = None) -> None:
        super().__init__(endpointer)
        self._random = random.Random(seed).random

    def _pick(self, entries: tuple[_Entry[E], ...], key: object) -> _Entry[E]:
        return entries[int(self._random() * len(entries))]
