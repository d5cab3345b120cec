"""Latency-aware balancing: the timing of choose() blocks (service_time), PeakEwma's choice by
expected wait, and the observe() hook. Timing logic runs on the FakeClock."""

from __future__ import annotations

import heapq
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import sd_core
from sd_core import (
    Balancer,
    Candidate,
    Endpointer,
    FixedEndpointer,
    FixedInstancer,
    Instance,
    LeastPending,
    PeakEwma,
)
from sd_core.plugin import Clock, FakeClock, use_clock


@pytest.fixture
def fake() -> Iterator[FakeClock]:
    with use_clock(FakeClock()) as installed:
        assert isinstance(installed, FakeClock)
        yield installed


def candidate(endpointer: Endpointer[Any], endpoint: object) -> Candidate[Any]:
    (found,) = [c for c in endpointer._cache.entries() if c.endpoint == endpoint]
    return found


def others(endpointer: Endpointer[str], endpoint: str) -> list[str]:
    return [e for e in endpointer.endpoints() if e != endpoint]


def timed(
    fake: FakeClock, balancer: Balancer[str], endpointer: Endpointer[str], on: str, seconds: float
) -> None:
    """A block of ``seconds`` on endpoint ``on`` (the others avoided)."""
    with balancer.choose(avoid=others(endpointer, on)) as endpoint:
        assert endpoint == on
        fake.advance(seconds)


class Refused(Exception):
    pass


def failed(balancer: Balancer[str], fake: FakeClock, seconds: float, **kwargs: Any) -> str:
    """A block of ``seconds`` that raises; the endpoint it ran on."""
    try:
        with balancer.choose(**kwargs) as endpoint:
            fake.advance(seconds)
            raise Refused(endpoint)
    except Refused as error:
        return str(error.args[0])
    raise AssertionError("the block did not raise")  # pragma: no cover


# -- service_time ------------------------------------------------------------------------------


def test_only_the_balancers_that_ask_are_timed(fake: FakeClock) -> None:
    endpointer = FixedEndpointer(["a"])
    with LeastPending(endpointer).choose():
        fake.advance(0.25)
    a = candidate(endpointer, "a")
    assert (a.service_time, a.measured_at, a.successes) == (0.0, 0.0, 1)
    with PeakEwma(endpointer).choose():
        fake.advance(0.25)
    assert a.service_time == pytest.approx(0.25)
    assert a.measured_at == fake.monotonic()


def test_service_time_is_a_peak_ewma_with_the_balancers_decay(fake: FakeClock) -> None:
    endpointer = FixedEndpointer(["a"])
    balancer = PeakEwma(endpointer, decay=10.0)
    a = candidate(endpointer, "a")
    timed(fake, balancer, endpointer, "a", 0.1)
    assert a.service_time == pytest.approx(0.1)
    fake.advance(0.98)
    timed(fake, balancer, endpointer, "a", 0.02)  # 1 s after the previous sample ended
    kept = math.exp(-1.0 / 10.0)
    assert a.service_time == pytest.approx(0.1 * kept + 0.02 * (1 - kept))
    timed(fake, balancer, endpointer, "a", 0.5)  # a peak replaces it at once
    assert a.service_time == pytest.approx(0.5)
    timed(fake, balancer, endpointer, "a", 0.02)  # right after: it moves by 2 % at least
    assert a.service_time == pytest.approx(0.5 * 0.98 + 0.02 * 0.02)
    timed(fake, balancer, endpointer, "a", 0.5)
    quick = PeakEwma(endpointer, decay=0.5)
    fake.advance(0.98)
    timed(fake, quick, endpointer, "a", 0.02)
    kept = math.exp(-1.0 / 0.5)
    assert a.service_time == pytest.approx(0.5 * kept + 0.02 * (1 - kept))


