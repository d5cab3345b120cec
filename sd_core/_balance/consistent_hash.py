"""ConsistentHash: sharding by a key, with minimal movement when membership changes."""

from __future__ import annotations

import bisect
import hashlib
import threading
from typing import TypeVar

from sd_core._cache import _Entry
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["ConsistentHash"]

E = TypeVar("E")

_INDEX_BITS = 24  # a ring point is (32-bit hash << 24) | entry index: one sortable int


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
    ``bytes`` or anything else by its ``str()``.
    """

    needs_key = True

    def __init__(self, endpointer: Endpointer[E], replicas: int = 160) -> None:
        super().__init__(endpointer)
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        self._replicas = replicas
        self._lock = threading.Lock()
        # (entries, ring) replaced as one tuple so that readers never pair mismatched halves.
        self._state: tuple[tuple[_Entry[E], ...], list[int]] = ((), [])

    def _ring_for(self, entries: tuple[_Entry[E], ...]) -> tuple[tuple[_Entry[E], ...], list[int]]:
        """The entries and ring to pick from: those of ``entries``, or of the current set when
        ``entries`` was replaced meanwhile (a ring is never rebuilt for an old set)."""
        state = self._state
        if state[0] is entries:
            return state
        with self._lock:
            state = self._state
            entries = self._latest(entries)
            if state[0] is not entries:
                if len(entries) >= 1 << _INDEX_BITS:
                    raise ValueError(f"ConsistentHash supports < {1 << _INDEX_BITS} endpoints")
                ring: list[int] = []
                for index, entry in enumerate(entries):
                    name = str(index) if entry.instance is None else entry.instance.id
                    ring.extend(
                        (p << _INDEX_BITS) | index for p in _hash_points(name, self._replicas)
                    )
                ring.sort()
                state = self._state = (entries, ring)
            return state

    def _pick_avoiding(
        self, entries: tuple[_Entry[E], ...], key: object, avoid: set[int], first: _Entry[E]
    ) -> _Entry[E]:
        # The same key always hashes to the same point: walk the ring on from there to the
        # next endpoint not avoided (where the key would go if the avoided ones left).
        entries, ring = self._ring_for(entries)
        mask = (1 << _INDEX_BITS) - 1
        start = bisect.bisect_left(ring, _key_hash(key) << _INDEX_BITS)
        for at in range(start, start + len(ring)):
            entry = entries[ring[at % len(ring)] & mask]
            if id(entry.endpoint) not in avoid:
                return entry
        return first

    def _pick(self, entries: tuple[_Entry[E], ...], key: object) -> _Entry[E]:
        if key is None:
            raise ValueError(
                "ConsistentHash needs a key: endpoint(key), choose(key=...), "
                "or retry(..., key=a function of the call's arguments returning the key)"
            )
        entries, ring = self._ring_for(entries)
        at = bisect.bisect_left(ring, _key_hash(key) << _INDEX_BITS)
        if at == len(ring):
            at = 0
        return entries[ring[at] & ((1 << _INDEX_BITS) - 1)]
