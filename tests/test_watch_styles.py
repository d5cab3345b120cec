"""The three watch styles (blocking, async, push) and fan-out give the same guarantees.

The backend here is a registry in memory that the test changes: a stand-in for a server, to
test the machinery's logic (the real backends' own tests run against real servers).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from sd_core import BackendUnavailableError, Event, Instance
from sd_core._async_watch import AsyncWatchContext, AsyncWatchInstancer
from sd_core._backoff import Backoff
from sd_core._loop import core_loop
from sd_core._push import Fanout, PushContext, PushInstancer
from sd_core._watch import WatchContext, WatchingInstancer, WatchInstancer

A = Instance("10.0.0.1", 1, id="a")
B = Instance("10.0.0.2", 2, id="b")
BOUND = 5.0
FAST = Backoff(initial=0.01, maximum=0.05)


class Registry:
    """A registry whose contents (or failure) the test sets; watchers see each change."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.instances: list[Instance] = [A]
        self.error: Exception | None = None
        self.version = 0
        self.reads = 0
        self.listeners: list[Callable[[], None]] = []

    def set(self, instances: list[Instance] | None = None, error: Exception | None = None) -> None:
        with self.cond:
            if instances is not None:
                self.instances = instances
            self.error = error
            self.version += 1
            self.cond.notify_all()
            listeners = list(self.listeners)
        for listener in listeners:
            listener()

    def read(self) -> tuple[int, list[Instance]]:
        with self.cond:
            self.reads += 1
            self.cond.notify_all()
            if self.error is not None:
                raise self.error
            return self.version, list(self.instances)


def blocking(registry: Registry) -> WatchInstancer:
    def watch(ctx: WatchContext) -> None:
        def poke() -> None:
            with registry.cond:
                registry.cond.notify_all()

        ctx.on_stop(poke)
        while not ctx.stopping:
            seen, instances = registry.read()
            ctx.publish(instances)
            with registry.cond:
                registry.cond.wait_for(
                    lambda seen=seen: registry.version != seen or ctx.stopping  # type: ignore[misc]
                )

    return WatchInstancer(watch, name="blocking", backoff=FAST)


def asynchronous(registry: Registry) -> AsyncWatchInstancer:
    async def watch(ctx: AsyncWatchContext) -> None:
        changed = asyncio.Event()
        loop = asyncio.get_running_loop()

        def listener() -> None:
            loop.call_soon_threadsafe(changed.set)

        registry.listeners.append(listener)
        try:
            while True:
                changed.clear()
                _, instances = registry.read()
                ctx.publish(instances)
                await changed.wait()
        finally:
            registry.listeners.remove(listener)

    return AsyncWatchInstancer(watch, name="async", backoff=FAST)


def push(registry: Registry) -> PushInstancer:
    def start(ctx: PushContext) -> Callable[[], None]:
        def listener() -> None:
            try:
                _, instances = registry.read()
            except Exception as exc:
                ctx.fail(exc, restart=True)
            else:
                ctx.publish(instances)

        registry.listeners.append(listener)
        listener()
        return lambda: registry.listeners.remove(listener)

    return PushInstancer(start, name="push", backoff=FAST)


def fanned(registry: Registry) -> PushInstancer:
    def start(fanout: Fanout) -> Callable[[], None]:
        def listener() -> None:
            try:
                _, instances = registry.read()
            except Exception as exc:
                fanout.fail(exc)
            else:
                fanout.publish({"web": instances, "other": [B]})

        registry.listeners.append(listener)
        listener()
        return lambda: registry.listeners.remove(listener)

    return Fanout(start, name="fanout").instancer("web", backoff=FAST)


STYLES = {"blocking": blocking, "async": asynchronous, "push": push, "fanout": fanned}


@pytest.fixture(params=sorted(STYLES))
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[Registry], WatchingInstancer]]:
    made: list[WatchingInstancer] = []

    def factory(registry: Registry) -> WatchingInstancer:
        instancer = STYLES[request.param](registry)
        made.append(instancer)
        return instancer

    yield factory
    for instancer in made:
        instancer.stop()


class Recorder:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, check: Callable[[list[Event]], bool], what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: check(self.events), BOUND):
                raise AssertionError(f"no {what} within {BOUND} s: {self.events}")


def test_the_current_set_at_once_and_each_change_once(
    make: Callable[[Registry], WatchingInstancer],
) -> None:
    registry = Registry()
    instancer = make(registry)
    with instancer.subscribe() as sub:
        assert sub.get(BOUND).instances == (A,)
    recorder = Recorder()
    instancer.register(recorder)
    assert [e.instances for e in recorder.events] == [(A,)]
    registry.set([A])  # the same set: nothing sent
    registry.set([A, B])
    recorder.wait(lambda events: events[-1].instances == (A, B), "the change")
    assert instancer.settle(BOUND)
    assert [e.instances for e in recorder.events] == [(A,), (A, B)]


