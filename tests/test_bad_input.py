"""Bad input is refused at once with a clear error: hosts, ids and services; timeouts."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable

import pytest

from sd_core import (
    Endpointer,
    FixedEndpointer,
    FixedInstancer,
    Instance,
    Random,
    Registration,
    RoundRobin,
    aretry,
    retry,
)
from sd_core._notifier import Notifier

# -- hosts, ids and services ------------------------------------------------------------

LONGEST_NAME = ".".join(["a" * 63, "a" * 63, "a" * 63, "a" * 61])  # 253 characters

BAD_HOSTS = [
    "10.0.0.1\nX-Injected: 1",
    "10.0.0.1\r\n",
    "a\x00b",
    "a b",
    " host",
    "host\t",
    "ho\x7fst",
    "a..b",
    ".a",
    "-lead.example",
    "trail-.example",
    "a" * 64,
    LONGEST_NAME + "a",
    "999.1.1.1",
    "010.0.0.1",
    "b\u00fccher.de",
    "a/b",
    "user@host",
    "example.com:80",
    "::g",
    "fe80::1%eth 0",
    "fe80::1%eth0\n",
    "fe80::1%",
    "[example.com]",
    "[10.0.0.1]",
    "[::1",
    "[::1]]",
]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_hosts_that_are_no_hostname_or_address_are_refused(host: str) -> None:
    for make, owner in (
        (lambda: Instance(host, 9000), "Instance"),
        (lambda: Registration("web", host, 9000), "Registration"),
    ):
        with pytest.raises(ValueError, match=rf"^{owner}\.host ") as info:
            make()
        message = str(info.value)
        assert "a hostname" in message
        assert "IPv4" in message
        assert "IPv6" in message
        assert "\n" not in message and "\x00" not in message


GOOD_HOSTS = [
    "localhost",
    "h",
    "10.0.0.1",
    "node-1.dc1.consul",
    "node-1.dc1.consul.",
    "_http._tcp.example.com",
    "xn--bcher-kva.de",
    "a" * 63,
    LONGEST_NAME,
    "1.2.3",
    "::1",
    "2001:db8::1",
    "::ffff:10.0.0.1",
    "fe80::1%eth0",
    "fe80::1%en0.100",
    "fe80::1%3",
]


@pytest.mark.parametrize("host", GOOD_HOSTS)
def test_hostnames_and_addresses_are_accepted(host: str) -> None:
    assert Instance(host, 80).host == host
    assert Registration("web", host, 80).host == host


def test_a_bracketed_ipv6_address_is_accepted_without_its_brackets() -> None:
    bracketed = Instance("[2001:db8::1]", 80)
    plain = Instance("2001:db8::1", 80)
    assert bracketed.host == "2001:db8::1"
    assert bracketed.address == bracketed.id == "[2001:db8::1]:80"
    assert bracketed == plain
    zoned = Registration("web", "[fe80::1%eth0]", 80)
    assert zoned.host == "fe80::1%eth0"
    assert zoned.address == "[fe80::1%eth0]:80"
    assert zoned.instance() == Instance("fe80::1%eth0", 80, service="web")


def test_the_error_shows_a_long_host_shortened() -> None:
    with pytest.raises(ValueError, match=r"Instance\.host") as info:
        Instance("\n" * 10_000, 80)
    assert len(str(info.value)) < 1000


CONTROL = ["\x00", "\n", "\r", "\t", "\x1b", "\x1f", "\x7f"]


@pytest.mark.parametrize("char", CONTROL)
@pytest.mark.parametrize("field", ["id", "service"])
def test_control_characters_in_id_and_service_are_refused(char: str, field: str) -> None:
    value = f"web{char}X-Injected: 1"
    with pytest.raises(ValueError, match=rf"^Instance\.{field} must not hold control characters"):
        Instance("10.0.0.1", 80, **{field: value})  # type: ignore[arg-type]
    kwargs = {"service": "web", field: value}
    with pytest.raises(
        ValueError, match=rf"^Registration\.{field} must not hold control characters"
    ):
        Registration(host="10.0.0.1", port=80, **kwargs)  # type: ignore[arg-type]


def test_ids_and_services_may_hold_other_text() -> None:
    inst = Instance("10.0.0.1", 80, id="node/web-1 (blue) \u00e9\u2603", service="web v2/\u00e9")
    assert inst.id == "node/web-1 (blue) \u00e9\u2603"
    assert Registration("web v2/\u00e9", "h", 1, id="\u00e9 1").id == "\u00e9 1"


# -- timeouts ---------------------------------------------------------------------------

BOUND = 5.0


def refused_at_once(call: Callable[[], object]) -> ValueError:
    """Run ``call`` in a thread (bounded: a NaN that spins must fail the test, not hang it)
    and return the ValueError it raised."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), f"still running after {BOUND} s instead of refusing at once"
    (error,) = outcome
    assert isinstance(error, ValueError), f"expected a ValueError, got {error!r}"
    return error


