"""BaseRegistrar: idempotence, keepalive, restore after loss, context managers, exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from sd_core import BaseRegistrar, Registration, RegistrationError


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
        from sd_core import BaseRegistrar, Registration

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
