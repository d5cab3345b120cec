"""ConsistentHash: a ring that follows the set without rebuilding it, and the update path it
sits on (event -> instancer -> endpointer -> ring)."""

from __future__ import annotations

import bisect
import gc
import hashlib
import random
import sys
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

import sd_core._balance.consistent_hash as ring_module
from sd_core import (
    BackendUnavailableError,
    ConsistentHash,
    EndpointCache,
    Endpointer,
    Event,
    FixedEndpointer,
    FixedInstancer,
    Instance,
)
from sd_core._balance.consistent_hash import _key_hash, _Ring
from sd_core._clock import FakeClock, use_clock

KEYS = [f"user-{n}" for n in range(20_000)]


def members(n: int, prefix: str = "i") -> list[Instance]:
    return [Instance("10.0.0.1", 1000 + k, id=f"{prefix}{k}") for k in range(n)]


def owners(balancer: ConsistentHash[Instance], keys: Sequence[str] = KEYS) -> dict[str, str]:
    return {key: balancer.endpoint(key).id for key in keys}


def classic_owner(ids: Sequence[str], replicas: int) -> Callable[[str], str]:
    """The textbook ring (ketama's placement), built whole: what the ring must always agree
    with, whatever path of updates led to the set."""
    points: list[tuple[int, str]] = []
    for ident in ids:
        hashes: list[int] = []
        for r in range((replicas + 3) // 4):
            digest = hashlib.md5(f"{ident}-{r}".encode(), usedforsecurity=False).digest()
            hashes += [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
        points += [(h, ident) for h in hashes[:replicas]]
    points.sort()

    def owner(key: str) -> str:
        at = bisect.bisect_left(points, (_key_hash(key), ""))
        return points[at % len(points)][1]

    return owner


# -- movement ------------------------------------------------------------------------------


def test_removing_one_of_n_moves_only_its_keys_about_one_in_n() -> None:
    instancer = FixedInstancer(members(200))
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer)
        before = owners(balancer)
        instancer.set([i for i in members(200) if i.id != "i17"])
        after = owners(balancer)
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved == {key for key in KEYS if before[key] == "i17"}
    assert 0.2 / 200 < len(moved) / len(KEYS) < 3 / 200  # about 1/N (100 points: +-30 %)


def test_adding_one_takes_keys_only_for_itself() -> None:
    instancer = FixedInstancer(members(200))
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer)
        before = owners(balancer)
        instancer.set([*members(200), Instance("10.0.0.9", 9000, id="newcomer")])
        after = owners(balancer)
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved and all(after[key] == "newcomer" for key in moved)
    assert len(moved) / len(KEYS) < 3 / 201


@pytest.mark.parametrize("replicas", [1, 3, 100, 160])
def test_the_ring_is_the_classic_ring_whatever_path_led_to_the_set(replicas: int) -> None:
    rng = random.Random(replicas)
    pool = members(120, "p")
    current = rng.sample(pool, 40)
    instancer = FixedInstancer(current)
    with Endpointer(instancer) as endpointer:
        churned = ConsistentHash(endpointer, replicas=replicas)
        for _ in range(60):  # comings and goings, one or several at a time
            if rng.random() < 0.5 and len(current) > 1:
                for gone in rng.sample(current, rng.randint(1, min(5, len(current) - 1))):
                    current.remove(gone)
            else:
                current += rng.sample([i for i in pool if i not in current], rng.randint(1, 5))
            instancer.set(current)
        fresh = ConsistentHash(endpointer, replicas=replicas)  # built from the final set at once
        classic = classic_owner([i.id for i in current], replicas)
        keys = KEYS[:3000]
        assert owners(churned, keys) == owners(fresh, keys) == {k: classic(k) for k in keys}


def test_keys_stay_where_the_previous_release_put_them_with_replicas_160() -> None:
    # The ring used to be rebuilt whole (same points, same order of ties): nothing moved.
    ids = [f"node-{n}" for n in range(30)]
    with Endpointer(FixedInstancer([Instance("h", 1 + n, id=i) for n, i in enumerate(ids)])) as e:
        balancer = ConsistentHash(e, replicas=160)
        classic = classic_owner(ids, 160)
        assert all(balancer.endpoint(k).id == classic(k) for k in KEYS[:5000])