def test_one_error_event_on_failure_and_a_full_set_on_recovery(
    make: Callable[[Registry], WatchingInstancer],
) -> None:
    registry = Registry()
    instancer = make(registry)
    recorder = Recorder()
    with instancer.subscribe() as sub:
        sub.get(BOUND)
    instancer.register(recorder)
    reads = registry.reads
    registry.set(error=ConnectionError("down"))
    recorder.wait(lambda events: not events[-1].ok, "an error event")
    for _ in range(3):  # more failures: no more error events
        registry.set(error=ConnectionError("still down"))
    with registry.cond:
        assert registry.cond.wait_for(lambda: registry.reads >= reads + 3, BOUND)
    registry.set([B], error=None)
    recorder.wait(lambda events: events[-1].instances == (B,), "the recovery")
    assert instancer.settle(BOUND)
    errors = [e for e in recorder.events if not e.ok]
    assert len(errors) == 1
    assert isinstance(errors[0].error, BackendUnavailableError)
    assert "down" in str(errors[0].error)
    assert "watching" in repr(instancer)


def test_stop_ends_subscriptions_and_leaves_nothing_running(
    make: Callable[[Registry], WatchingInstancer],
) -> None:
    registry = Registry()
    instancer = make(registry)
    sub = instancer.subscribe()
    assert sub.get(BOUND).ok
    instancer.stop()
    assert sub.closed
    assert registry.listeners == []
    assert "stopped" in repr(instancer)
    instancer.stop()  # idempotent


def test_a_thousand_async_or_push_instancers_add_at_most_two_threads() -> None:
    registry = Registry()
    before = threading.active_count()
    instancers: list[WatchingInstancer] = [asynchronous(registry) for _ in range(500)]
    instancers += [push(registry) for _ in range(500)]
    try:
        for instancer in (instancers[0], instancers[-1]):
            with instancer.subscribe() as sub:
                assert sub.get(BOUND).instances == (A,)
        registry.set([A, B])
        for instancer in instancers:
            with instancer.subscribe() as sub:
                while (event := sub.get(BOUND)).instances != (A, B):
                    assert event.instances == (A,)
        assert threading.active_count() - before <= 2
    finally:
        for instancer in instancers:
            instancer.stop()


def test_a_fanout_serves_many_services_from_one_watch_and_stops_with_the_last() -> None:
    registry = Registry()
    starts: list[int] = []

    def start(fanout: Fanout) -> Callable[[], None]:
        starts.append(1)

        def listener() -> None:
            fanout.publish({"web": registry.instances, "api": [B]})

        registry.listeners.append(listener)
        listener()
        return lambda: registry.listeners.remove(listener)

    fanout = Fanout(start, name="registry")
    web, api, gone = fanout.instancer("web"), fanout.instancer("api"), fanout.instancer("gone")
    assert fanout.services == {"web", "api", "gone"}
    assert starts == [1]
    with web.subscribe() as w, api.subscribe() as a, gone.subscribe() as g:
        assert w.get(BOUND).instances == (A,)
        assert a.get(BOUND).instances == (B,)
        assert g.get(BOUND).instances == ()
        registry.set([A, B])
        assert w.get(BOUND).instances == (A, B)
    web.stop()
    api.stop()
    assert registry.listeners != []
    gone.stop()
    assert registry.listeners == []
    assert fanout.services == frozenset()


def test_a_push_watch_that_asks_for_a_restart_is_started_again_after_the_backoff() -> None:
    registry = Registry()
    starts: list[int] = []

    def start(ctx: PushContext) -> Callable[[], None] | None:
        starts.append(1)
        if len(starts) < 3:
            ctx.fail(ConnectionError("session lost"), restart=True)
            return None
        ctx.publish(registry.instances)
        return None

    instancer = PushInstancer(start, name="flaky", backoff=FAST)
    try:
        with instancer.subscribe() as sub:
            event = sub.get(BOUND)
            while not event.ok:
                event = sub.get(BOUND)
            assert event.instances == (A,)
        assert len(starts) == 3
    finally:
        instancer.stop()


def test_an_async_watch_is_cancelled_on_stop_even_when_it_never_yields_to_stopping() -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def watch(ctx: AsyncWatchContext) -> None:
        ctx.publish([A])
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    instancer = AsyncWatchInstancer(watch, name="forever")
    assert started.wait(BOUND)
    instancer.stop()
    assert cancelled.is_set()
    assert core_loop().idle()


async def test_an_async_instancer_can_be_stopped_from_async_code() -> None:
    registry = Registry()
    instancer = asynchronous(registry)
    async with instancer.subscribe() as sub:
        assert (await sub.get_async(BOUND)).instances == (A,)
    await instancer.astop()
    assert registry.listeners == []
