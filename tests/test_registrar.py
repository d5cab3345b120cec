"""BaseRegistrar: idempotence, keepalive, restore after loss, context managers, exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from sd_core import RegistrarHealth, RegistrarState, Registration, RegistrationError
from sd_core.plugin import BaseRegistrar


class MemoryRegistrar(BaseRegistrar):
    """A registrar over an in-memory table standing in for a backend (pure-logic tests)."""

    backend_name = "memory"

    def __init__(self, registration: Registration, table: dict[str, Registration]) -> None:
        super().__init__(registration)
        self.table = table
        self.renewals = threading.Semaphore(0)
        self.fail_register = 0
        self.statuses: list[tuple[str, str]] = []

    def _backend_register(self) -> None:
        if self.fail_register:
            self.fail_register -= 1
            raise ConnectionError("backend down")
        self.table[self.registration.id] = self.registration

    def _backend_deregister(self) -> None:
        self.table.pop(self.registration.id, None)

    def _backend_keepalive(self) -> bool:
        self.renewals.release()
        return self.registration.id in self.table

    def _backend_set_status(self, status: str, note: str) -> None:
        self.statuses.append((status, note))


def reg(ttl: float = 0.3) -> Registration:
    return Registration("web", "127.0.0.1", 8080, ttl=ttl)


def test_register_and_deregister_are_idempotent() -> None:
    table: dict[str, Registration] = {}
    r = MemoryRegistrar(reg(), table)
    r.register()
    r.register()
    assert r.registered and list(table) == ["127.0.0.1:8080"]
    r.deregister()
    r.deregister()
    assert not r.registered and table == {}
    r.close()


def test_keepalive_runs_at_a_fraction_of_the_ttl() -> None:
    r = MemoryRegistrar(reg(ttl=0.15), {})
    assert r.keepalive_interval == pytest.approx(0.05)
    with r:
        for _ in range(3):
            assert r.renewals.acquire(timeout=2)


def test_lost_registration_is_restored_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    table: dict[str, Registration] = {}
    r = MemoryRegistrar(reg(ttl=0.15), table)
    with r:
        r.set_status("warning", "degraded")
        table.clear()  # the backend forgot us (agent restart, expired lease)
        r.fail_register = 2  # and is still unreachable for two attempts
        deadline = threading.Event()
        for _ in range(100):
            if r.restores == 1 and table:
                break
            deadline.wait(0.02)
        assert r.restores == 1
        assert "127.0.0.1:8080" in table
        assert r.statuses[-1] == ("warning", "degraded")
    assert "restored registration" in caplog.text


def test_mark_lost_restores_in_the_background() -> None:
    table: dict[str, Registration] = {}
    r = MemoryRegistrar(reg(ttl=30), table)
    with r:
        table.clear()
        r.mark_lost("session expired")
        done = threading.Event()
        for _ in range(250):
            if table:
                break
            done.wait(0.02)
        assert table and r.restores == 1


def test_register_failure_is_a_registration_error() -> None:
    r = MemoryRegistrar(reg(), {})
    r.fail_register = 1
    with pytest.raises(RegistrationError, match="memory: could not register web"):
        r.register()
    assert not r.registered
    r.register()
    assert r.registered
    r.close()
    with pytest.raises(RegistrationError, match="closed"):
        r.register()


def test_set_status_without_health_says_so() -> None:
    class NoHealth(MemoryRegistrar):
        _backend_set_status = BaseRegistrar._backend_set_status

    r = NoHealth(reg(), {})
    with pytest.raises(NotImplementedError, match="no notion of health"):
        r.set_status("passing")


async def test_async_context_manager() -> None:
    table: dict[str, Registration] = {}
    async with MemoryRegistrar(reg(), table) as r:
        assert r.registered and table
    assert table == {}


def test_repr_shows_state() -> None:
    r = MemoryRegistrar(reg(), {})
    assert "idle" in repr(r) and "web" in repr(r)


def test_registrations_are_withdrawn_at_interpreter_exit(tmp_path: Path) -> None:
    marker = tmp_path / "registered"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from sd_core import Registration
        from sd_core.plugin import BaseRegistrar

        marker = Path({str(marker)!r})

        class FileRegistrar(BaseRegistrar):
            def _backend_register(self):
                marker.write_text("yes")
            def _backend_deregister(self):
                marker.unlink()

        FileRegistrar(Registration("web", "127.0.0.1", 1, ttl=60)).register()
        assert marker.exists()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert not marker.exists()


class FlakyRegistrar(MemoryRegistrar):
    """Its keepalive fails while ``down`` is set; deregistration fails while ``stuck``."""

    def __init__(self, registration: Registration, table: dict[str, Registration]) -> None:
        super().__init__(registration, table)
        self.down = threading.Event()
        self.stuck = threading.Event()
        self.deregister_calls = 0

    def _backend_keepalive(self) -> bool:
        if self.down.is_set():
            raise ConnectionError("backend down: token=hunter2-secret")
        return super()._backend_keepalive()

    def _backend_deregister(self) -> None:
        self.deregister_calls += 1
        if self.stuck.is_set():
            raise ConnectionError("backend down")
        super()._backend_deregister()


def test_health_goes_renewing_then_failing_then_back_and_listeners_are_told() -> None:
    r = FlakyRegistrar(reg(ttl=0.3), {})
    states: list[RegistrarState] = []
    failing, back = threading.Event(), threading.Event()

    def listener(health: RegistrarHealth) -> None:
        states.append(health.state)
        if health.state is RegistrarState.FAILING:
            failing.set()
        elif failing.is_set() and health.state is RegistrarState.REGISTERED:
            back.set()

    r.on_health_change(listener)
    with r:
        assert r.health.state is RegistrarState.REGISTERED and r.health.healthy
        r.down.set()
        assert failing.wait(5)
        assert not r.health.healthy and r.health.failures >= 1
        assert "backend down" in str(r.health)
        r.down.clear()
        assert back.wait(5)
        assert r.health.failures == 0 and r.health.healthy
    assert states.index(RegistrarState.RENEWING) < states.index(RegistrarState.FAILING)


def test_lost_then_restored_shows_in_health() -> None:
    table: dict[str, Registration] = {}
    r = MemoryRegistrar(reg(ttl=0.3), table)
    states: list[RegistrarState] = []
    restored = threading.Event()

    def listener(health: RegistrarHealth) -> None:
        states.append(health.state)
        if health.restores:
            restored.set()

    r.on_health_change(listener)
    with r.health_changes() as changes:
        assert changes.get(1).state is RegistrarState.IDLE
        r.register()
        assert changes.get(1).state is RegistrarState.REGISTERED
        table.clear()
        assert restored.wait(5)
        # A listener may skip to the latest health; the restore is counted in it.
        assert states[-1] is RegistrarState.REGISTERED
        assert set(states) <= {RegistrarState.REGISTERED, RegistrarState.LOST}
        assert r.health.restores == 1
        r.close()
        while changes.get(1).state is not RegistrarState.CLOSED:
            pass
        with pytest.raises(StopIteration):
            changes.get(1)


def test_a_failed_deregistration_stays_pending_until_a_call_succeeds() -> None:
    table: dict[str, Registration] = {}
    r = FlakyRegistrar(reg(), table)
    r.register()
    r.stuck.set()
    with pytest.raises(RegistrationError):
        r.deregister()
    assert r.health.state is RegistrarState.DEREGISTERING and table
    with pytest.raises(RegistrationError):
        r.deregister()
    with pytest.raises(RegistrationError):
        r.close()
    assert r.deregister_calls == 3
    r.stuck.clear()
    r.close()
    assert table == {} and r.health.state is RegistrarState.CLOSED
    r.close()
    assert r.deregister_calls == 4


def test_registering_again_supersedes_a_pending_deregistration() -> None:
    table: dict[str, Registration] = {}
    r = FlakyRegistrar(reg(), table)
    r.register()
    r.stuck.set()
    with pytest.raises(RegistrationError):
        r.deregister()
    r.register()
    assert r.health.state is RegistrarState.REGISTERED
    r.stuck.clear()
    r.close()
    assert table == {}


def test_a_slow_health_listener_delays_nothing() -> None:
    release = threading.Event()
    r = FlakyRegistrar(reg(ttl=0.15), {})
    r.on_health_change(lambda health: release.wait(10))
    with r:
        for _ in range(3):  # the keepalive keeps its pace
            assert r.renewals.acquire(timeout=2)
    release.set()


def test_a_pending_deregistration_is_retried_at_exit(tmp_path: Path) -> None:
    marker = tmp_path / "registered"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from sd_core import Registration, RegistrationError
        from sd_core.plugin import BaseRegistrar

        marker = Path({str(marker)!r})
        attempts = []

        class FileRegistrar(BaseRegistrar):
            def _backend_register(self):
                marker.write_text("yes")
            def _backend_deregister(self):
                attempts.append(1)
                if len(attempts) == 1:
                    raise ConnectionError("down")
                marker.unlink()

        r = FileRegistrar(Registration("web", "127.0.0.1", 1, ttl=60))
        r.register()
        try:
            r.deregister()
        except RegistrationError:
            pass
        assert marker.exists()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert not marker.exists()


def test_errors_and_health_of_a_registrar_hold_no_secret() -> None:
    from sd_core._secrets import add_secret

    add_secret("hunter2-secret")
    r = FlakyRegistrar(reg(ttl=0.15), {})
    with r.health_changes() as changes, r:
        r.down.set()
        while (health := changes.get(5)).state is not RegistrarState.FAILING:
            pass
        assert "hunter2-secret" not in str(health)
        assert "hunter2-secret" not in str(health.last_error)
        assert "hunter2-secret" not in repr(health.last_error.__cause__)
        r.down.clear()