def test_ties_between_points_go_to_the_smaller_id_whatever_came_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two endpoints with a point of the same hash: the owner must not depend on history.
    points = {"a": [1000, 5000], "b": [1000, 9000], "c": [7000, 7001]}
    monkeypatch.setattr(ring_module, "_hash_points", lambda name, replicas: points[name])
    a, b, c = (SimpleNamespace(instance=SimpleNamespace(id=n)) for n in "abc")
    first_a, first_b = _Ring(2), _Ring(2)
    first_a.follow((a,), [a], [])
    first_a.follow((a, b, c), [b, c], [])
    first_b.follow((b, c), [b, c], [])
    first_b.follow((a, b, c), [a], [])
    for ring in (first_a, first_b):
        assert ring.owner(999) is a  # the tie at 1000: "a" before "b"
        assert ring.owner(1000) is a
        assert ring.owner(1001) is a  # 5000
        assert ring.owner(6000) is c
        assert ring.owner(9001) is a  # round past the end to the tie
    first_a.follow((b, c), [], [a])
    assert first_a.owner(999) is b


# -- no rebuild, no waiting -----------------------------------------------------------------


def test_a_change_of_tags_or_metadata_costs_nothing() -> None:
    base = members(50)
    instancer = FixedInstancer(base)
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer)
        before = owners(balancer, KEYS[:2000])
        snapshot = balancer._ring.snapshot
        retagged = [
            Instance(i.host, i.port, id=i.id, tags=frozenset({"canary"}), meta={"v": "2"}, weight=3)
            for i in base
        ]
        instancer.set(retagged)
        latest = endpointer._cache.entries()[0].instance
        assert latest is not None and latest.tags == {"canary"}  # the set changed
        assert balancer._ring.snapshot is snapshot  # the ring did not
        assert owners(balancer, KEYS[:2000]) == before


def test_an_update_touches_only_the_buckets_of_the_points_that_changed() -> None:
    base = members(2000)
    instancer = FixedInstancer(base)
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer, replicas=100)
        old = balancer._ring.snapshot
        assert len(old.buckets) >= 512
        instancer.set([*base[:-1], Instance("10.0.0.2", 80, id="replacement")])
        new = balancer._ring.snapshot
    assert new.shift == old.shift
    changed = sum(a is not b for a, b in zip(old.buckets, new.buckets, strict=True))
    assert 0 < changed <= 2 * 100  # the points of the one that left and of the one that came
    assert new.points == old.points and new.live == old.live == 2000


def test_no_pick_waits_for_an_update_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    inside, release = threading.Event(), threading.Event()
    hash_points = ring_module._hash_points

    def slow(name: str, replicas: int) -> list[int]:
        if name == "slow-newcomer":
            inside.set()
            assert release.wait(10), "never released"
        return hash_points(name, replicas)

    monkeypatch.setattr(ring_module, "_hash_points", slow)
    instancer = FixedInstancer(members(100))
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer)
        before = owners(balancer, KEYS[:500])
        updater = threading.Thread(
            target=instancer.set, args=([*members(100), Instance("h", 1, id="slow-newcomer")],)
        )
        updater.start()
        try:
            assert inside.wait(10), "the update did not start"
            # The ring is being updated (held inside): every pick is served from the ring as
            # it stood, at once.
            assert owners(balancer, KEYS[:500]) == before
            with balancer.choose(key="user-1") as endpoint:
                assert endpoint.id == before["user-1"]
            assert not release.is_set() and updater.is_alive()
        finally:
            release.set()
            updater.join(10)
        assert not updater.is_alive()
        after = owners(balancer, KEYS[:500])
    moved = {k for k in before if after[k] != before[k]}
    assert moved and all(after[k] == "slow-newcomer" for k in moved)


def test_a_pick_from_a_replaced_snapshot_picks_from_the_current_set() -> None:
    instancer = FixedInstancer(members(3))
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer)
        stale = endpointer._cache.entries()
        instancer.set(members(4, "new"))
        current = endpointer._cache.entries()
        for key in KEYS[:50]:
            picked = balancer.pick(stale, key)
            assert picked in current and not picked.closed


