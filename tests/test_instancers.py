"""BaseInstancer, WatchInstancer and Subscription: the machinery every backend reuses."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import pytest

from sd_core import BackendUnavailableError, Event, FixedInstancer, Instance
from sd_core.plugin import Backoff, WatchContext, WatchInstancer

A, B, C = Instance("a", 1), Instance("b", 2), Instance("c", 3)


class Recorder:
    """A subscriber that records events and lets a test wait for a count of them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = 5) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.events), timeout), self.events


def test_register_delivers_current_state_at_once_and_changes_after() -> None:
    inst = FixedInstancer([A])
    rec = Recorder()
    inst.register(rec)
    assert [e.instances for e in rec.events] == [(A,)]
    inst.set([A, B])
    assert [e.instances for e in rec.events] == [(A,), (A, B)]
    inst.deregister(rec)
    inst.set([C])
    assert len(rec.events) == 2


def test_identical_sets_are_not_resent_whatever_their_order() -> None:
    inst = FixedInstancer([A, B])
    rec = Recorder()
    inst.register(rec)
    inst.set([B, A])
    inst.set([A, B])
    assert len(rec.events) == 1


def test_a_raising_subscriber_is_logged_and_others_still_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inst = FixedInstancer([A])

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    rec = Recorder()
    inst.register(broken)
    inst.register(rec)
    inst.set([B])
    assert [e.instances for e in rec.events] == [(A,), (B,)]
    assert "subscriber bug" in caplog.text


def test_subscriber_may_deregister_itself_from_its_callback() -> None:
    inst = FixedInstancer([A])
    seen: list[Event] = []

    def once(event: Event) -> None:
        seen.append(event)
        inst.deregister(once)

    inst.register(once)
    inst.set([B])
    assert len(seen) == 1


def test_subscribe_coalesces_to_the_latest_and_ends_on_stop() -> None:
    inst = FixedInstancer([A])
    sub = inst.subscribe()
    inst.set([B])
    inst.set([C])
    assert sub.get(timeout=1).instances == (C,)
    with pytest.raises(TimeoutError):
        sub.get(timeout=0.05)
    inst.stop()
    assert list(sub) == []


def test_subscribe_context_manager_unsubscribes() -> None:
    inst = FixedInstancer([A])
    with inst.subscribe() as sub:
        assert next(sub).instances == (A,)
    assert sub.closed
    assert inst.subscribers == 0


async def test_subscribe_async_iterates_events_pushed_from_another_thread() -> None:
    inst = FixedInstancer([A])
    got: list[tuple[Instance, ...]] = []
    async with inst.subscribe() as sub:
        pusher = threading.Timer(0.05, inst.set, args=([B],))
        pusher.start()
        async for event in sub:
            got.append(event.instances)
            if len(got) == 2:
                break
        pusher.join()
    assert got == [(A,), (B,)]


async def test_async_get_times_out() -> None:
    inst = FixedInstancer([A])
    sub = inst.subscribe()
    await sub.get_async(timeout=1)
    with pytest.raises(TimeoutError):
        await sub.get_async(timeout=0.05)
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await sub.get_async(timeout=1)


class ScriptedBackend:
    """A watch function driven by the test: each step publishes a set or raises."""

    def __init__(self) -> None:
        self.steps: list[list[Instance] | Exception] = []
        self.calls = 0
        self._cond = threading.Condition()

    def push(self, step: list[Instance] | Exception) -> None:
        with self._cond:
            self.steps.append(step)
            self._cond.notify_all()

    def __call__(self, ctx: WatchContext) -> None:
        self.calls += 1
        ctx.on_stop(self._wake)
        while not ctx.stopping:
            with self._cond:
                self._cond.wait_for(lambda: self.steps or ctx.stopping, 5)
                if not self.steps:
                    continue
                step = self.steps.pop(0)
            if isinstance(step, Exception):
                raise step
            ctx.publish(step)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


def fast_backoff() -> Backoff:
    return Backoff(initial=0.001, maximum=0.01)


def test_watch_sends_one_error_on_failure_and_a_full_set_on_recovery() -> None:
    backend = ScriptedBackend()
    rec = Recorder()
    with WatchInstancer(backend, name="scripted", backoff=fast_backoff()) as inst:
        inst.register(rec)
        backend.push([A])
        rec.wait_for(lambda ev: len(ev) == 1)
        backend.push(ConnectionError("refused"))
        backend.push(ConnectionError("refused again"))
        backend.push(ConnectionError("and again"))
        rec.wait_for(lambda ev: len(ev) == 2)
        backend.push([A])
        rec.wait_for(lambda ev: len(ev) == 3)
    first, failure, recovered = rec.events
    assert first.instances == (A,)
    assert isinstance(failure.error, BackendUnavailableError)
    assert "refused" in str(failure.error)
    assert isinstance(failure.error.__cause__, ConnectionError)
    assert recovered.instances == (A,)
    assert backend.calls == 4


def test_watch_stop_joins_its_thread_even_while_blocked() -> None:
    backend = ScriptedBackend()
    inst = WatchInstancer(backend, name="blocked")
    thread = inst._thread
    assert thread.is_alive()
    inst.stop()
    assert not thread.is_alive()
    inst.stop()  # idempotent


def test_watch_retries_with_growing_capped_delays() -> None:
    waits: list[float] = []
    attempts = threading.Event()

    def failing(ctx: WatchContext) -> None:
        if len(waits) >= 6:
            attempts.set()
            ctx.wait(5)
            return
        raise OSError("down")

    backoff = Backoff(initial=0.001, maximum=0.004, jitter=0)
    original = backoff.next

    def recording_next() -> float:
        delay = original()
        waits.append(delay)
        return delay

    backoff.next = recording_next  # type: ignore[method-assign]
    with WatchInstancer(failing, name="failing", backoff=backoff) as inst:
        assert attempts.wait(5)
        assert inst.state is not None and not inst.state.ok
    assert waits[:6] == [0.001, 0.002, 0.004, 0.004, 0.004, 0.004]


def test_backoff_jitter_stays_within_bounds() -> None:
    values = iter([0.0, 1.0, 0.5])
    backoff = Backoff(initial=1, maximum=10, jitter=0.5, rand=lambda: next(values))
    assert [backoff.next(), backoff.next(), backoff.next()] == [0.5, 3.0, 4.0]
    backoff.reset()
    assert backoff.attempts == 0
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=0)


def test_watch_logs_the_transition_once(caplog: pytest.LogCaptureFixture) -> None:
    backend = ScriptedBackend()
    rec = Recorder()
    caplog.set_level(logging.WARNING, "sd_core")
    with WatchInstancer(backend, name="noisy", backoff=fast_backoff()) as inst:
        inst.register(rec)
        for _ in range(5):
            backend.push(ConnectionError("refused"))
        backend.push([B])
        rec.wait_for(lambda ev: bool(ev) and ev[-1].ok)
    assert caplog.text.count("discovery failed") == 1


def test_event_loop_is_not_required_for_sync_use() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    inst = FixedInstancer([A])
    assert inst.subscribe().get(1).instances == (A,)


async def test_async_stop_joins_the_watch_thread_off_the_event_loop() -> None:
    backend = ScriptedBackend()
    async with WatchInstancer(backend, name="async") as inst:
        thread = inst._thread
        backend.push([A])
        async with inst.subscribe() as sub:
            assert (await sub.get_async(timeout=5)).instances == (A,)
    assert inst.stopped and not thread.is_alive()
