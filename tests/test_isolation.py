"""A slow, blocking or misbehaving subscriber, factory or closer delays only itself."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sd_core import Endpointer, Event, FixedInstancer, Instance, RoundRobin
from sd_core.plugin import WatchContext, WatchInstancer

A = Instance("10.0.0.1", 1, id="a")
B = Instance("10.0.0.2", 2, id="b")
C = Instance("10.0.0.3", 3, id="c")
BOUND = 5.0


class Feed:
    """A watch function whose sets the test pushes; runs in the instancer's watch thread."""

    def __init__(self) -> None:
        self.sets: list[list[Instance]] = [[A]]
        self.changed = threading.Event()

    def push(self, instances: list[Instance]) -> None:
        self.sets.append(instances)
        self.changed.set()

    def __call__(self, ctx: WatchContext) -> None:
        ctx.on_stop(self.changed.set)
        published = 0
        while not ctx.stopping:
            while published < len(self.sets):
                ctx.publish(self.sets[published])
                published += 1
            self.changed.wait()
            self.changed.clear()


class Blocker:
    """A subscriber that blocks on every event after the first until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) > 1:
            self.entered.set()
            self.release.wait(30)


class Seen:
    """A subscriber that records events and lets the test wait for a set."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, *instances: Instance, timeout: float = BOUND) -> bool:
        with self.cond:
            return self.cond.wait_for(
                lambda: bool(self.events) and self.events[-1].instances == instances, timeout
            )


@pytest.fixture
def feed() -> Iterator[tuple[Feed, WatchInstancer]]:
    source = Feed()
    instancer = WatchInstancer(source, name="feed", join_timeout=BOUND)
    yield source, instancer
    instancer.stop()


def in_thread(fn: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=fn, name="test-caller", daemon=True)
    thread.start()
    return thread


def test_a_blocking_subscriber_delays_no_other_subscriber(
    feed: tuple[Feed, WatchInstancer],
) -> None:
    source, instancer = feed
    blocker, seen = Blocker(), Seen()
    instancer.register(blocker)
    instancer.register(seen)
    assert seen.wait_for(A)
    source.push([B])
    assert blocker.entered.wait(BOUND)
    assert seen.wait_for(B), "the other subscriber did not get the change"
    source.push([C])
    assert seen.wait_for(C), "the other subscriber did not get the next change"
    blocker.release.set()
    assert instancer.settle(BOUND)
    assert blocker.events[-1].instances == (C,), "the slow subscriber catches up to the latest"


def test_subscribe_register_and_stop_from_other_threads_return_while_a_subscriber_blocks(
    feed: tuple[Feed, WatchInstancer],
) -> None:
    source, instancer = feed
    blocker = Blocker()
    instancer.register(blocker)
    source.push([B])
    assert blocker.entered.wait(BOUND)
    got: list[object] = []
    caller = in_thread(lambda: got.append(instancer.subscribe().get(BOUND)))
    caller.join(BOUND)
    assert not caller.is_alive() and got and got[0].instances == (B,)  # type: ignore[attr-defined]
    endpointers: list[Endpointer[Instance]] = []
    caller = in_thread(lambda: endpointers.append(Endpointer(instancer)))
    caller.join(BOUND)
    assert not caller.is_alive() and endpointers[0].endpoints() == [B]
    started = time.monotonic()
    stopper = in_thread(instancer.stop)
    stopper.join(BOUND)
    assert not stopper.is_alive(), "stop() did not return while a subscriber blocks"
    assert time.monotonic() - started < BOUND
    blocker.release.set()
    endpointers[0].close()


def test_a_slow_factory_delays_only_its_own_endpointer(
    feed: tuple[Feed, WatchInstancer],
) -> None:
    source, instancer = feed
    connecting = threading.Event()
    release = threading.Event()

    def slow_factory(instance: Instance) -> str:
        if instance is not A:
            connecting.set()
            release.wait(30)
        return instance.id

    slow = Endpointer(instancer, slow_factory)
    fast = Endpointer(instancer, lambda instance: instance.id)
    seen = Seen()
    instancer.register(seen)
    source.push([A, B])
    assert connecting.wait(BOUND)
    assert seen.wait_for(A, B)
    deadline = time.monotonic() + BOUND
    while sorted(fast.endpoints()) != ["a", "b"] and time.monotonic() < deadline:
        fast._cache.notifier.wait(fast._cache.notifier.version, 0.1)
    assert sorted(fast.endpoints()) == ["a", "b"], "an unrelated endpointer waited for a factory"
    release.set()
    assert instancer.settle(BOUND)
    assert sorted(slow.endpoints()) == ["a", "b"]
    slow.close()
    fast.close()