def test_picks_stay_correct_while_the_set_churns() -> None:
    """Threads pick while another changes the set: every pick is an endpoint of the set
    before or after the change it raced with (a ring never behind the set it serves)."""
    pool = members(60)
    instancer = FixedInstancer(pool[:30])
    stop = threading.Event()
    errors: list[BaseException] = []
    picked = 0
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer)

        def pick() -> None:
            nonlocal picked
            rng = random.Random(threading.get_ident())
            try:
                while not stop.is_set():
                    endpoint = balancer.endpoint(rng.choice(KEYS))
                    assert endpoint in pool
                    picked += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=pick) for _ in range(3)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        try:
            for thread in threads:
                thread.start()
            rng = random.Random(7)
            for _ in range(60):
                instancer.set(rng.sample(pool, rng.randint(1, 60)))
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
            sys.setswitchinterval(interval)
        final = [endpoint.id for endpoint in endpointer.endpoints()]
        classic = classic_owner(final, 100)
        assert all(balancer.endpoint(k).id == classic(k) for k in KEYS[:2000])
    assert errors == [] and picked > 100
    assert not any(thread.is_alive() for thread in threads)


# -- retries, fixed endpoints, memory, life -----------------------------------------------------


def test_pick_avoiding_goes_where_the_key_goes_when_the_avoided_leave() -> None:
    instancer = FixedInstancer(members(30))
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer)
        first = {key: balancer.endpoint(key) for key in KEYS[:300]}
        second = {}
        for key in KEYS[:300]:
            with balancer.choose(key=key, avoid=[first[key]]) as endpoint:
                second[key] = endpoint
        without = {key: [i for i in members(30) if i != first[key]] for key in KEYS[:300]}
    for key in KEYS[:300]:
        assert second[key] != first[key]
        assert second[key].id == classic_owner([i.id for i in without[key]], 100)(key)


def test_pick_avoiding_everything_returns_the_owner() -> None:
    with Endpointer(FixedInstancer(members(3))) as endpointer:
        balancer = ConsistentHash(endpointer)
        owner = balancer.endpoint("k")
        with balancer.choose(key="k", avoid=endpointer.endpoints()) as endpoint:
            assert endpoint is owner


def test_fixed_endpoints_are_placed_by_position_and_spread() -> None:
    balancer = ConsistentHash(FixedEndpointer(["a", "b", "c"]))
    spread = Counter(balancer.endpoint(key) for key in KEYS[:3000])
    assert set(spread) == {"a", "b", "c"} and min(spread.values()) > 500
    classic = classic_owner(["0", "1", "2"], 100)
    assert all(balancer.endpoint(k) == "abc"[int(classic(k))] for k in KEYS[:500])


def test_the_ring_costs_less_than_a_kilobyte_per_instance() -> None:
    with Endpointer(FixedInstancer(members(3000))) as endpointer:
        snapshot = ConsistentHash(endpointer)._ring.snapshot
        held = (
            sum(map(sys.getsizeof, snapshot.buckets))
            + sys.getsizeof(snapshot.buckets)
            + sys.getsizeof(snapshot.slots)
            + sys.getsizeof(snapshot.names)  # the names are the instances' own ids
        )
    assert held / 3000 <= 1024


def test_the_ring_empties_with_the_set_and_a_dropped_balancer_stops_following() -> None:
    instancer = FixedInstancer(members(10))
    endpointer = Endpointer(instancer)
    balancer = ConsistentHash(endpointer)
    ring = weakref.ref(balancer._ring)
    kept = ConsistentHash(endpointer)
    del balancer
    gc.collect()
    assert ring() is None
    instancer.set(members(5))  # the cache forgets the follower that is gone
    assert len(endpointer._cache._followers) == 1
    endpointer.close()
    assert kept._ring.snapshot.points == 0 and kept._ring.snapshot.slots == []


