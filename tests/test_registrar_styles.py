"""Registrars for every kind of liveness: renewals by sync or async hooks, and liveness kept
elsewhere (a session, a lease) with restores on the plugin's word (pure-logic tests over
memory; the backends' own tests use real servers)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from sd_core import RegistrarState, Registration, RegistrationError
from sd_core._clock import FakeClock, clock, use_clock
from sd_core.plugin import BaseRegistrar

BOUND = 5.0


def reg(ttl: float = 30.0) -> Registration:
    return Registration("web", "127.0.0.1", 8080, ttl=ttl)


class AsyncMemoryRegistrar(BaseRegistrar):
    """Async hooks: they run on the core's loop; the test records the thread of each."""

    backend_name = "amemory"

    def __init__(self, registration: Registration, table: dict[str, float]) -> None:
        super().__init__(registration)
        self.table = table
        self.threads: set[str] = set()
        self.renewals = 0
        self.refuse_deregister = False

    async def _backend_register(self) -> None:
        self.threads.add(threading.current_thread().name)
        await asyncio.sleep(0)
        self.table[self.registration.id] = clock().monotonic()

    async def _backend_deregister(self) -> None:
        self.threads.add(threading.current_thread().name)
        if self.refuse_deregister:
            raise ConnectionError("backend down")
        self.table.pop(self.registration.id, None)

    async def _backend_keepalive(self) -> bool:
        self.threads.add(threading.current_thread().name)
        self.renewals += 1
        return self.registration.id in self.table


@pytest.fixture
def fake() -> Iterator[FakeClock]:
    with use_clock(FakeClock()) as installed:
        assert isinstance(installed, FakeClock)
        yield installed


def until(check: Callable[[], bool], what: str) -> None:
    event = threading.Event()
    for _ in range(int(BOUND / 0.01)):
        if check():
            return
        event.wait(0.01)
    raise AssertionError(f"{what} did not happen within {BOUND} s")


async def test_async_hooks_run_on_the_core_loop_without_a_worker_thread() -> None:
    table: dict[str, float] = {}
    registrar = AsyncMemoryRegistrar(reg(), table)
    before = {t.name for t in threading.enumerate()}
    await registrar.aregister()
    assert registrar.health.state is RegistrarState.REGISTERED and table
    new_threads = {t.name for t in threading.enumerate()} - before
    assert new_threads <= {"sd-loop"}, new_threads  # no worker thread, no keepalive thread
    await registrar.aclose()
    assert table == {}
    assert registrar.threads == {"sd-loop"}


def test_async_hooks_serve_the_blocking_api_too(fake: FakeClock) -> None:
    table: dict[str, float] = {}
    with AsyncMemoryRegistrar(reg(ttl=30), table) as registrar:
        assert table
        until(lambda: bool(fake._sleepers), "the keepalive waiting")
        for _ in range(60):
            fake.advance(1.0)
        assert registrar.renewals == 6
        table.clear()  # the backend lost it
        fake.advance(10)
        until(lambda: registrar.restores == 1, "the restore")
        assert table
    assert table == {}


def test_an_async_registrar_keeps_a_failed_deregistration_pending() -> None:
    table: dict[str, float] = {}
    registrar = AsyncMemoryRegistrar(reg(), table)
    registrar.register()
    registrar.refuse_deregister = True
    with pytest.raises(RegistrationError):
        registrar.close()
    assert registrar.health.state is RegistrarState.DEREGISTERING
    registrar.refuse_deregister = False
    registrar.close()
    assert registrar.health.state is RegistrarState.CLOSED and table == {}


class SessionRegistrar(BaseRegistrar):
    """Liveness kept by a session of the client: no renewals; restored when the plugin says
    the session was lost."""

    backend_name = "session"
    renews = False

    def __init__(self, registration: Registration) -> None:
        super().__init__(registration)
        self.registrations = 0
        self.keepalives = 0

    def _backend_register(self) -> None:
        self.registrations += 1

    def _backend_deregister(self) -> None:
        pass

    def _backend_keepalive(self) -> bool:
        self.keepalives += 1
        return True


def test_a_registrar_without_renewals_restores_when_told(fake: FakeClock) -> None:
    registrar = SessionRegistrar(reg(ttl=10))
    with registrar:
        for _ in range(100):
            fake.advance(1.0)
        assert registrar.keepalives == 0
        registrar.mark_lost("session expired")
        until(lambda: registrar.restores == 1, "the restore")
        assert registrar.registrations == 2
        assert registrar.health.state is RegistrarState.REGISTERED


def test_registrars_without_renewals_hold_no_thread_until_one_is_lost() -> None:
    before = {t.name for t in threading.enumerate()}
    registrars = [SessionRegistrar(Registration("web", "127.0.0.1", 9000 + n)) for n in range(50)]
    for registrar in registrars:
        registrar.register()
    try:
        new = {t.name for t in threading.enumerate()} - before
        assert not [name for name in new if name.startswith("sd-keepalive")], new
        registrars[0].mark_lost("session expired")
        until(lambda: registrars[0].restores == 1, "the restore")
        until(
            lambda: not any(t.name.startswith("sd-keepalive") for t in threading.enumerate()),
            "the restoring thread to end",
        )
        registrars[0].mark_lost("expired again")
        until(lambda: registrars[0].restores == 2, "the second restore")
    finally:
        for registrar in registrars:
            registrar.close()
