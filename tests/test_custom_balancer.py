"""The custom balancers of docs/core.md ("Writing a balancer"), run as they are written there.

The example is the documentation's code block itself, executed here: what the docs show is
what these tests exercise. It uses only public names of sd_core, and its balancers get
endpoint(), choose(), achoose(), wait-for-ready, avoid-lists and retry() from the base class.
"""

from __future__ import annotations

import ast
import asyncio
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sd_core
from sd_core import (
    Endpointer,
    FixedInstancer,
    Instance,
    NoEndpointsError,
    RetryError,
    aretry,
    retry,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "core.md"


def _example() -> str:
    """The one Python block under "### Writing a balancer" in docs/core.md."""
    section = DOCS.read_text().split("### Writing a balancer", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "one Python block under 'Writing a balancer'"
    return blocks[0]


EXAMPLE = _example()


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    """The names the example defines, after running it (its own asserts included)."""
    namespace: dict[str, Any] = {"__name__": "docs_core_example"}
    exec(compile(EXAMPLE, f"{DOCS} (Writing a balancer)", "exec"), namespace)
    return namespace


def test_the_example_runs_and_defines_two_balancers(example: dict[str, Any]) -> None:
    assert issubclass(example["ZoneAware"], sd_core.Balancer)
    assert issubclass(example["FirstTier"], sd_core.Balancer)


def test_the_example_uses_only_public_names() -> None:
    for node in ast.walk(ast.parse(EXAMPLE)):
        if isinstance(node, ast.ImportFrom) and node.module == "sd_core":
            assert all(alias.name in sd_core.__all__ for alias in node.names), ast.dump(node)
        elif isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("sd_core"), ast.dump(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("sd_core") for a in node.names), ast.dump(node)
        elif isinstance(node, ast.Attribute):
            dunder = node.attr.startswith("__") and node.attr.endswith("__")  # super().__init__
            assert dunder or not node.attr.startswith("_"), f"the example reads .{node.attr}"


# -- endpoints that can fail -------------------------------------------------------------------


class Client:
    """An endpoint: calling it answers with its address, or raises while ``down``."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.down = False
        self.closed = False
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.down:
            raise ConnectionError(f"{self.instance.address} is down")
        return self.instance.address

    def close(self) -> None:
        self.closed = True


class AsyncClient(Client):
    """The same, called and awaited (for achoose() and aretry())."""

    async def __call__(self) -> str:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().__call__()


A1 = Instance("10.0.0.1", 8080, id="a1", zone="a")
A2 = Instance("10.0.0.2", 8080, id="a2", zone="a")
B1 = Instance("10.0.1.1", 8080, id="b1", zone="b")
SPARE = Instance("10.0.2.1", 8080, id="spare", zone="b", priority=1)
EVERY = [A1, A2, B1, SPARE]
NAMES = ["ZoneAware", "FirstTier"]


@pytest.fixture
def endpointer() -> Iterator[Endpointer[Client]]:
    with Endpointer(FixedInstancer(EVERY), Client) as endpointer:
        yield endpointer


def make(example: dict[str, Any], name: str, endpointer: Endpointer[Any]) -> Any:
    if name == "ZoneAware":
        return example["ZoneAware"](endpointer, zone="a", seed=3)
    return example[name](endpointer)


def by_id(endpointer: Endpointer[Client]) -> dict[str, Client]:
    return {client.instance.id: client for client in endpointer.endpoints()}


def _wait_until(ready: Callable[[], bool], what: str, bound: float = 5.0) -> None:
    deadline = time.monotonic() + bound
    while not ready():
        assert time.monotonic() < deadline, f"not within {bound} s: {what}"
        time.sleep(0.001)


# -- what each of them does ----------------------------------------------------------------------


def test_zone_aware_stays_in_its_zone_while_it_has_instances(example: dict[str, Any]) -> None:
    instancer = FixedInstancer(EVERY)
    with Endpointer(instancer, Client) as endpointer:
        balancer = example["ZoneAware"](endpointer, zone="a", seed=1)
        assert {balancer.endpoint().instance.id for _ in range(200)} == {"a1", "a2"}
        instancer.set([B1, SPARE])  # none left in zone a: any zone will do
        assert {balancer.endpoint().instance.id for _ in range(200)} == {"b1", "spare"}
        instancer.set([A2, B1])  # the local subset follows the new set
        assert {balancer.endpoint().instance.id for _ in range(200)} == {"a2"}


def test_zone_aware_takes_the_one_that_failed_least(
    example: dict[str, Any], endpointer: Endpointer[Client]
) -> None:
    balancer = example["ZoneAware"](endpointer, zone="a", seed=7)
    clients = by_id(endpointer)
    clients["a1"].down = True
    avoid = [clients[i] for i in ("a2", "b1", "spare")]
    with pytest.raises(ConnectionError), balancer.choose(avoid=avoid) as call:
        call()
    assert call is clients["a1"]
    # a1 is taken only when both draws are a1: a quarter of the picks.
    picks = Counter(balancer.endpoint().instance.id for _ in range(400))
    assert set(picks) == {"a1", "a2"} and picks["a2"] > 250, picks


def test_zone_aware_then_takes_the_one_with_fewer_requests_in_flight(
    example: dict[str, Any], endpointer: Endpointer[Client]
) -> None:
    balancer = example["ZoneAware"](endpointer, zone="a", seed=7)
    clients = by_id(endpointer)
    avoid = [clients[i] for i in ("a2", "b1", "spare")]
    held = [balancer.choose(avoid=avoid) for _ in range(3)]
    try:
        assert all(choice.__enter__() is clients["a1"] for choice in held)
        picks = Counter(balancer.endpoint().instance.id for _ in range(400))
        assert set(picks) == {"a1", "a2"} and picks["a2"] > 250, picks
    finally:
        for choice in held:
            choice.__exit__(None, None, None)


def test_first_tier_goes_round_the_lowest_priority(example: dict[str, Any]) -> None:
    instancer = FixedInstancer(EVERY)
    with Endpointer(instancer, Client) as endpointer:
        balancer = example["FirstTier"](endpointer)
        picks = Counter(balancer.endpoint().instance.id for _ in range(300))
        assert picks == Counter({"a1": 100, "a2": 100, "b1": 100})
        instancer.set([SPARE, B1])
        assert {balancer.endpoint().instance.id for _ in range(10)} == {"b1"}
        instancer.set([SPARE])
        assert balancer.endpoint().instance.id == "spare"


def test_first_tier_retries_on_its_tier_then_beyond_it(
    example: dict[str, Any], endpointer: Endpointer[Client]
) -> None:
    balancer = example["FirstTier"](endpointer)
    clients = by_id(endpointer)
    for ident in ("a1", "a2", "b1"):
        clients[ident].down = True
    # Each of the first tier fails once; then the default pick_avoiding() falls back to the
    # first candidate not avoided: the spare, outside the turns.
    assert retry(4, 5, balancer)() == SPARE.address
    assert [clients[i].calls for i in ("a1", "a2", "b1", "spare")] == [1, 1, 1, 1]


# -- the base class's guarantees hold for them ---------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_choose_counts_in_flight_and_outcomes(
    example: dict[str, Any], endpointer: Endpointer[Client], name: str
) -> None:
    balancer = make(example, name, endpointer)
    assert isinstance(balancer.endpoint(), Client)
    candidates = endpointer._cache.entries()
    with balancer.choose() as call:
        assert call() == call.instance.address
        (candidate,) = [c for c in candidates if c.endpoint is call]
        assert candidate.pending == 1
    assert (candidate.pending, candidate.successes, candidate.failures) == (0, 1, 0)
    call.down = True
    others = [c.endpoint for c in candidates if c is not candidate]
    with pytest.raises(ConnectionError), balancer.choose(avoid=others) as again:
        again()
    assert again is call
    assert (candidate.pending, candidate.successes, candidate.failures) == (0, 1, 1)


@pytest.mark.parametrize("name", NAMES)
def test_retry_avoids_the_endpoint_that_failed(
    example: dict[str, Any], endpointer: Endpointer[Client], name: str
) -> None:
    balancer = make(example, name, endpointer)
    first = balancer.endpoint()
    first.down = True
    errors: list[Exception] = []
    call = retry(3, 5, balancer, callback=lambda attempt, error: errors.append(error))
    for _ in range(5):
        assert call() != first.instance.address
    assert errors and all(isinstance(error, ConnectionError) for error in errors)
    for client in endpointer.endpoints():
        client.down = True
    with pytest.raises(RetryError) as raised:
        retry(3, 5, balancer)()
    assert len(raised.value.exceptions) == 3


@pytest.mark.parametrize("name", NAMES)
async def test_achoose_and_aretry(example: dict[str, Any], name: str) -> None:
    with Endpointer(FixedInstancer(EVERY), AsyncClient) as endpointer:
        balancer = make(example, name, endpointer)
        async with balancer.achoose(timeout=1) as client:
            assert await client() == client.instance.address
        first = balancer.endpoint()
        first.down = True
        call = aretry(3, 5, balancer)
        for _ in range(5):
            assert await call() != first.instance.address


@pytest.mark.parametrize("name", NAMES)
def test_wait_for_ready(example: dict[str, Any], name: str) -> None:
    instancer = FixedInstancer([])
    with Endpointer(instancer, Client) as endpointer:
        balancer = make(example, name, endpointer)
        with pytest.raises(NoEndpointsError):
            balancer.endpoint()
        with pytest.raises(NoEndpointsError), balancer.choose():  # None: fail fast
            pass
        with pytest.raises(NoEndpointsError), balancer.choose(timeout=0.05):
            pass
        with pytest.raises(ValueError, match="timeout"):
            balancer.choose(timeout=math.nan)
        timer = threading.Timer(0.05, instancer.set, args=([A1],))
        timer.start()
        with balancer.choose(timeout=math.inf) as client:  # waits without limit
            assert client.instance == A1
        timer.join()
        instancer.set([])
        timer = threading.Timer(0.05, instancer.set, args=([B1],))
        timer.start()
        assert retry(1, 5, balancer)() == B1.address  # waits within retry's timeout
        timer.join()


@pytest.mark.parametrize("name", NAMES)
async def test_achoose_waits_for_ready(example: dict[str, Any], name: str) -> None:
    instancer = FixedInstancer([])
    with Endpointer(instancer, AsyncClient) as endpointer:
        balancer = make(example, name, endpointer)
        setter = threading.Timer(0.05, instancer.set, args=([A2],))
        setter.start()
        async with balancer.achoose(timeout=5) as client:
            assert client.instance == A2
        setter.join()
        instancer.set([])
        with pytest.raises(NoEndpointsError):
            async with balancer.achoose(timeout=0.05):
                pass


@pytest.mark.parametrize("name", NAMES)
def test_an_endpoint_closed_is_never_handed_out(example: dict[str, Any], name: str) -> None:
    instancer = FixedInstancer(EVERY)
    with Endpointer(instancer, Client) as endpointer:
        balancer = make(example, name, endpointer)
        old = endpointer.endpoints()
        balancer.endpoint()  # per-set state built for the old set
        instancer.set([Instance("10.0.9.9", 8080, id="new", zone="a")])
        _wait_until(lambda: all(client.closed for client in old), "old endpoints closed")
        for _ in range(20):
            assert balancer.endpoint().instance.id == "new"
            with balancer.choose() as client:
                assert client.instance.id == "new" and not client.closed
