"""retry and aretry."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sd_core import (
    Endpointer,
    FixedEndpointer,
    FixedInstancer,
    NoEndpointsError,
    RetryError,
    RoundRobin,
    SDError,
    aretry,
    retry,
)


def failing(name: str) -> object:
    def call(x: int) -> str:
        raise ConnectionError(f"{name} refused {x}")

    return call


def ok(x: int) -> str:
    return f"ok {x}"


def test_retry_moves_on_to_another_endpoint_until_success() -> None:
    call = retry(3, 5, RoundRobin(FixedEndpointer([failing("a"), failing("b"), ok])))
    assert call(1) == "ok 1"


def test_retry_gives_up_after_max_attempts_with_every_error() -> None:
    balancer = RoundRobin(FixedEndpointer([failing("a"), failing("b")]))
    with pytest.raises(RetryError) as info:
        retry(3, 5, balancer)(7)
    err = info.value
    assert isinstance(err, SDError) and isinstance(err, ExceptionGroup)
    assert [str(e) for e in err.exceptions] == ["a refused 7", "b refused 7", "a refused 7"]
    assert "3 of 3 attempts" in str(err)


def test_retry_stops_at_the_timeout() -> None:
    def slow(x: int) -> str:
        time.sleep(0.03)
        raise TimeoutError("slow")

    started = time.monotonic()
    with pytest.raises(RetryError) as info:
        retry(1000, 0.2, RoundRobin(FixedEndpointer([slow])))(1)
    assert time.monotonic() - started < 1
    assert 2 <= len(info.value.exceptions) < 1000


def test_callback_can_stop_early_and_sees_each_attempt() -> None:
    seen: list[tuple[int, str]] = []

    def callback(attempt: int, error: Exception) -> bool:
        seen.append((attempt, str(error)))
        return attempt < 2

    with pytest.raises(RetryError) as info:
        retry(10, 5, RoundRobin(FixedEndpointer([failing("a")])), callback=callback)(0)
    assert seen == [(1, "a refused 0"), (2, "a refused 0")]
    assert len(info.value.exceptions) == 2


def test_retry_waits_for_an_endpoint_to_appear() -> None:
    from sd_core import Instance

    instancer = FixedInstancer([])
    with Endpointer(instancer, lambda i: lambda: i.port) as endpointer:
        call = retry(2, 5, RoundRobin(endpointer))
        timer = threading.Timer(0.05, instancer.set, args=([Instance("h", 42)],))
        timer.start()
        assert call() == 42
        timer.join()


def test_retry_without_endpoints_reports_no_endpoints() -> None:
    with pytest.raises(RetryError) as info:
        retry(2, 0.1, RoundRobin(FixedEndpointer([])))()
    assert all(isinstance(e, NoEndpointsError) for e in info.value.exceptions)


def test_bad_arguments_name_what_is_accepted() -> None:
    balancer = RoundRobin(FixedEndpointer([ok]))
    with pytest.raises(ValueError, match="max_attempts must be an integer >= 1"):
        retry(0, 1, balancer)
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        retry(1, 0, balancer)


async def test_aretry_retries_and_cancels_a_hung_attempt() -> None:
    calls: list[str] = []

    async def hung(x: int) -> str:
        calls.append("hung")
        await asyncio.sleep(10)
        return "never"

    async def good(x: int) -> str:
        calls.append("good")
        return f"good {x}"

    call = aretry(3, 5, RoundRobin(FixedEndpointer([good])))
    assert await call(3) == "good 3"
    started = time.monotonic()
    with pytest.raises(RetryError) as info:
        await aretry(3, 0.1, RoundRobin(FixedEndpointer([hung])))(1)
    assert time.monotonic() - started < 2
    assert isinstance(info.value.exceptions[0], TimeoutError)


def test_retry_avoids_endpoints_that_already_failed_in_this_call() -> None:
    from sd_core import Random

    dead = failing("dead")
    call = retry(2, 5, Random(FixedEndpointer([dead, dead, dead, ok]), seed=3))
    assert [call(i) for i in range(200)] == [f"ok {i}" for i in range(200)]


def test_choose_avoid_falls_back_when_every_endpoint_is_avoided() -> None:
    balancer = RoundRobin(FixedEndpointer(["a", "b"]))
    with balancer.choose(avoid=["a"]) as first, balancer.choose(avoid=["a"]) as second:
        assert (first, second) == ("b", "b")
    with balancer.choose(avoid=["a", "b"]) as only:
        assert only in ("a", "b")
