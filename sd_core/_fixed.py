"""FixedInstancer: a constant set of instances."""

from __future__ import annotations

from collections.abc import Iterable

from ._broadcast import BaseInstancer
from ._event import Event
from ._instance import Instance

__all__ = ["FixedInstancer"]


class FixedInstancer(BaseInstancer):
    """An instancer whose set never changes unless :meth:`set` is called: for tests and
    static configuration."""

    def __init__(self, instances: Iterable[Instance] = ()) -> None:
        super().__init__()
        self.update(Event(instances))

    def set(self, instances: Iterable[Instance], *, wait: float | None = 5.0) -> bool:
        """Replace the set; subscribers are told when it differs. Returns once every
        subscriber has taken it (True), or after ``wait`` seconds (False), so that a blocking
        subscriber cannot hold the caller for longer."""
        self.update(Event(instances))
        return self.settle(wait)

    def __repr__(self) -> str:
        count = len(self.state.instances) if self.state is not None else 0
        return f"<FixedInstancer {count} instances>"
