"""retry and aretry."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest

from sd_core import (
    Balancer,
    ConsistentHash,
    Endpointer,
    FixedEndpointer,
    FixedInstancer,
    Instance,
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
    with pytest.raises(ValueError, match=r"timeout must be a number of seconds .*math\.inf"):
        retry(1, math.nan, balancer)
    with pytest.raises(ValueError, match=r"timeout must be a number of seconds .*math\.inf"):
        aretry(1, math.nan, balancer)
    with pytest.raises(ValueError, match="key must be a function of the call's arguments"):
        retry(1, 1, balancer, key="user")  # type: ignore[arg-type]


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


# -- keys ---------------------------------------------------------------------------------


class Named:
    """An endpoint that answers with its name, or fails when marked dead."""

    def __init__(self, name: str, dead: bool = False) -> None:
        self.name = name
        self.dead = dead
        self.calls = 0

    def __call__(self, user: str, payload: str = "") -> str:
        self.calls += 1
        if self.dead:
            raise ConnectionError(f"{self.name} refused {user}")
        return f"{self.name}:{user}{payload}"


def test_needs_key_is_public_and_true_only_for_consistent_hash() -> None:
    assert Balancer.needs_key is False
    assert RoundRobin.needs_key is False
    assert ConsistentHash.needs_key is True


def test_retry_refuses_a_balancer_that_needs_a_key_when_no_key_is_given() -> None:
    balancer = ConsistentHash(FixedEndpointer([Named("a")]))
    for make in (retry, aretry):
        with pytest.raises(
            ValueError, match=r"ConsistentHash needs a key: pass retry\(\.\.\., key="
        ):
            make(3, 5, balancer)


def test_retry_with_consistent_hash_routes_each_key_to_its_endpoint() -> None:
    endpoints = [Named(f"e{n}") for n in range(5)]
    balancer = ConsistentHash(FixedEndpointer(endpoints))
    call = retry(3, 5, balancer, key=lambda user, payload="": user)
    for user in (f"user-{n}" for n in range(50)):
        owner = balancer.endpoint(user)
        assert call(user, payload="!") == f"{owner.name}:{user}!"


def test_retry_with_consistent_hash_moves_on_to_the_next_endpoint_of_the_ring() -> None:
    # The fallback is where the key would go if its owner left: the next one on the ring.
    pool = [Instance("10.0.0.1", 9000 + n, id=f"e{n}") for n in range(8)]
    with Endpointer(FixedInstancer(pool), lambda i: Named(i.id)) as endpointer:
        balancer = ConsistentHash(endpointer)
        call = retry(3, 5, balancer, key=lambda user: user)
        for user in (f"user-{n}" for n in range(20)):
            owner = balancer.endpoint(user)
            survivors = [i for i in pool if i.id != owner.name]
            with Endpointer(FixedInstancer(survivors)) as without_owner:
                heir = ConsistentHash(without_owner).endpoint(user).id
            owner.dead, owner.calls = True, 0
            assert call(user) == f"{heir}:{user}"
            assert call(user) == f"{heir}:{user}"
            assert owner.calls == 2
            owner.dead = False


async def test_aretry_with_consistent_hash_and_a_key() -> None:
    async def make(name: str) -> Any:
        async def call(user: str) -> str:
            return f"{name}:{user}"

        return call

    endpoints = [await make(f"e{n}") for n in range(3)]
    balancer = ConsistentHash(FixedEndpointer(endpoints))
    call = aretry(2, 5, balancer, key=lambda user: user)
    for user in ("a", "b", "c", "d"):
        assert await call(user) == await balancer.endpoint(user)(user)


class Misused(Balancer[Any]):
    """A balancer whose pick fails as a misuse would (a bad key)."""

    picks = 0

    def pick(self, candidates: Any, key: object) -> Any:
        Misused.picks += 1
        raise TypeError(f"keys must be strings, got {key!r}")


def test_a_misuse_raised_by_choose_propagates_at_once() -> None:
    Misused.picks = 0
    with pytest.raises(TypeError, match="keys must be strings"):
        retry(5, 5, Misused(FixedEndpointer([ok])))(1)
    assert Misused.picks == 1
    balancer = ConsistentHash(FixedEndpointer([ok]))
    with pytest.raises(ValueError, match="needs a key"):
        retry(5, 5, balancer, key=lambda x: None)(1)  # a key function that returns no key


async def test_a_misuse_raised_by_achoose_propagates_at_once() -> None:
    Misused.picks = 0

    async def good(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="keys must be strings"):
        await aretry(5, 5, Misused(FixedEndpointer([good])))(1)
    assert Misused.picks == 1


def test_a_failing_key_function_propagates() -> None:
    def key(x: int) -> str:
        raise LookupError("no user")

    with pytest.raises(LookupError, match="no user"):
        retry(3, 5, ConsistentHash(FixedEndpointer([ok])), key=key)(1)


# -- no deadline ----------------------------------------------------------------------------


def test_retry_with_an_infinite_timeout_has_no_deadline() -> None:
    instancer = FixedInstancer([])
    with Endpointer(instancer, lambda i: lambda: i.port) as endpointer:
        notifier = endpointer._cache.notifier
        results: list[object] = []

        def run() -> None:
            try:
                results.append(retry(2, math.inf, RoundRobin(endpointer))())
            except BaseException as exc:
                results.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 5
        pause = threading.Event()
        while not notifier._cond._waiters and not results:  # until it waits for an endpoint
            assert time.monotonic() < deadline
            pause.wait(0.001)
        assert results == [], results
        instancer.set([Instance("10.0.0.1", 42)])
        thread.join(5)
        assert results == [42]


async def test_aretry_with_no_deadline() -> None:
    async def good(x: int) -> int:
        return x

    for forever in (math.inf, None):
        assert await aretry(2, forever, RoundRobin(FixedEndpointer([good])))(7) == 7
    with pytest.raises(RetryError, match="without a deadline") as info:
        await aretry(2, math.inf, RoundRobin(FixedEndpointer([failing_async])))(7)
    assert len(info.value.exceptions) == 2


async def failing_async(x: int) -> int:
    raise ConnectionError("down")