def test_a_sample_is_divided_by_the_requests_in_flight_when_it_began(fake: FakeClock) -> None:
    endpointer = FixedEndpointer(["a"])
    balancer = PeakEwma(endpointer)
    a = candidate(endpointer, "a")
    first = balancer.choose()
    first.__enter__()
    with balancer.choose():  # began behind the first: 2 in flight
        fake.advance(0.2)
    assert a.service_time == pytest.approx(0.1)
    first.__exit__(None, None, None)  # alone when it began: 0.2 s a request
    assert a.service_time == pytest.approx(0.2)
    assert a.pending == 0


def test_a_failure_never_lowers_the_estimate_and_failures_in_a_row_are_counted(
    fake: FakeClock,
) -> None:
    endpointer = FixedEndpointer(["a"])
    balancer = PeakEwma(endpointer)
    a = candidate(endpointer, "a")
    timed(fake, balancer, endpointer, "a", 0.1)
    for count in (1, 2):
        fake.advance(5.0)
        assert failed(balancer, fake, 0.001) == "a"
        assert a.service_time == pytest.approx(0.1)
        assert a.consecutive_failures == count
    assert failed(balancer, fake, 0.3) == "a"  # a slow failure is a peak all the same
    assert a.service_time == pytest.approx(0.3)
    timed(fake, balancer, endpointer, "a", 0.3)
    assert (a.consecutive_failures, a.failures, a.successes) == (0, 3, 2)


async def test_achoose_is_timed_too(fake: FakeClock) -> None:
    endpointer = FixedEndpointer(["a"])
    balancer = PeakEwma(endpointer)
    async with balancer.achoose(timeout=1) as endpoint:
        assert endpoint == "a"
        fake.advance(0.125)
    a = candidate(endpointer, "a")
    assert a.service_time == pytest.approx(0.125)
    assert a.successes == 1


# -- PeakEwma's choice -------------------------------------------------------------------------


def test_picks_the_least_expected_wait(fake: FakeClock) -> None:
    endpointer = FixedEndpointer(["a", "b", "c"])
    balancer = PeakEwma(endpointer)
    blocks = [balancer.choose(avoid=others(endpointer, e)) for e in ("a", "b", "c")]
    for block in blocks:
        block.__enter__()
    fake.advance(0.01)
    for block in blocks[:2]:
        block.__exit__(None, None, None)  # a and b: 10 ms a request
    fake.advance(0.085)
    blocks[2].__exit__(None, None, None)  # c: 95 ms
    assert {balancer.endpoint() for _ in range(50)} == {"a", "b"}
    opened = []
    for _ in range(18):  # a and b fill up to 9 in flight each: 10 ms x 10 > 95 ms
        block = balancer.choose()
        opened.append((block, block.__enter__()))
    assert Counter(endpoint for _, endpoint in opened) == {"a": 9, "b": 9}
    with balancer.choose() as endpoint:
        assert endpoint == "c"
    for block, _ in opened:
        block.__exit__(None, None, None)


def test_a_new_endpoint_is_tried_first_then_waits_for_its_first_answer(fake: FakeClock) -> None:
    two = [Instance("10.0.0.1", 1, id="a"), Instance("10.0.0.1", 2, id="b")]
    instancer = FixedInstancer(two)
    with Endpointer(instancer, lambda instance: instance.id) as endpointer:
        balancer = PeakEwma(endpointer)
        for name in ("a", "b"):
            timed(fake, balancer, endpointer, name, 0.01)
        assert instancer.set([*two, Instance("10.0.0.1", 3, id="c")])
        first = balancer.choose()
        assert first.__enter__() == "c"
        assert {balancer.endpoint() for _ in range(50)} == {"a", "b"}
        fake.advance(0.005)
        first.__exit__(None, None, None)
        assert candidate(endpointer, "c").service_time == pytest.approx(0.005)
        assert balancer.endpoint() == "c"