def test_a_ring_that_missed_a_change_catches_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower call that failed (it is logged) leaves the ring as it was; the next change
    brings it to the whole set."""
    hash_points = ring_module._hash_points
    broken = True

    def flaky(name: str, replicas: int) -> list[int]:
        if broken and name == "i22":
            raise MemoryError("boom")  # half way through a change
        return hash_points(name, replicas)

    monkeypatch.setattr(ring_module, "_hash_points", flaky)
    instancer = FixedInstancer(members(20))
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer)
        snapshot = balancer._ring.snapshot
        instancer.set(members(25))  # missed
        assert balancer._ring.snapshot is snapshot
        assert len(endpointer.endpoints()) == 25  # the set is served all the same
        broken = False
        instancer.set(members(24))
        classic = classic_owner([f"i{k}" for k in range(24)], 100)
        assert all(balancer.endpoint(k).id == classic(k) for k in KEYS[:2000])


def test_invalidation_empties_the_set_without_a_publish_and_the_ring_follows_later() -> None:
    clock = FakeClock()
    with use_clock(clock):
        cache: EndpointCache[Instance] = EndpointCache(invalidate_on_error=5)
        cache.update(Event(members(8)))
        told: list[tuple[int, int, int]] = []
        cache.follow(
            lambda entries, added, removed: told.append((len(entries), len(added), len(removed)))
        )
        cache.update(Event(error=BackendUnavailableError("down")))
        clock.advance(6)
        assert cache.entries() == ()  # expired: emptied without telling the followers
        cache.update(Event(members(3)))
        cache.close(wait=False)
    assert told == [(8, 8, 0), (3, 3, 8), (0, 0, 3)]


# -- the update path -------------------------------------------------------------------------------


def test_the_cache_tells_followers_what_came_and_went() -> None:
    cache: EndpointCache[Instance] = EndpointCache()
    seen: list[tuple[list[str], list[str], list[str]]] = []

    def ids(entries: Sequence[Any]) -> list[str]:
        return sorted(entry.instance.id for entry in entries)

    def follower(entries: Any, added: Any, removed: Any) -> None:
        seen.append((ids(entries), ids(added), ids(removed)))

    cache.update(Event(members(3)))
    cache.follow(follower)
    cache.update(Event([*members(2), Instance("10.0.0.1", 1002, id="i2", tags=frozenset({"t"}))]))
    cache.update(Event([*members(2), Instance("10.0.0.9", 1002, id="i2")]))  # moved: a new one
    cache.update(Event(members(1)))
    cache.close(wait=False)
    assert seen == [
        (["i0", "i1", "i2"], ["i0", "i1", "i2"], []),
        (["i0", "i1", "i2"], [], []),  # new tags: the same endpoints
        (["i0", "i1", "i2"], ["i2"], ["i2"]),
        (["i0"], [], ["i1", "i2"]),
        ([], [], ["i0"]),
    ]


def test_the_update_reuses_endpoints_and_keeps_the_first_of_a_duplicate_id() -> None:
    made: list[str] = []

    def factory(instance: Instance) -> str:
        made.append(instance.address)
        return instance.address

    cache: EndpointCache[str] = EndpointCache(factory)
    cache.update(Event(members(1000)))
    assert len(made) == 1000
    duplicate = Instance("10.0.0.2", 5, id="i5")  # sorts after the i5 already there
    cache.update(Event([*members(1000), duplicate]))
    assert len(made) == 1000  # nothing new: i5 kept, its duplicate skipped
    assert len(cache.entries()) == 1000 and "10.0.0.2:5" not in cache.endpoints()
    cache.close(wait=False)


def test_an_event_refuses_what_is_not_an_instance_from_any_iterable() -> None:
    def generated() -> Iterator[object]:
        yield Instance("a", 1)
        yield "b:2"

    with pytest.raises(TypeError, match=r"must hold Instance values, got 'b:2'"):
        Event(generated())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got None"):
        Event([Instance("a", 1), None])  # type: ignore[list-item]


def test_same_as_compares_values_not_objects_and_sees_any_difference() -> None:
    base = members(500)
    event = Event(base)
    copy = Event(reversed([Instance(i.host, i.port, id=i.id) for i in base]))
    assert event.same_as(copy) and copy.same_as(event)
    for changed in (
        Instance("10.0.0.1", 1250, id="i250", weight=2),
        Instance("10.0.0.1", 1250, id="i250", meta={"k": "v"}),
        Instance("10.0.0.1", 1251, id="i250"),
    ):
        other = Event([changed if i.id == "i250" else i for i in base])
        assert not event.same_as(other) and not other.same_as(event)
    assert not event.same_as(Event(base[:-1]))
