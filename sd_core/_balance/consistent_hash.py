"""ConsistentHash: sharding by a key, with minimal movement when membership changes.

The ring is the classic one (ketama's placement: each endpoint owns ``replicas`` points, md5 of
``"{instance id}-{r}"``, and a key belongs to the first point at or after the key's hash), kept
in a structure that an update changes in place of a rebuild:

- its points are packed 64-bit integers ``(32-bit hash << 24) | slot`` in ``array('Q')``
  buckets, each bucket the points of one range of hashes (8 bytes a point, about 250 a
  bucket); ``slot`` indexes a table of the endpoints, in which an endpoint keeps its slot while
  it stays;
- the cache tells the ring of each change of the set (``EndpointCache.follow``) on its own
  thread, before the new set is served: an endpoint that comes or goes inserts or deletes its
  own points in the buckets they fall in, and nothing else moves; an instance whose tags or
  metadata changed costs nothing;
- every change builds a new snapshot (copies of the touched buckets, of the bucket list and of
  the slot table) and publishes it with one assignment: a pick reads one snapshot and never
  takes a lock or waits for an update.

A ring rather than Maglev or rendezvous hashing: Maglev rebuilds a whole table (about 100 entries
per endpoint) on every change, and rendezvous hashing costs a hash per endpoint per pick (or a
tree of them) where the ring costs one bisection; the ring also gives a natural "next owner"
for a retry (``pick_avoiding``). With the same ``replicas`` (160 before this ring), every key
goes where the ring rebuilt whole sent it.
"""

from __future__ import annotations

import collections
import hashlib
import struct
import threading
from array import array
from bisect import bisect_left
from collections.abc import Container, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

from sd_core._cache import Candidate, follow
from sd_core._endpointer import Endpointer

from .base import Balancer

__all__ = ["ConsistentHash"]

E = TypeVar("E")

_SLOT_BITS = 24  # a point is (32-bit hash << 24) | slot: one sortable integer
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_MAX_SLOTS = 1 << _SLOT_BITS
_FILL = 256  # points per bucket aimed at; more buckets beyond 4x that, fewer below 1/16
_SMALL = 8  # up to this many points into one bucket: inserted one by one, else merged

_md5 = hashlib.md5
_four_words = struct.Struct("<4I").unpack
_first_word = struct.Struct("<I").unpack_from