def test_a_slow_close_never_blocks_updates_or_requests() -> None:
    closing = threading.Event()
    release = threading.Event()

    class Conn:
        def __init__(self, instance: Instance) -> None:
            self.instance = instance

        def close(self) -> None:
            closing.set()
            release.wait(30)

    instancer = FixedInstancer([A])
    endpointer = Endpointer(instancer, Conn)
    balancer = RoundRobin(endpointer)
    with balancer.choose() as conn:
        assert conn.instance is A
        instancer.set([B])
    # The request ended: closing A now runs elsewhere, and takes long.
    assert closing.wait(BOUND)
    assert instancer.set([C], wait=BOUND), "an update waited for a close()"
    assert [c.instance for c in endpointer.endpoints()] == [C]
    with balancer.choose() as conn:
        assert conn.instance is C
    release.set()
    endpointer.close()


async def test_subscribe_from_asyncio_does_not_stall_the_loop_while_a_subscriber_blocks(
    feed: tuple[Feed, WatchInstancer],
) -> None:
    source, instancer = feed
    blocker = Blocker()
    instancer.register(blocker)
    source.push([B])
    assert await asyncio.to_thread(blocker.entered.wait, BOUND)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    async with instancer.subscribe() as sub:
        event = await sub.get_async(BOUND)
    assert event.instances == (B,)
    assert time.monotonic() - started < 1.0, "subscribe() blocked the event loop"
    await asyncio.sleep(0.05)
    assert ticks > 1
    task.cancel()
    blocker.release.set()


def test_a_subscriber_raising_system_exit_is_contained_and_reported(
    feed: tuple[Feed, WatchInstancer], caplog: pytest.LogCaptureFixture
) -> None:
    source, instancer = feed
    calls: list[Event] = []

    def exits(event: Event) -> None:
        calls.append(event)
        if len(calls) > 1:
            raise SystemExit(3)

    seen = Seen()
    instancer.register(exits)
    instancer.register(seen)
    source.push([B])
    assert seen.wait_for(B)
    source.push([C])
    assert seen.wait_for(C), "the watch thread died with the subscriber"
    assert instancer.settle(BOUND)
    assert [e.instances for e in calls] == [(A,), (B,), (C,)]
    assert "SystemExit" in caplog.text
    assert "watching" in repr(instancer)


def test_a_watch_function_raising_base_exception_becomes_an_error_event() -> None:
    runs: list[int] = []

    def watch(ctx: WatchContext) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise SystemExit("the plugin called sys.exit")
        ctx.publish([A])
        ctx.wait(None)

    with WatchInstancer(watch, name="exits") as instancer, instancer.subscribe() as sub:
        first = sub.get(BOUND)
        assert first.error is not None and "SystemExit" in str(first.error)
        assert sub.get(BOUND).instances == (A,)
        assert "watching" in repr(instancer)


def test_a_factory_returning_none_is_skipped_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def factory(instance: Instance) -> str | None:
        return None if instance is B else instance.id

    with Endpointer(FixedInstancer([A, B]), factory) as endpointer:
        assert endpointer.endpoints() == ["a"]
    assert "returned None" in caplog.text


def test_a_slow_subscriber_that_skipped_back_to_the_same_set_is_not_told_again() -> None:
    instancer = FixedInstancer([A])
    blocker = Blocker()
    instancer.register(blocker)
    instancer.set([B], wait=0)
    assert blocker.entered.wait(BOUND)
    instancer.set([C], wait=0)
    instancer.set([B], wait=0)  # the subscriber, still on B, skips C: B again says nothing new
    blocker.release.set()
    assert instancer.settle(BOUND)
    assert [e.instances for e in blocker.events] == [(A,), (B,)]
