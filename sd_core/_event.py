"""Event: the whole current set of instances of a service, or an error."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._instance import Instance

__all__ = ["Event"]


@dataclass(frozen=True, slots=True, init=False)
class Event:
    """Either the complete current set of instances or the error that stopped discovery.

    Never a delta: every event is the whole truth, so a subscriber that skips events loses
    nothing. ``instances`` is a tuple in a stable order (by id, then address, then the other
    fields): the same set in any order gives the same tuple.
    """

    instances: tuple[Instance, ...]
    error: BaseException | None

    def __init__(
        self, instances: Iterable[Instance] = (), error: BaseException | None = None
    ) -> None:
        ordered = tuple(sorted(instances))
        if error is not None and ordered:
            raise ValueError("Event holds either instances or an error, not both")
        for item in ordered:
            if not isinstance(item, Instance):
                raise TypeError(f"Event.instances must hold Instance values, got {item!r}")
        object.__setattr__(self, "instances", ordered)
        object.__setattr__(self, "error", error)

    @property
    def ok(self) -> bool:
        """True when the event carries a set of instances rather than an error."""
        return self.error is None

    def same_as(self, other: Event | None) -> bool:
        """True when ``other`` says the same thing: the same set, or an error of the same kind."""
        if other is None:
            return False
        if self.error is not None or other.error is not None:
            return (
                self.error is not None
                and other.error is not None
                and type(self.error) is type(other.error)
                and str(self.error) == str(other.error)
            )
        return self.instances == other.instances

    def __repr__(self) -> str:
        if self.error is not None:
            return f"Event(error={self.error!r})"
        return f"Event({len(self.instances)} instances: {[i.address for i in self.instances]})"