def _hash_points(name: str, replicas: int) -> list[int]:
    """The ``replicas`` 32-bit points of an endpoint named ``name`` (four per md5 digest)."""
    points: list[int] = []
    for r in range((replicas + 3) // 4):
        data = f"{name}-{r}".encode("utf-8", "surrogatepass")
        points.extend(_four_words(_md5(data, usedforsecurity=False).digest()))
    del points[replicas:]
    return points


def _key_hash(key: object) -> int:
    # "surrogatepass": any str hashes, a lone surrogate ("\ud800") included; for every other
    # str the bytes are the UTF-8 ones, so keys do not move.
    if type(key) is str:
        data = key.encode("utf-8", "surrogatepass")
    else:
        data = key if isinstance(key, bytes) else str(key).encode("utf-8", "surrogatepass")
    return _first_word(_md5(data, usedforsecurity=False).digest())[0]  # type: ignore[no-any-return]


def _bits_for(points: int) -> int:
    """How many leading bits of a hash choose its bucket, for ``points`` points."""
    return max(0, min(24, (points // _FILL).bit_length()))


class _Snapshot(NamedTuple):
    """One state of the ring, never changed once published."""

    buckets: list[array[int]]  # bucket b: the points whose hash >> shift == b, sorted
    shift: int
    slots: list[Any]  # slot -> candidate (None: a free slot)
    names: list[str | None]  # slot -> the name its points were placed by
    live: int  # candidates on the ring
    points: int  # points on the ring


_EMPTY = _Snapshot([array("Q")], 32, [], [], 0, 0)


def _first_at(snapshot: _Snapshot, target: int) -> tuple[int, int]:
    """(bucket, index) of the first point >= ``target``, going round past the end; the ring
    must not be empty."""
    buckets = snapshot.buckets
    b = (target >> _SLOT_BITS) >> snapshot.shift
    bucket = buckets[b]
    at = bisect_left(bucket, target)
    while at == len(bucket):
        b = (b + 1) % len(buckets)
        bucket = buckets[b]
        at = 0
    return b, at


def _walk(snapshot: _Snapshot, target: int) -> Iterator[int]:
    """The slots of the points from the first >= ``target`` round the ring, once each point;
    points of equal hash in the order of their names (a placement that does not depend on the
    order in which endpoints came)."""
    buckets = snapshot.buckets
    names = snapshot.names
    b, at = _first_at(snapshot, target)
    count = len(buckets)
    for step in range(count + 1):
        bucket = buckets[(b + step) % count]
        end = len(bucket) if step < count else at
        i = at if step == 0 else 0
        while i < end:
            point = bucket[i]
            j = i + 1
            while j < len(bucket) and bucket[j] >> _SLOT_BITS == point >> _SLOT_BITS:
                j += 1
            if j == i + 1:
                yield point & _SLOT_MASK
            else:
                tied = [p & _SLOT_MASK for p in bucket[i:j]]
                yield from sorted(tied, key=lambda slot: str(names[slot]))
            i = j


class _Ring:
    """The ring of one balancer: updated by the cache's thread, read by picks without a lock."""

    __slots__ = ("__weakref__", "_free", "_lock", "replicas", "snapshot")

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.snapshot = _EMPTY
        self._free: list[int] = []  # free slots, reused before the table grows
        self._lock = threading.Lock()  # orders the updates (there is one thread: a safeguard)

    def owner(self, key_hash: int) -> Any:
        """The candidate owning ``key_hash``, or None when the ring is empty."""
        snapshot = self.snapshot
        buckets, shift, slots, _, _, points = snapshot
        if not points:
            return None
        bucket = buckets[key_hash >> shift]
        at = bisect_left(bucket, key_hash << _SLOT_BITS)
        after = at + 1
        if after < len(bucket):
            point = bucket[at]
            if bucket[after] >> _SLOT_BITS != point >> _SLOT_BITS:  # no tie: the usual case
                return slots[point & _SLOT_MASK]
        elif after == len(bucket):
            return slots[bucket[at] & _SLOT_MASK]
        return slots[next(_walk(snapshot, key_hash << _SLOT_BITS))]

    def follow(
        self,
        entries: tuple[Candidate[Any], ...],
        added: Sequence[Candidate[Any]],
        removed: Sequence[Candidate[Any]],
    ) -> None:
        """Apply a change of the set (the cache calls this before it serves ``entries``)."""
        if not added and not removed and self.snapshot.live == len(entries):
            return  # the same endpoints (tags, metadata or weights changed): nothing to do
        with self._lock:
            self._change(entries, added, removed)
            if self.snapshot.live != len(entries):  # a change was missed (a call that failed)
                self.snapshot, self._free = _EMPTY, []
                self._change(entries, entries, ())

    def _change(
        self,
        entries: tuple[Candidate[Any], ...],
        added: Sequence[Candidate[Any]],
        removed: Sequence[Candidate[Any]],
    ) -> None:
        """Build the next snapshot from the current one and publish it."""
        old = self.snapshot
        replicas = self.replicas
        buckets = list(old.buckets)
        slots = list(old.slots)
        names = list(old.names)
        free = list(self._free)
        shift = old.shift
        live, total = old.live, old.points
        copied: set[int] = set()  # buckets this change copied already: edited in place

        def writable(b: int) -> array[int]:
            if b not in copied:
                copied.add(b)
                buckets[b] = array("Q", buckets[b])
            return buckets[b]

        for candidate in removed:
            slot = _slot_of(old, candidate)
            if slot is None:
                continue  # never placed here
            name = names[slot]
            assert name is not None
            for h in _hash_points(name, replicas):
                bucket = writable(h >> shift)
                point = (h << _SLOT_BITS) | slot
                at = bisect_left(bucket, point)
                if at < len(bucket) and bucket[at] == point:
                    del bucket[at]
                    total -= 1
            slots[slot] = None
            names[slot] = None
            free.append(slot)
            live -= 1

        if added:
            wanted = total + len(added) * replicas
            if wanted > 4 * _FILL * len(buckets):  # about to be crowded: more buckets first
                shift, buckets = _rebucket(buckets, shift, 32 - _bits_for(wanted))
                copied = set(range(len(buckets)))  # all new arrays
            positions: dict[int, int] | None = None
            incoming: dict[int, array[int]] = collections.defaultdict(_no_points)
            for candidate in added:
                instance = candidate.instance
                if instance is not None:
                    name = instance.id
                else:  # a FixedEndpointer's endpoint: named by its position
                    if positions is None:
                        positions = {id(c): i for i, c in enumerate(entries)}
                    name = str(positions.get(id(candidate), len(slots)))
                if free:
                    slot = free.pop()
                    slots[slot] = candidate
                    names[slot] = name
                else:
                    slot = len(slots)
                    if slot >= _MAX_SLOTS:
                        raise ValueError(f"ConsistentHash supports < {_MAX_SLOTS} endpoints")
                    slots.append(candidate)
                    names.append(name)
                live += 1
                for h in _hash_points(name, replicas):
                    incoming[h >> shift].append((h << _SLOT_BITS) | slot)
                total += replicas
            for b, points in incoming.items():
                if len(points) <= _SMALL:
                    bucket = writable(b)
                    for point in points:
                        bucket.insert(bisect_left(bucket, point), point)
                else:
                    points.extend(buckets[b])
                    buckets[b] = array("Q", sorted(points))
                    copied.add(b)

        if len(buckets) > 1 and total * 16 < _FILL * len(buckets):  # sparse: fewer buckets
            shift, buckets = _rebucket(buckets, shift, 32 - _bits_for(total))
        if not live:
            slots, names, free = [], [], []
        self._free = free
        self.snapshot = _Snapshot(buckets, shift, slots, names, live, total)


def _no_points() -> array[int]:
    return array("Q")


def _slot_of(snapshot: _Snapshot, candidate: Candidate[Any]) -> int | None:
    """The slot of ``candidate`` in ``snapshot``: found through its first point (its instance
    id places it), else by a scan of the table; None when it is not there."""
    instance = candidate.instance
    slots = snapshot.slots
    if instance is not None and snapshot.points:
        first = _hash_points(instance.id, 1)[0]
        bucket = snapshot.buckets[first >> snapshot.shift]
        at = bisect_left(bucket, first << _SLOT_BITS)
        while at < len(bucket) and bucket[at] >> _SLOT_BITS == first:
            slot = bucket[at] & _SLOT_MASK
            if slots[slot] is candidate:
                return slot
            at += 1
    for slot, held in enumerate(slots):
        if held is candidate:
            return slot
    return None


def _rebucket(
    buckets: list[array[int]], shift: int, new_shift: int
) -> tuple[int, list[array[int]]]:
    """The same points in the buckets of ``new_shift``: each bucket cut in pieces (more
    buckets) or runs of buckets joined (fewer); the points stay sorted."""
    out: list[array[int]] = []
    if new_shift < shift:
        pieces = 1 << (shift - new_shift)
        for b, bucket in enumerate(buckets):
            start = 0
            for piece in range(1, pieces):
                bound = ((b * pieces + piece) << new_shift) << _SLOT_BITS
                end = bisect_left(bucket, bound, start)
                out.append(bucket[start:end])
                start = end
            out.append(bucket[start:])
    elif new_shift > shift:
        run = 1 << (new_shift - shift)
        for b in range(0, len(buckets), run):
            joined = array("Q")
            for bucket in buckets[b : b + run]:
                joined.extend(bucket)
            out.append(joined)
    else:
        out = list(buckets)
    return new_shift, out


class ConsistentHash(Balancer[E]):
    """Sends every request with the same key to the same endpoint (a hash ring with
    ``replicas`` points per endpoint, placed by instance id).

    When an endpoint leaves, only the keys it owned move; when one joins, it takes keys only
    from the others. A key is required: ``endpoint(key)`` or ``choose(key=...)``; a key is
    ``bytes`` or anything else by its ``str()``. A retry that avoids the endpoint that failed
    goes where the key would go if that endpoint left.

    The ring follows the endpointer: each change of the set updates it on the endpointer's
    thread, before the new set is served, in proportion to what changed (an endpoint that
    comes or goes inserts or deletes its own points; a change of tags or metadata costs
    nothing). A pick never waits: it reads the ring as it stands.
    """

    needs_key = True

    def __init__(self, endpointer: Endpointer[E], replicas: int = 100) -> None:
        super().__init__(endpointer)
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        self._replicas = replicas
        self._ring = _Ring(replicas)
        follow(endpointer, self._ring.follow)  # builds it for the current set, here and now

    def pick(self, candidates: Sequence[Candidate[E]], key: object) -> Candidate[E]:
        """The candidate owning ``key`` on the ring."""
        # _key_hash() and _Ring.owner() inline, for the usual case: a str key, and no other
        # point of the same hash right after the owner's.
        if type(key) is str:
            key_hash: int = _first_word(
                _md5(key.encode("utf-8", "surrogatepass"), usedforsecurity=False).digest()
            )[0]
        else:
            key_hash = _hash_of_key(key)
        ring = self._ring
        snapshot = ring.snapshot
        if snapshot[5]:  # points
            bucket = snapshot[0][key_hash >> snapshot[1]]
            at = bisect_left(bucket, key_hash << _SLOT_BITS)
            if at + 1 < len(bucket):
                point = bucket[at]
                if bucket[at + 1] >> _SLOT_BITS != point >> _SLOT_BITS:
                    return snapshot[2][point & _SLOT_MASK]  # type: ignore[no-any-return]
        owner = ring.owner(key_hash)
        if owner is None:  # the set is being emptied: this snapshot of it is already gone
            return candidates[key_hash % len(candidates)]
        return owner  # type: ignore[no-any-return]

    def pick_avoiding(
        self,
        candidates: Sequence[Candidate[E]],
        key: object,
        avoided: Container[Candidate[E]],
    ) -> Candidate[E]:
        """The owner of ``key``, or when it is avoided the next candidate on the ring that is
        not: where the key would go if the avoided ones left."""
        key_hash = _hash_of_key(key)
        snapshot = self._ring.snapshot
        if not snapshot.points:
            return candidates[key_hash % len(candidates)]
        seen: set[int] = set()
        first: Any = None
        for slot in _walk(snapshot, key_hash << _SLOT_BITS):
            candidate = snapshot.slots[slot]
            if first is None:
                first = candidate
            if candidate not in avoided:
                return candidate  # type: ignore[no-any-return]
            seen.add(slot)
            if len(seen) >= snapshot.live:
                break  # every endpoint is avoided: the owner it is
        return first  # type: ignore[no-any-return]


def _hash_of_key(key: object) -> int:
    if key is None:
        raise ValueError(
            "ConsistentHash needs a key: endpoint(key), choose(key=...), "
            "or retry(..., key=a function of the call's arguments returning the key)"
        )
    return _key_hash(key)