def test_an_endpoint_left_alone_is_tried_again_as_its_estimate_decays(fake: FakeClock) -> None:
    endpointer = FixedEndpointer(["a", "c"])
    balancer = PeakEwma(endpointer, decay=10.0)
    timed(fake, balancer, endpointer, "c", 1.0)  # one slow answer: 1 s
    timed(fake, balancer, endpointer, "a", 0.01)
    back = None
    for second in range(1, 80):
        fake.advance(0.99)
        timed(fake, balancer, endpointer, "a", 0.01)  # a: 10 ms, measured just now
        if balancer.endpoint() == "c":
            back = second
            break
    # c: exp(-t / 10) s, below a's 10 ms once t > 10 ln(100) = 46 s
    assert back is not None
    assert 46 <= back <= 47


def test_failing_fast_does_not_attract_requests(fake: FakeClock) -> None:
    def share_of_c(balancer: Balancer[str]) -> float:
        picks = Counter[str]()
        for _ in range(300):
            try:
                with balancer.choose() as endpoint:
                    picks[endpoint] += 1
                    if endpoint == "c":
                        raise ConnectionRefusedError
                    fake.advance(0.01)
            except ConnectionRefusedError:
                pass
        return picks["c"] / 300

    assert share_of_c(PeakEwma(FixedEndpointer(["a", "b", "c"]))) < 0.02
    assert share_of_c(LeastPending(FixedEndpointer(["a", "b", "c"]), seed=1)) > 0.2


def test_a_failing_endpoint_is_tried_again_after_a_backoff_and_is_back_once_it_answers(
    fake: FakeClock,
) -> None:
    endpointer = FixedEndpointer(["a", "b", "c"])
    balancer = PeakEwma(endpointer, decay=10.0)
    for name in ("a", "b", "c"):
        timed(fake, balancer, endpointer, name, 0.01)
    for _ in range(3):  # c fails three times in a row: 8 times slower, fading over 1 s
        assert failed(balancer, fake, 0.0, avoid=["a", "b"]) == "c"
    tried_at = None
    for n in range(1000):  # one call after the other, 10 ms each; c answers again
        with balancer.choose() as endpoint:
            fake.advance(0.01)
        if endpoint == "c":
            tried_at = (n + 1) * 0.01
            break
    # 2 ** 3 * exp(-t / 1 s) <= 1 from t = 3 ln 2 = 2.1 s: about k * decay / 14 seconds
    assert tried_at is not None
    assert 2.0 <= tried_at <= 2.3
    assert candidate(endpointer, "c").consecutive_failures == 0
    picks = Counter[str]()
    for _ in range(300):
        with balancer.choose() as endpoint:
            picks[endpoint] += 1
            fake.advance(0.01)
    assert picks["c"] >= 50  # back: it takes its share again


class _SimClock(Clock):
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def _share_of_the_slow_one(make: Callable[[Endpointer[int]], Balancer[int]]) -> float:
    """5 FIFO backends (4 x 1 ms, one 10 ms), 8 calls in flight, 3,000 calls: the share of the
    calls the slow one got."""
    service = [0.001] * 4 + [0.010]
    sim = _SimClock()
    free = [0.0] * 5
    with use_clock(sim):
        balancer = make(FixedEndpointer(list(range(5))))
        events: list[tuple[float, int, Any]] = []
        picks = Counter[int]()
        for n in range(3000):
            if len(events) == 8:
                sim.now, _, block = heapq.heappop(events)
                block.__exit__(None, None, None)
            block = balancer.choose()
            backend = block.__enter__()
            picks[backend] += 1
            free[backend] = max(sim.now, free[backend]) + service[backend]
            heapq.heappush(events, (free[backend], n, block))
        while events:
            sim.now, _, block = heapq.heappop(events)
            block.__exit__(None, None, None)
    return picks[4] / 3000


