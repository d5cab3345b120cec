"""Ejecting: outlier ejection around any balancer (ejection, probes and return, the ejected
share, failure rates, growing and forgiven ejection times). Timing runs on the FakeClock."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from sd_core import (
    Balancer,
    Candidate,
    ConsistentHash,
    Ejecting,
    Endpointer,
    FixedEndpointer,
    FixedInstancer,
    Instance,
    LeastPending,
    PeakEwma,
    Random,
    RoundRobin,
    Weighted,
    aretry,
    retry,
)
from sd_core.plugin import FakeClock, use_clock

INNER: list[Callable[[Endpointer[Any]], Balancer[Any]]] = [
    RoundRobin,
    Random,
    LeastPending,
    Weighted,
    PeakEwma,
]


@pytest.fixture
def fake() -> Iterator[FakeClock]:
    with use_clock(FakeClock()) as installed:
        assert isinstance(installed, FakeClock)
        yield installed


class Refused(Exception):
    pass


def calls(
    balancer: Balancer[str],
    count: int,
    failing: set[str],
    *,
    fake: FakeClock | None = None,
    seconds: float = 0.001,
    key: Callable[[int], object] = lambda n: None,
) -> Counter[str]:
    """``count`` calls one after the other, each ``seconds`` long; those on ``failing`` fail."""
    picks = Counter[str]()
    for n in range(count):
        try:
            with balancer.choose(key(n)) as endpoint:
                picks[endpoint] += 1
                if endpoint in failing:
                    raise Refused(endpoint)
                if fake is not None:
                    fake.advance(seconds)
        except Refused:
            pass
    return picks


def failed(balancer: Balancer[str], **kwargs: Any) -> str:
    """A block that raises; the endpoint it ran on."""
    try:
        with balancer.choose(**kwargs) as endpoint:
            raise Refused(endpoint)
    except Refused as error:
        return str(error.args[0])
    raise AssertionError("the block did not raise")  # pragma: no cover


def eject_c(balancer: Ejecting[str], fake: FakeClock) -> None:
    picks = calls(balancer, 30, {"c"}, fake=fake)
    assert balancer.ejected == ["c"]
    assert picks["c"] == 3


# -- ejection and return -----------------------------------------------------------------------


def test_consecutive_failures_eject_and_the_others_take_the_load(fake: FakeClock) -> None:
    balancer = Ejecting(RoundRobin(FixedEndpointer(["a", "b", "c"])), consecutive_failures=3)
    assert balancer.ejected == []
    picks = calls(balancer, 300, {"c"}, fake=fake)
    assert picks["c"] == 3  # every third pick until the third failure in a row
    assert picks["a"] + picks["b"] == 297
    assert balancer.ejected == ["c"]
    assert "1 out" in repr(balancer)


@pytest.mark.parametrize("inner", INNER)
def test_an_ejected_endpoint_is_probed_after_its_ejection_time_and_back_when_it_answers(
    inner: Callable[[Endpointer[str]], Balancer[str]], fake: FakeClock
) -> None:
    balancer = Ejecting(
        inner(FixedEndpointer(["a", "b", "c"])), consecutive_failures=3, ejection_time=30.0
    )
    for _ in range(3):  # c fails three times in a row (whether the balancer likes it or not)
        assert failed(balancer, avoid=["a", "b"]) == "c"
    assert balancer.ejected == ["c"]
    assert calls(balancer, 200, set(), fake=fake)["c"] == 0
    fake.advance(30.0 - 0.2 - 0.01)  # 200 calls of 1 ms went by since the ejection
    assert calls(balancer, 100, set(), fake=fake, seconds=0.0)["c"] == 0
    fake.advance(0.01)
    picks = calls(balancer, 300, set(), fake=fake)  # recovered: back within its ejection time
    assert picks["c"] >= 30
    assert balancer.ejected == []


@pytest.mark.parametrize("inner", INNER)
def test_a_recovered_endpoint_is_back_as_its_ejection_ends_even_if_the_balancer_shuns_it(
    inner: Callable[[Endpointer[str]], Balancer[str]], fake: FakeClock
) -> None:
    # Five failures in a row (the default) make PeakEwma rate c 32 times slower, a penalty
    # that fades over its decay: without a probe of its own, Ejecting would leave c out for
    # seconds past its ejection time while the calls come one at a time.
    balancer = Ejecting(inner(FixedEndpointer(["a", "b", "c"])), ejection_time=30.0)
    for _ in range(5):
        assert failed(balancer, avoid=["a", "b"]) == "c"
    assert balancer.ejected == ["c"]
    fake.advance(1.0)
    assert calls(balancer, 100, set(), fake=fake)["c"] == 0  # c recovers: nobody knows yet
    fake.advance(30.0 - 1.0 - 0.1 - 0.01)
    assert calls(balancer, 10, set(), fake=fake, seconds=0.0)["c"] == 0
    fake.advance(0.02)
    with balancer.choose() as endpoint:  # its ejection ended: the next call probes it
        assert endpoint == "c"
        assert balancer.ejected == ["c"]  # until the probe answers
    assert balancer.ejected == []
    assert calls(balancer, 300, set(), fake=fake)["c"] >= 30  # and it takes its share again


def test_a_probe_that_fails_ejects_it_again_for_longer_up_to_the_maximum(fake: FakeClock) -> None:
    balancer = Ejecting(
        RoundRobin(FixedEndpointer(["a", "b", "c"])),
        consecutive_failures=3,
        ejection_time=30.0,
        max_ejection_time=50.0,
    )
    eject_c(balancer, fake)
    for out_for in (30.0, 50.0, 50.0):  # 30, then 2 x 30 capped at 50, and so on
        fake.advance(out_for - 0.1)
        assert calls(balancer, 30, {"c"}, fake=fake, seconds=0.0)["c"] == 0
        fake.advance(0.1)
        assert calls(balancer, 30, {"c"}, fake=fake, seconds=0.0)["c"] == 1  # the probe, failing
        assert balancer.ejected == ["c"]


def test_one_probe_at_a_time(fake: FakeClock) -> None:
    balancer = Ejecting(LeastPending(FixedEndpointer(["a", "b", "c"])), consecutive_failures=3)
    calls(balancer, 100, {"c"}, fake=fake)
    assert balancer.ejected == ["c"]
    fake.advance(30.0)
    assert balancer.ejected == []
    probe = balancer.choose(avoid=["a", "b"])
    assert probe.__enter__() == "c"
    assert balancer.ejected == ["c"]  # while its probe is in flight
    assert calls(balancer, 100, set(), fake=fake)["c"] == 0
    probe.__exit__(None, None, None)
    assert balancer.ejected == []
    assert calls(balancer, 300, set(), fake=fake)["c"] > 30


def test_ejection_times_grow_and_are_forgiven_while_it_stays_in(fake: FakeClock) -> None:
    def out_for(balancer: Ejecting[str]) -> float:
        """Fail c until it is out; how long it stays out (to the second)."""
        calls(balancer, 30, {"c"}, fake=fake, seconds=0.0)
        assert balancer.ejected == ["c"]
        waited = 0
        while balancer.ejected:
            fake.advance(1.0)
            waited += 1
        return waited

    balancer = Ejecting(
        RoundRobin(FixedEndpointer(["a", "b", "c"])),
        consecutive_failures=3,
        interval=10.0,
        ejection_time=30.0,
    )
    assert out_for(balancer) == 30
    calls(balancer, 30, set(), fake=fake, seconds=0.0)  # the probe answers: back in
    assert out_for(balancer) == 60  # ejected again at once: twice as long
    calls(balancer, 30, set(), fake=fake, seconds=0.0)
    fake.advance(10.0)  # one interval in: one ejection forgiven
    assert out_for(balancer) == 60
    calls(balancer, 30, set(), fake=fake, seconds=0.0)
    fake.advance(25.0)  # two more intervals: all forgiven
    assert out_for(balancer) == 30


# -- how many, and on which evidence -----------------------------------------------------------


def test_at_most_the_max_ejected_share_is_out_and_at_least_one(fake: FakeClock) -> None:
    names = [f"e{i}" for i in range(10)]
    failing = {"e0", "e1", "e2"}
    for share, out in ((0.1, 1), (0.2, 2), (0.5, 3), (0.0, 0)):
        balancer = Ejecting(
            RoundRobin(FixedEndpointer(names)), consecutive_failures=2, max_ejected=share
        )
        calls(balancer, 200, failing, fake=fake, seconds=0.0)
        assert len(balancer.ejected) == out, share
        assert set(balancer.ejected) <= failing
    two = Ejecting(RoundRobin(FixedEndpointer(["a", "b"])), consecutive_failures=2)
    calls(two, 20, {"b"}, fake=fake, seconds=0.0)
    assert two.ejected == ["b"]  # 10 % of 2, rounded up to one


def test_a_failure_rate_over_an_interval_ejects(fake: FakeClock) -> None:
    balancer = Ejecting(
        RoundRobin(FixedEndpointer(["a", "b", "c"])),
        consecutive_failures=5,
        failure_rate=0.5,
        minimum_requests=20,
        interval=10.0,
    )
    attempts = Counter[str]()
    ejections: list[float] = []  # when c went out
    seen_out: set[str] = set()
    for n in range(900):  # 0.1 s a call
        try:
            with balancer.choose() as endpoint:
                attempts[endpoint] += 1
                # c fails 3 of 4 (never 5 in a row), b 1 of 4: only c is over the rate
                if (endpoint == "c" and attempts["c"] % 4) or (
                    endpoint == "b" and attempts["b"] % 4 == 0
                ):
                    raise Refused(endpoint)
        except Refused:
            pass
        out = balancer.ejected
        fake.advance(0.1)
        if out and "c" not in seen_out:
            ejections.append(n / 10)
        seen_out = set(out)
    assert ejections
    assert 10.0 <= ejections[0] <= 21.0  # the first window opens at the first failure
    # Let back in after 30 s, it still fails too often: out again within a window or two.
    assert len(ejections) >= 2
    assert all(
        30.0 <= later - earlier <= 30.0 + 21.0 for earlier, later in itertools.pairwise(ejections)
    )


def test_failure_rate_needs_its_minimum_of_requests(fake: FakeClock) -> None:
    balancer = Ejecting(
        RoundRobin(FixedEndpointer(["a", "b", "c"])),
        consecutive_failures=None,
        failure_rate=0.5,
        minimum_requests=50,
        interval=10.0,
    )
    for _ in range(10):  # c fails all its 40 requests of each window, below the minimum
        calls(balancer, 120, {"c"}, fake=fake, seconds=10.0 / 80)  # 80 of them take 10 s
    assert balancer.ejected == []
    rules_off = Ejecting(
        RoundRobin(FixedEndpointer(["a", "b", "c"])), consecutive_failures=None, failure_rate=None
    )
    calls(rules_off, 300, {"c"}, fake=fake)
    assert rules_off.ejected == []


# -- with every balancer, and with retry ---------------------------------------------------------


@pytest.mark.parametrize("inner", INNER)
def test_retry_loses_no_call_and_the_failing_backend_gets_nothing_after_the_first_second(
    inner: Callable[[Endpointer[Any]], Balancer[Any]], fake: FakeClock
) -> None:
    attempts = Counter[str]()
    late = Counter[str]()
    start = fake.monotonic()

    def backend(name: str) -> Callable[[], str]:
        def call() -> str:
            attempts[name] += 1
            if fake.monotonic() - start >= 1.0:
                late[name] += 1
            if name == "e9":
                raise ConnectionRefusedError(name)
            fake.advance(0.001)
            return name

        return call

    names = [f"e{i}" for i in range(10)]
    instances = [Instance("10.0.0.1", 1000 + i, id=name) for i, name in enumerate(names)]
    with Endpointer(FixedInstancer(instances), lambda i: backend(i.id)) as endpointer:
        call = retry(3, None, Ejecting(inner(endpointer)))
        results = Counter(call() for _ in range(3000))  # any failed call would raise
    assert sum(results.values()) == 3000
    assert "e9" not in results
    assert attempts["e9"] <= 10
    assert late["e9"] / sum(late.values()) <= 0.02


def test_with_consistent_hash_only_the_keys_of_the_ejected_endpoint_move(fake: FakeClock) -> None:
    names = [f"e{i}" for i in range(5)]
    inner = ConsistentHash(FixedEndpointer(names))
    balancer = Ejecting(inner, consecutive_failures=3)
    assert balancer.needs_key
    with pytest.raises(ValueError, match="key"):
        retry(3, 1.0, balancer)
    keys = [f"user-{n}" for n in range(300)]
    before = {key: balancer.endpoint(key) for key in keys}
    victim = before[keys[0]]
    calls(balancer, 10, {victim}, fake=fake, key=lambda n: keys[0])
    assert balancer.ejected == [victim]
    after = {key: balancer.endpoint(key) for key in keys}
    moved = {key for key in keys if after[key] != before[key]}
    assert moved == {key for key in keys if before[key] == victim}
    assert victim not in after.values()
    fake.advance(30.0)
    calls(balancer, 1, set(), fake=fake, key=lambda n: keys[0])  # the probe answers
    assert {key: balancer.endpoint(key) for key in keys} == before


def test_an_endpoint_that_leaves_is_forgotten(fake: FakeClock) -> None:
    three = [Instance("10.0.0.1", 1000 + i, id=name) for i, name in enumerate("abc")]
    instancer = FixedInstancer(three)
    with Endpointer(instancer, lambda i: i.id) as endpointer:
        balancer = Ejecting(RoundRobin(endpointer), consecutive_failures=3)
        eject_c(balancer, fake)
        assert instancer.set(three[:2])
        calls(balancer, 10, set(), fake=fake)
        assert balancer.ejected == []
        assert instancer.set(three)  # back as a new endpoint: nothing held against it
        assert calls(balancer, 30, set(), fake=fake)["c"] == 10


async def test_aretry_and_achoose_eject_too(fake: FakeClock) -> None:
    def backend(name: str) -> Callable[[], Any]:
        async def call() -> str:
            if name == "c":
                raise ConnectionRefusedError(name)
            return name

        return call

    instances = [Instance("10.0.0.1", 1000 + i, id=name) for i, name in enumerate("abc")]
    async with Endpointer(FixedInstancer(instances), lambda i: backend(i.id)) as endpointer:
        balancer = Ejecting(RoundRobin(endpointer), consecutive_failures=3)
        call = aretry(3, None, balancer)
        assert {await call() for _ in range(30)} == {"a", "b"}
        assert [e.__name__ for e in balancer.ejected] == ["call"]
        async with balancer.achoose() as endpoint:
            assert await endpoint() in {"a", "b"}


def test_it_forwards_timing_and_outcomes_to_the_balancer_it_wraps(fake: FakeClock) -> None:
    seen: list[tuple[str, bool]] = []

    class Noting(RoundRobin[str]):
        def observe(self, candidate: Candidate[str], failed: bool) -> None:
            seen.append((candidate.endpoint, failed))

    endpointer = FixedEndpointer(["a", "b"])
    calls(Ejecting(Noting(endpointer)), 4, {"b"}, fake=fake)
    assert seen == [("a", False), ("b", True), ("a", False), ("b", True)]
    endpointer = FixedEndpointer(["a", "b"])
    timed = Ejecting(PeakEwma(endpointer, decay=3.0))
    assert timed.latency_decay == 3.0
    calls(timed, 10, set(), fake=fake, seconds=0.05)
    assert all(c.service_time == pytest.approx(0.05) for c in endpointer._cache.entries())


def test_threads_keep_the_counts_exact_and_eject() -> None:
    endpointer = FixedEndpointer(["a", "b", "c", "d"])
    balancer = Ejecting(LeastPending(endpointer), max_ejected=0.25)
    go = threading.Barrier(8)

    def work() -> None:
        go.wait(5)
        calls(balancer, 300, {"d"})

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    entries = endpointer._cache.entries()
    assert sum(e.successes + e.failures for e in entries) == 2400
    assert all(e.pending == 0 for e in entries)
    assert balancer.ejected == ["d"]
    assert sum(e.failures for e in entries) < 100


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("consecutive_failures", 0),
        ("consecutive_failures", True),
        ("failure_rate", 0),
        ("failure_rate", 1.5),
        ("minimum_requests", 0),
        ("interval", 0),
        ("ejection_time", -1.0),
        ("ejection_time", float("inf")),
        ("max_ejection_time", float("nan")),
        ("max_ejected", 1.5),
        ("max_ejected", -0.1),
    ],
)
def test_arguments_are_checked(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        Ejecting(RoundRobin(FixedEndpointer(["a"])), **{option: value})  # type: ignore[arg-type]


def test_it_wraps_a_balancer() -> None:
    endpointer: Sequence[str] = ["a"]
    with pytest.raises(TypeError, match="Balancer"):
        Ejecting(endpointer)  # type: ignore[arg-type]
