"""Event: the whole current set of instances of a service, or an error."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ._instance import Instance, _hash_of, _id_of, _order_key

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
    # The hash of the instances' hashes, computed by the first same_as(): a cheap "not the same".
    _digest: int | None = field(init=False, repr=False, compare=False)
    # True when no two instances share an id (EndpointCache skips its check for duplicates).
    _unique_ids: bool = field(init=False, repr=False, compare=False)

    def __init__(
        self, instances: Iterable[Instance] = (), error: BaseException | None = None
    ) -> None:
        items = instances if isinstance(instances, tuple | list) else list(instances)
        try:
            # By id alone (strings compared in C, no call to Instance.__lt__), which is the
            # whole order while ids are unique; by the whole key (cached tuples) when not. Both
            # keys refuse anything that is not an Instance.
            ordered = sorted(items, key=_id_of)
            unique = len(set(map(_id_of, ordered))) == len(ordered)
            if not unique:
                ordered.sort(key=_order_key)
        except TypeError:
            for item in items:
                if not isinstance(item, Instance):
                    raise TypeError(
                        f"Event.instances must hold Instance values, got {item!r}"
                    ) from None
            raise
        if error is not None and ordered:
            raise ValueError("Event holds either instances or an error, not both")
        object.__setattr__(self, "instances", tuple(ordered))
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "_digest", None)
        object.__setattr__(self, "_unique_ids", unique)

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
        mine, theirs = self.instances, other.instances
        if mine is theirs:
            return True
        if len(mine) != len(theirs) or self._hash_digest() != other._hash_digest():
            return False
        # The same digest: almost surely the same set; compare the keys (in C) to be sure.
        return list(map(_order_key, mine)) == list(map(_order_key, theirs))

    def _hash_digest(self) -> int:
        digest = self._digest
        if digest is None:
            digest = hash(tuple(map(_hash_of, self.instances)))
            object.__setattr__(self, "_digest", digest)
        return digest

    def __repr__(self) -> str:
        if self.error is not None:
            return f"Event(error={self.error!r})"
        return f"Event({len(self.instances)} instances: {[i.address for i in self.instances]})"