def test_routes_around_a_slow_backend() -> None:
    assert _share_of_the_slow_one(lambda e: LeastPending(e, seed=3)) > 0.01
    assert _share_of_the_slow_one(lambda e: PeakEwma(e, seed=3)) < 0.003
    assert _share_of_the_slow_one(lambda e: PeakEwma(e, scan=0, choices=3, seed=3)) < 0.003


def test_above_scan_it_compares_a_sample_and_honours_the_avoid_list(fake: FakeClock) -> None:
    names = [f"e{i}" for i in range(100)]
    endpointer = FixedEndpointer(names)
    balancer = PeakEwma(endpointer, scan=16, choices=3, seed=5)
    assert len({balancer.endpoint() for _ in range(300)}) > 50
    with balancer.choose(avoid=names[1:]) as endpoint:
        assert endpoint == "e0"
    with balancer.choose(avoid=names) as endpoint:  # all avoided: one of them all the same
        assert endpoint in names
    for name in names[:20]:
        timed(fake, balancer, endpointer, name, 0.01)
    assert all(candidate(endpointer, n).service_time > 0 for n in names[:20])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("decay", 0),
        ("decay", -1.0),
        ("decay", math.inf),
        ("decay", math.nan),
        ("decay", True),
        ("choices", 1),
        ("choices", 2.5),
        ("scan", -1),
        ("scan", None),
    ],
)
def test_arguments_are_checked(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        PeakEwma(FixedEndpointer(["a"]), **{option: value})  # type: ignore[arg-type]


def test_threads_keep_the_counts_exact() -> None:
    endpointer = FixedEndpointer([f"e{i}" for i in range(10)])
    balancer = PeakEwma(endpointer)
    start = threading.Barrier(8)

    def work() -> None:
        start.wait(5)
        for _ in range(500):
            with balancer.choose():
                pass

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    entries = endpointer._cache.entries()
    assert not any(thread.is_alive() for thread in threads)
    assert sum(e.successes for e in entries) == 4000
    assert all(e.pending == 0 for e in entries)
    assert all(e.measured_at > 0 for e in entries)


# -- the contract: latency_decay and observe() ----------------------------------------------------


def test_a_balancer_of_ones_own_may_ask_for_timing_and_observe_outcomes(fake: FakeClock) -> None:
    seen: list[tuple[str, bool, int, float]] = []

    class Fastest(Balancer[str]):
        latency_decay = 1.0

        def pick(self, candidates: Sequence[Candidate[str]], key: object) -> Candidate[str]:
            return min(candidates, key=lambda c: c.service_time)

        def observe(self, candidate: Candidate[str], failed: bool) -> None:
            # called after the statistics count the block
            seen.append((candidate.endpoint, failed, candidate.pending, candidate.service_time))

    endpointer = FixedEndpointer(["a", "b"])
    balancer = Fastest(endpointer)
    with balancer.choose(avoid=["b"]):
        fake.advance(0.2)
    assert failed(balancer, fake, 0.1, avoid=["a"]) == "b"
    assert [s[:3] for s in seen] == [("a", False, 0), ("b", True, 0)]
    assert [s[3] for s in seen] == pytest.approx([0.2, 0.1])
    assert balancer.endpoint() == "b"

    class Plain(Balancer[str]):
        def pick(self, candidates: Sequence[Candidate[str]], key: object) -> Candidate[str]:
            return candidates[0]

    assert Plain.latency_decay is None
    with Plain(endpointer).choose():
        fake.advance(5.0)
    assert candidate(endpointer, "a").service_time == pytest.approx(0.2)


def test_the_example_of_the_docs_runs() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "core.md"
    section = docs.read_text().split("### Slow and failing instances", 1)[1].split("\n### ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict[str, Any] = {"__name__": "docs_core_ejecting"}
    exec(compile(block, f"{docs} (Slow and failing instances)", "exec"), namespace)
    assert isinstance(namespace["balancer"], sd_core.Ejecting)
    assert isinstance(namespace["balancer"].balancer, PeakEwma)
