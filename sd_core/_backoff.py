"""Capped exponential backoff with jitter, shared by watchers, registrars and plugins."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, each scaled by a random factor
    in ``[1 - jitter, 1 + jitter]`` so that many clients do not retry in step.

    ``next()`` returns the next delay; ``reset()`` starts again after a success.
    """

    initial: float = 0.1
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    rand: Callable[[], float] = field(default=random.random, repr=False)
    attempts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(
                f"Backoff needs 0 < initial <= maximum, got {self.initial} and {self.maximum}"
            )
        if self.multiplier < 1:
            raise ValueError(f"Backoff.multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"Backoff.jitter must be in [0, 1), got {self.jitter}")

    def next(self) -> float:
        """The delay before the next attempt."""
        base = min(self.maximum, self.initial * self.multiplier ** min(self.attempts, 64))
        self.attempts += 1
        factor = 1 + self.jitter * (2 * self.rand() - 1)
        return min(self.maximum, base * factor)

    def reset(self) -> None:
        """Start from ``initial`` again."""
        self.attempts = 0
