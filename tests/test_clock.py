"""Timing logic on a fake clock: minutes of simulated time in milliseconds of real time."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sd_core import (
    Endpointer,
    FixedInstancer,
    Instance,
    NoEndpointsError,
    RegistrarState,
    Registration,
    RetryError,
    RoundRobin,
    aretry,
    retry,
)
from sd_core._backoff import Backoff
from sd_core._clock import FakeClock, clock, use_clock
from sd_core._watch import WatchContext, WatchInstancer
from sd_core.plugin import BaseRegistrar

A = Instance("10.0.0.1", 1, id="a")
REAL_BOUND = 5.0


@pytest.fixture
def fake() -> Iterator[FakeClock]:
    with use_clock(FakeClock()) as installed:
        assert isinstance(installed, FakeClock)
        yield installed


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_blocked(fake: FakeClock, thread: threading.Thread) -> None:
    """Until ``thread`` waits through the fake clock (bounded in real time)."""
    deadline = time.monotonic() + REAL_BOUND
    while thread.ident not in fake._waiting:
        assert time.monotonic() < deadline, "the thread never waited on the clock"
        time.sleep(0.001)


def test_ten_minutes_of_a_failing_watch_follow_the_capped_backoff(fake: FakeClock) -> None:
    attempts: list[float] = []

    def watch(ctx: WatchContext) -> None:
        attempts.append(clock().monotonic())
        raise ConnectionError("down")

    backoff = Backoff(initial=0.5, maximum=30.0, jitter=0.2)
    instancer = WatchInstancer(watch, name="down", backoff=backoff)
    try:
        wait_blocked(fake, instancer._thread)
        started = time.monotonic()
        for _ in range(600):
            fake.advance(1.0)
        real = time.monotonic() - started
    finally:
        instancer.stop()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) >= 20, attempts  # about 6 quick ones, then one each 24-36 s
    assert all(gap <= 30 * 1.2 + 1 for gap in gaps)
    assert gaps[:4] == sorted(gaps[:4])  # growing at first
    assert max(gaps) >= 24  # and capped
    assert real < 30, f"600 simulated seconds took {real:.1f} real seconds"


class CountingRegistrar(BaseRegistrar):
    """A registrar over memory whose renewals the test counts or makes fail."""

    backend_name = "memory"

    def __init__(self, registration: Registration) -> None:
        super().__init__(registration)
        self.renewals: list[float] = []
        self.down = False

    def _backend_register(self) -> None:
        pass

    def _backend_deregister(self) -> None:
        pass

    def _backend_keepalive(self) -> bool:
        if self.down:
            raise ConnectionError("backend down")
        self.renewals.append(clock().monotonic())
        return True


def test_a_registrar_renews_at_a_third_of_its_ttl_and_fails_after_its_ttl(fake: FakeClock) -> None:
    registrar = CountingRegistrar(Registration("web", "127.0.0.1", 1, ttl=30))
    with registrar:
        wait_blocked(fake, registrar._thread)  # type: ignore[arg-type]
        for _ in range(300):  # five minutes
            fake.advance(1.0)
        assert len(registrar.renewals) == 30
        assert {round(b - a) for a, b in itertools.pairwise(registrar.renewals)} == {10}
        registrar.down = True
        states = []
        for _ in range(60):
            fake.advance(1.0)
            states.append(registrar.health.state)
        assert RegistrarState.RENEWING in states
        assert states[-1] is RegistrarState.FAILING
        first_failing = fake.monotonic() - 60 + states.index(RegistrarState.FAILING) + 1
        assert first_failing - registrar.renewals[-1] >= 30  # failing only once the TTL passed
        registrar.down = False


def test_choose_waits_its_timeout_in_clock_time(fake: FakeClock) -> None:
    with Endpointer(FixedInstancer([])) as endpointer:
        balancer = RoundRobin(endpointer)

        def choose() -> object:
            with balancer.choose(timeout=60) as endpoint:
                return endpoint

        thread, outcome = in_thread(choose)
        wait_blocked(fake, thread)
        fake.advance(59)
        assert thread.is_alive() and outcome == []
        fake.advance(2)
        thread.join(REAL_BOUND)
        assert isinstance(outcome[0], NoEndpointsError)


def test_a_subscription_get_times_out_in_clock_time(fake: FakeClock) -> None:
    instancer = FixedInstancer([A])
    with instancer.subscribe() as sub:
        sub.get(0)
        thread, outcome = in_thread(lambda: sub.get(100))
        wait_blocked(fake, thread)
        fake.advance(99)
        assert thread.is_alive()
        fake.advance(1)
        thread.join(REAL_BOUND)
        assert isinstance(outcome[0], TimeoutError)


def test_retry_gives_up_at_its_deadline_in_clock_time(fake: FakeClock) -> None:
    with Endpointer(FixedInstancer([])) as endpointer:
        call = retry(3, 30, RoundRobin(endpointer))
        thread, outcome = in_thread(call)
        wait_blocked(fake, thread)
        fake.advance(29)
        assert thread.is_alive()
        fake.advance(2)
        thread.join(REAL_BOUND)
        assert isinstance(outcome[0], RetryError)


async def test_aretry_cancels_an_attempt_at_its_deadline_in_clock_time(fake: FakeClock) -> None:
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await clock().sleep(3600)
        return "never"

    with Endpointer(FixedInstancer([A]), lambda instance: slow) as endpointer:
        call = aretry(5, 60, RoundRobin(endpointer))
        task = asyncio.ensure_future(call())
        while not fake._sleepers:
            await asyncio.sleep(0.001)
        await asyncio.to_thread(fake.advance, 61)
        with pytest.raises(RetryError) as info:
            await asyncio.wait_for(task, REAL_BOUND)
    assert calls == 1
    assert isinstance(info.value.exceptions[0], TimeoutError)
