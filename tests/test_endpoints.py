"""EndpointCache and Endpointer: reuse, close exactly once, drain, invalidate on error."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sd_core import (
    BackendUnavailableError,
    EndpointCache,
    Endpointer,
    Event,
    FixedEndpointer,
    FixedInstancer,
    Instance,
    LeastPending,
    RoundRobin,
)
from sd_core._clock import FakeClock, use_clock


class Conn:
    """An endpoint with a closer that counts its closes."""

    def __init__(self, instance: Instance, closes: Counter[int]) -> None:
        self.instance = instance
        self.closes = closes

    def close(self) -> None:
        self.closes[id(self)] += 1


class Tracker:
    """A factory that remembers what it made."""

    def __init__(self) -> None:
        self.made: list[Conn] = []
        self.closes: Counter[int] = Counter()

    def __call__(self, instance: Instance) -> Conn:
        conn = Conn(instance, self.closes)
        self.made.append(conn)
        return conn


@pytest.fixture
def fake() -> Iterator[FakeClock]:
    with use_clock(FakeClock()) as installed:
        assert isinstance(installed, FakeClock)
        yield installed


def inst(n: int, **kw: Any) -> Instance:
    return Instance("10.0.0.1", 1000 + n, id=f"i{n}", **kw)


def test_endpoints_are_reused_created_for_new_and_closed_for_gone() -> None:
    tracker = Tracker()
    cache: EndpointCache[Conn] = EndpointCache(tracker)
    cache.update(Event([inst(1), inst(2)]))
    first = {c.instance.id: c for c in cache.endpoints()}
    cache.update(Event([inst(2), inst(3)]))
    second = {c.instance.id: c for c in cache.endpoints()}
    assert second["i2"] is first["i2"]
    assert len(tracker.made) == 3
    assert cache.settle()
    assert tracker.closes == Counter({id(first["i1"]): 1})
    cache.close()
    assert all(tracker.closes[id(c)] == 1 for c in tracker.made)


def test_same_id_new_address_gets_a_new_endpoint_and_metadata_change_keeps_it() -> None:
    tracker = Tracker()
    cache: EndpointCache[Conn] = EndpointCache(tracker)
    cache.update(Event([inst(1)]))
    (old,) = cache.endpoints()
    cache.update(Event([inst(1, tags={"new"})]))
    assert cache.endpoints() == [old]
    assert cache.entries()[0].instance is not None
    assert cache.entries()[0].instance.tags == {"new"}
    cache.update(Event([Instance("10.0.0.2", 1001, id="i1")]))
    (new,) = cache.endpoints()
    assert cache.settle()
    assert new is not old and tracker.closes[id(old)] == 1
    cache.close()


def test_factory_that_raises_skips_the_instance_and_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = {"i2"}

    def factory(instance: Instance) -> str:
        if instance.id in broken:
            raise RuntimeError("cannot connect")
        return instance.id

    cache: EndpointCache[str] = EndpointCache(factory)
    cache.update(Event([inst(1), inst(2)]))
    assert cache.endpoints() == ["i1"]
    assert "factory failed" in caplog.text
    broken.clear()
    cache.update(Event([inst(1), inst(2), inst(3)]))
    assert sorted(cache.endpoints()) == ["i1", "i2", "i3"]


def test_factory_may_return_endpoint_and_closer() -> None:
    closed: list[str] = []

    class Closer:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    cache: EndpointCache[str] = EndpointCache(lambda i: (i.id, Closer(i.id)))
    cache.update(Event([inst(1)]))
    assert cache.endpoints() == ["i1"]
    cache.update(Event([]))
    assert cache.settle()
    assert closed == ["i1"]


def test_no_factory_means_the_instance_is_the_endpoint() -> None:
    with Endpointer(FixedInstancer([inst(1)])) as endpointer:
        assert endpointer.endpoints() == [inst(1)]


def test_in_flight_endpoint_is_closed_after_its_request_ends() -> None:
    tracker = Tracker()
    instancer = FixedInstancer([inst(1)])
    with Endpointer(instancer, tracker) as endpointer:
        balancer = LeastPending(endpointer)
        with balancer.choose() as conn:
            instancer.set([inst(2)])
            assert endpointer._cache.settle()
            assert tracker.closes[id(conn)] == 0
        assert endpointer._cache.settle()
        assert tracker.closes[id(conn)] == 1


def test_drain_timeout_closes_a_hung_request_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker()
    instancer = FixedInstancer([inst(1)])
    endpointer = Endpointer(instancer, tracker, drain_timeout=0.05)
    choice = RoundRobin(endpointer).choose()
    conn = choice.__enter__()
    instancer.set([])
    drainer = endpointer._cache._drainer
    assert drainer is not None
    drainer.join(5)
    assert endpointer._cache.settle()
    assert tracker.closes[id(conn)] == 1
    assert "drain timeout" in caplog.text
    choice.__exit__(None, None, None)  # the late end of the request closes nothing twice
    assert endpointer._cache.settle()
    assert tracker.closes[id(conn)] == 1
    endpointer.close()


def test_close_waits_for_in_flight_requests_within_the_drain_timeout() -> None:
    tracker = Tracker()
    endpointer = Endpointer(FixedInstancer([inst(1)]), tracker, drain_timeout=5)
    choice = RoundRobin(endpointer).choose()
    conn = choice.__enter__()
    ender = threading.Timer(0.05, choice.__exit__, args=(None, None, None))
    ender.start()
    endpointer.close()
    ender.join()
    assert tracker.closes[id(conn)] == 1


def test_error_keeps_last_good_set_without_invalidation() -> None:
    cache: EndpointCache[Instance] = EndpointCache()
    cache.update(Event([inst(1)]))
    cache.update(Event(error=BackendUnavailableError("down")))
    assert cache.endpoints() == [inst(1)]


def test_invalidate_on_error_closes_everything_after_the_deadline(fake: FakeClock) -> None:
    tracker = Tracker()
    cache: EndpointCache[Conn] = EndpointCache(tracker, invalidate_on_error=10)
    cache.update(Event([inst(1)]))
    cache.update(Event(error=BackendUnavailableError("down")))
    fake.advance(9.9)
    assert len(cache.endpoints()) == 1
    cache.update(Event(error=BackendUnavailableError("still down")))  # deadline not pushed back
    fake.advance(0.2)
    with pytest.raises(BackendUnavailableError, match="down"):
        cache.endpoints()
    assert cache.settle()
    assert tracker.closes[id(tracker.made[0])] == 1
    cache.update(Event([inst(1)]))
    assert len(cache.endpoints()) == 1


def test_invalidate_on_error_recovery_in_time_keeps_endpoints(fake: FakeClock) -> None:
    tracker = Tracker()
    cache: EndpointCache[Conn] = EndpointCache(tracker, invalidate_on_error=1)
    cache.update(Event([inst(1)]))
    cache.update(Event(error=BackendUnavailableError("down")))
    fake.advance(0.5)
    cache.update(Event([inst(1)]))
    fake.advance(4.5)
    assert len(cache.endpoints()) == 1
    assert len(tracker.made) == 1


def test_fixed_endpointer_serves_constant_endpoints() -> None:
    fixed = FixedEndpointer(["a", "b"])
    assert fixed.endpoints() == ["a", "b"]
    balancer = RoundRobin(fixed)
    assert [balancer.endpoint() for _ in range(3)] == ["a", "b", "a"]


instances = st.builds(
    Instance,
    host=st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    port=st.integers(1, 4),
    id=st.sampled_from(["a", "b", "c", "d", "e"]),
    tags=st.frozensets(st.sampled_from(["x", "y"])),
)
events = st.one_of(
    st.lists(instances, max_size=6).map(Event),
    st.just(Event(error=BackendUnavailableError("down"))),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, min_size=1, max_size=12), st.booleans())
def test_any_sequence_of_events_serves_the_last_set_and_closes_each_endpoint_once(
    sequence: list[Event], invalidate: bool
) -> None:
    tracker = Tracker()
    cache: EndpointCache[Conn] = EndpointCache(
        tracker, invalidate_on_error=0 if invalidate else None
    )
    last_good: Event | None = None
    for event in sequence:
        cache.update(event)
        if event.ok:
            last_good = event
    final = sequence[-1]
    if final.ok or not invalidate:
        expected: dict[str, tuple[str, int]] = {}
        for instance in last_good.instances if last_good else ():
            expected.setdefault(instance.id, (instance.host, instance.port))
        got = {c.instance.id: (c.instance.host, c.instance.port) for c in cache.endpoints()}
        assert got == expected
        assert cache.settle()
        live = {id(c) for c in cache.endpoints()}
        assert all(tracker.closes[id(c)] == (0 if id(c) in live else 1) for c in tracker.made)
    else:
        with pytest.raises(BackendUnavailableError):
            cache.endpoints()
    cache.close()
    assert all(tracker.closes[id(c)] == 1 for c in tracker.made)


async def test_async_close_drains_without_blocking_the_loop() -> None:
    import asyncio

    tracker = Tracker()
    async with Endpointer(FixedInstancer([inst(1)]), tracker, drain_timeout=5) as endpointer:
        choice = RoundRobin(endpointer).choose()
        conn = choice.__enter__()
        asyncio.get_running_loop().call_later(0.05, choice.__exit__, None, None, None)
    assert tracker.closes[id(conn)] == 1


def test_a_hung_request_is_closed_at_the_drain_timeout_in_clock_time(fake: FakeClock) -> None:
    tracker = Tracker()
    instancer = FixedInstancer([inst(1)])
    endpointer = Endpointer(instancer, tracker, drain_timeout=60)
    choice = RoundRobin(endpointer).choose()
    conn = choice.__enter__()
    instancer.set([])
    drainer = endpointer._cache._drainer
    assert drainer is not None
    fake.advance(59)
    assert endpointer._cache.settle(0) and tracker.closes[id(conn)] == 0
    fake.advance(2)
    drainer.join(5)
    assert endpointer._cache.settle()
    assert tracker.closes[id(conn)] == 1
    choice.__exit__(None, None, None)
    endpointer.close()