def test_nan_timeouts_are_refused_everywhere_at_once() -> None:
    nan = math.nan
    instancer = FixedInstancer([])
    with Endpointer(instancer) as endpointer, instancer.subscribe() as subscription:
        subscription.get(timeout=1)  # the current (empty) set
        balancer = RoundRobin(endpointer)

        def choose() -> None:
            with balancer.choose(timeout=nan):
                pass

        async def achoose() -> None:
            async with balancer.achoose(timeout=nan):
                pass

        calls: dict[str, Callable[[], object]] = {
            "choose": choose,
            "achoose": lambda: asyncio.run(achoose()),
            "retry": lambda: retry(2, nan, balancer)(),  # noqa: PLW0108 - build it in the thread
            "aretry": lambda: asyncio.run(aretry(2, nan, balancer)()),
            "Subscription.get": lambda: subscription.get(timeout=nan),
            "Subscription.get_async": lambda: asyncio.run(subscription.get_async(timeout=nan)),
            "Notifier.wait": lambda: Notifier().wait(0, nan),
            "Notifier.wait_async": lambda: asyncio.run(Notifier().wait_async(0, nan)),
        }
        for name, call in calls.items():
            error = refused_at_once(call)
            assert "timeout" in str(error), name
            assert "nan" in str(error), name
            assert "math.inf" in str(error), name


def test_timeouts_must_be_numbers() -> None:
    balancer = Random(FixedEndpointer(["a"]))
    for bad in ("1", True, object()):
        with pytest.raises(ValueError, match="timeout must be a number of seconds"):
            balancer.choose(timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout must be a number of seconds"):
            retry(1, bad, balancer)  # type: ignore[arg-type]


def wait_until(ready: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for a readiness condition another thread brings about."""
    deadline = time.monotonic() + BOUND
    pause = threading.Event()
    while not ready():
        assert time.monotonic() < deadline, f"not ready within {BOUND} s: {what}"
        pause.wait(0.001)


def test_subscription_get_with_an_infinite_timeout_returns_on_an_event() -> None:
    instancer = FixedInstancer([])
    with instancer.subscribe() as subscription:
        assert subscription.get(timeout=1).instances == ()
        got: list[object] = []
        thread = threading.Thread(
            target=lambda: got.append(_outcome(lambda: subscription.get(timeout=math.inf))),
            daemon=True,
        )
        thread.start()
        wait_until(lambda: bool(subscription._notifier._cond._waiters) or bool(got), "waiting")
        assert got == [], f"get(timeout=inf) returned at once: {got}"
        instancer.set([Instance("10.0.0.1", 80)])
        thread.join(BOUND)
        assert not thread.is_alive()
        (event,) = got
        assert getattr(event, "instances", None) == (Instance("10.0.0.1", 80),), event


async def test_subscription_get_async_with_an_infinite_timeout_returns_on_an_event() -> None:
    instancer = FixedInstancer([])
    with instancer.subscribe() as subscription:
        assert (await subscription.get_async(timeout=1)).instances == ()
        task = asyncio.create_task(subscription.get_async(timeout=math.inf))
        for _ in range(1000):  # a few loop turns: the task runs until it awaits the notifier
            if subscription._notifier._futures or task.done():
                break
            await asyncio.sleep(0)
        assert subscription._notifier._futures and not task.done(), task
        threading.Thread(target=instancer.set, args=([Instance("10.0.0.1", 80)],)).start()
        event = await asyncio.wait_for(task, BOUND)
        assert event.instances == (Instance("10.0.0.1", 80),)


@pytest.mark.parametrize("forever", [math.inf, None, 1e10])
def test_notifier_waits_without_limit_on_inf_and_none(forever: float | None) -> None:
    notifier = Notifier()
    result: list[object] = []
    thread = threading.Thread(
        target=lambda: result.append(_outcome(lambda: notifier.wait(0, forever))), daemon=True
    )
    thread.start()
    wait_until(lambda: bool(notifier._cond._waiters) or bool(result), "waiting")
    assert result == [], f"wait(timeout={forever}) returned at once: {result}"
    notifier.notify()
    thread.join(BOUND)
    assert result == [True]


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except BaseException as exc:
        return exc
