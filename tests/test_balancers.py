"""Balancers: picking, in-flight accounting, failures, waiting for endpoints."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from sd_core import (
    Balancer,
    ConsistentHash,
    Endpointer,
    FixedEndpointer,
    FixedInstancer,
    Instance,
    LeastPending,
    NoEndpointsError,
    Random,
    RoundRobin,
    Weighted,
)

KINDS: list[type[Balancer[Instance]]] = [RoundRobin, Random, LeastPending, Weighted, ConsistentHash]


def instances(n: int) -> list[Instance]:
    return [Instance("10.0.0.1", 1000 + i, id=f"i{i}") for i in range(n)]


@pytest.mark.parametrize("kind", KINDS)
def test_endpoint_raises_at_once_when_there_are_none(kind: type[Balancer[Instance]]) -> None:
    with Endpointer(FixedInstancer([])) as endpointer:
        balancer = kind(endpointer)
        with pytest.raises(NoEndpointsError):
            balancer.endpoint("k")
        with pytest.raises(NoEndpointsError), balancer.choose(key="k"):
            pass


@pytest.mark.parametrize("kind", KINDS)
def test_choose_counts_in_flight_and_records_failures(kind: type[Balancer[Instance]]) -> None:
    with Endpointer(FixedInstancer(instances(3))) as endpointer:
        balancer = kind(endpointer)
        entries = endpointer._cache.entries()
        with balancer.choose(key="k") as endpoint:
            (entry,) = [e for e in entries if e.endpoint is endpoint]
            assert entry.pending == 1
        assert entry.pending == 0
        with pytest.raises(ZeroDivisionError), balancer.choose(key="k") as endpoint:
            1 / 0  # noqa: B018
        assert sum(e.failures for e in entries) == 1
        assert all(e.pending == 0 for e in entries)


@pytest.mark.parametrize("kind", KINDS)
def test_choose_with_timeout_waits_for_an_endpoint(kind: type[Balancer[Instance]]) -> None:
    instancer = FixedInstancer([])
    with Endpointer(instancer) as endpointer:
        balancer = kind(endpointer)
        timer = threading.Timer(0.05, instancer.set, args=(instances(1),))
        timer.start()
        with balancer.choose(key="k", timeout=5) as endpoint:
            assert endpoint == instances(1)[0]
        timer.join()
        instancer.set([])
        with pytest.raises(NoEndpointsError), balancer.choose(key="k", timeout=0.05):
            pass


@pytest.mark.parametrize("kind", KINDS)
async def test_achoose_waits_without_blocking_the_loop(kind: type[Balancer[Instance]]) -> None:
    instancer = FixedInstancer([])
    with Endpointer(instancer) as endpointer:
        balancer = kind(endpointer)
        loop = asyncio.get_running_loop()
        loop.call_later(
            0.05, lambda: threading.Thread(target=instancer.set, args=(instances(2),)).start()
        )
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        async with balancer.achoose(key="k", timeout=5) as endpoint:
            assert endpoint in instances(2)
        task.cancel()
        assert ticks > 2
        instancer.set([])
        with pytest.raises(NoEndpointsError):
            async with balancer.achoose(key="k", timeout=0.05):
                pass


def test_round_robin_cycles_in_order() -> None:
    balancer = RoundRobin(FixedEndpointer(["a", "b", "c"]))
    assert [balancer.endpoint() for _ in range(7)] == list("abcabca")


def test_random_is_repeatable_with_a_seed_and_covers_all() -> None:
    fixed = FixedEndpointer(list(range(5)))
    first = [Random(fixed, seed=7).endpoint() for _ in range(1)]
    a, b = Random(fixed, seed=7), Random(fixed, seed=7)
    seq = [a.endpoint() for _ in range(200)]
    assert seq == [b.endpoint() for _ in range(200)]
    assert set(seq) == set(range(5)) and first[0] == seq[0]


def test_least_pending_avoids_the_busy_endpoint() -> None:
    balancer = LeastPending(FixedEndpointer(["busy", "idle"]), seed=1)
    busy = [balancer.choose() for _ in range(1)]
    held = busy[0].__enter__()
    picks = Counter()
    for _ in range(50):
        with balancer.choose() as endpoint:
            picks[endpoint] += 1
    other = "idle" if held == "busy" else "busy"
    assert picks == Counter({other: 50})
    busy[0].__exit__(None, None, None)


def test_weighted_follows_weights_smoothly() -> None:
    weighted = [
        Instance("h", 1, id="a", weight=5),
        Instance("h", 2, id="b", weight=1),
        Instance("h", 3, id="c", weight=1),
        Instance("h", 4, id="z", weight=0),
    ]
    with Endpointer(FixedInstancer(weighted)) as endpointer:
        balancer = Weighted(endpointer)
        picks = [balancer.endpoint().id for _ in range(70)]
    for start in range(0, 70, 7):
        assert Counter(picks[start : start + 7]) == Counter({"a": 5, "b": 1, "c": 1})
    longest = max(len(run) for run in "".join(picks).replace("b", " ").replace("c", " ").split())
    assert longest <= 5


def test_weighted_with_all_weights_zero_picks_evenly() -> None:
    zero = [Instance("h", i + 1, weight=0) for i in range(3)]
    with Endpointer(FixedInstancer(zero)) as endpointer:
        balancer = Weighted(endpointer)
        assert Counter(balancer.endpoint().port for _ in range(30)) == Counter(
            {1: 10, 2: 10, 3: 10}
        )


def test_consistent_hash_moves_only_the_keys_of_the_instance_that_left() -> None:
    instancer = FixedInstancer(instances(10))
    keys = [f"user-{k}" for k in range(10_000)]
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer)
        before = {k: balancer.endpoint(k).id for k in keys}
        assert len(set(before.values())) == 10
        assert all(balancer.endpoint(k).id == before[k] for k in keys[:100])
        instancer.set([i for i in instances(10) if i.id != "i3"])
        after = {k: balancer.endpoint(k).id for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert moved == {k for k in keys if before[k] == "i3"}
    assert 500 < len(moved) < 1500


def test_consistent_hash_needs_a_key() -> None:
    balancer = ConsistentHash(FixedEndpointer(["a"]))
    with pytest.raises(ValueError, match="needs a key"):
        balancer.endpoint()


def test_a_removed_endpoint_is_never_handed_out_after_close() -> None:
    instancer = FixedInstancer(instances(2))
    closed: list[str] = []

    class Conn:
        def __init__(self, i: Instance) -> None:
            self.id = i.id
            self.closed = False

        def close(self) -> None:
            self.closed = True
            closed.append(self.id)

    with Endpointer(instancer, Conn) as endpointer:
        balancer = RoundRobin(endpointer)
        instancer.set(instances(1))
        for _ in range(10):
            with balancer.choose() as conn:
                assert not conn.closed
    assert closed.count("i1") == 1


def test_round_robin_turn_stays_even_across_set_changes() -> None:
    instancer = FixedInstancer(instances(3))
    with Endpointer(instancer) as endpointer:
        balancer = RoundRobin(endpointer)
        assert {balancer.endpoint().id for _ in range(3)} == {"i0", "i1", "i2"}
        instancer.set(instances(5))
        picks = Counter(balancer.endpoint().id for _ in range(50))
        assert picks == Counter({f"i{n}": 10 for n in range(5)})
        with balancer.choose() as chosen:
            assert chosen in instances(5)
