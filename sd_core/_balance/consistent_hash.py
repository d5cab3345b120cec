"""ConsistentHash: sharding by a key, with minimal movement when membership changes."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Container, Sequence
from typing import TypeVar

from sd_core._cache import Candidate
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["ConsistentHash"]

E = TypeVar("E")

_INDEX_BITS = 24  # a ring point is (32-bit hash << 24) | candidate index: one sortable int
_INDEX_MASK = (1 << _INDEX_BITS) - 1


def _hash_points(name: str, replicas: int) -> list[int]:
    points: list[int] = []
    for r in range((replicas + 3) // 4):
        data = f"{name}-{r}".encode("utf-8", "surrogatepass")
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        points.extend(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
    return points[:replicas]


def _key_hash(key: object) -> int:
    # "surrogatepass": any str hashes, a lone surrogate ("\ud800") included; for every other
    # str the bytes are the UTF-8 ones, so keys do not move.
    data = key if isinstance(key, bytes) else str(key).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.md5(data, usedforsecurity=False).digest()[:4], "little")


class ConsistentHash(Balancer[E]):
    """Sends every request with the same key to the same endpoint (a hash ring with
    ``replicas`` points per endpoint, placed by instance id).

    When an endpoint leaves, only the keys it owned move; when one joins, it takes keys only
    from the others. A key is required: ``endpoint(key)`` or ``choose(key=...)``; a key is
    ``bytes`` or anything else by its ``str()``. A retry that avoids the endpoint that failed
    goes where the key would go if that endpoint left.
    """

    needs_key = True

    def __init__(self, endpointer: Endpointer[E], replicas: int = 160) -> None:
        super().__init__(endpointer)
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        self._replicas = replicas

    def _ring(self, candidates: Sequence[Candidate[E]]) -> list[int]:
        """The ring of ``candidates``: sorted points, each (hash << 24) | candidate index."""
        if len(candidates) > _INDEX_MASK:
            raise ValueError(f"ConsistentHash supports < {1 << _INDEX_BITS} endpoints")
        ring: list[int] = []
        for index, candidate in enumerate(candidates):
            name = str(index) if candidate.instance is None else candidate.instance.id
            ring.extend((p << _INDEX_BITS) | index for p in _hash_points(name, self._replicas))
        ring.sort()
        return ring

    def pick(self, candidates: Sequence[Candidate[E]], key: object) -> Candidate[E]:
        """The candidate owning ``key`` on the ring of the current set."""
        if key is None:
            raise ValueError(
                "ConsistentHash needs a key: endpoint(key), choose(key=...), "
                "or retry(..., key=a function of the call's arguments returning the key)"
            )
        current, ring = self.state_for(candidates, self._ring)
        at = bisect.bisect_left(ring, _key_hash(key) << _INDEX_BITS)
        if at == len(ring):
            at = 0
        return current[ring[at] & _INDEX_MASK]

    def pick_avoiding(
        self,
        candidates: Sequence[Candidate[E]],
        key: object,
        avoided: Container[Candidate[E]],
    ) -> Candidate[E]:
        """The owner of ``key``, or when it is avoided the next candidate on the ring that is
        not: where the key would go if the avoided ones left."""
        first = self.pick(candidates, key)
        if first not in avoided:
            return first
        # The same key always hashes to the same point: walk the ring on from there.
        current, ring = self.state_for(candidates, self._ring)
        start = bisect.bisect_left(ring, _key_hash(key) << _INDEX_BITS)
        for at in range(start, start + len(ring)):
            candidate = current[ring[at % len(ring)] & _INDEX_MASK]
            if candidate not in avoided:
                return candidate
        return first
