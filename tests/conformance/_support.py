"""What the conformance tests are given: a backend under test, and bounded waits."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sd_core
from sd_core import Event, Instancer, Registrar, Registration, Subscription

__all__ = [
    "ALL_CAPABILITIES",
    "BackendSpec",
    "BackendUnderTest",
    "ids",
    "wait_for",
    "wait_for_async",
]

ALL_CAPABILITIES = frozenset(
    {
        "discovery",  # an instancer
        "registration",  # a registrar
        "tags",  # tags survive registration -> discovery
        "meta",  # metadata survives registration -> discovery
        "weight",  # Registration.weight survives
        "zone",  # Registration.zone survives
        "process_death",  # a SIGKILLed registering process drops out within ttl + margin
    }
)
"""Every capability a test may require with ``@pytest.mark.requires(...)``."""

_CHILD = Path(__file__).with_name("_child.py")


@dataclass(frozen=True)
class BackendSpec:
    """How to run the suite against one backend: a few lines in ``conftest.BACKENDS``.

    ``options(request)`` gives the keyword options of ``sd_core.instancer`` /
    ``sd_core.registrar`` (it may start a server through fixtures); ``capabilities``
    declares what the backend can do, and tests needing anything else are skipped.
    """

    options: Callable[[pytest.FixtureRequest], Mapping[str, Any]]
    capabilities: frozenset[str]
    ttl: float = 2.0
    """The registration TTL the tests use."""
    propagation: float = 5.0
    """How long a change may take to reach a subscriber."""
    death_margin: float = 3.0
    """How long past its TTL a killed process's registration may linger."""
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        unknown = self.capabilities - ALL_CAPABILITIES
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}")


@dataclass
class BackendUnderTest:
    """One backend, as a test sees it: factories, a fresh service name, the TTL to use.

    Everything made through it is stopped or closed when the test ends.
    """

    name: str
    spec: BackendSpec
    options: Mapping[str, Any]
    service: str = field(default_factory=lambda: f"conformance-{uuid.uuid4().hex[:12]}")
    _cleanup: list[Callable[[], object]] = field(default_factory=list, repr=False)

    @property
    def ttl(self) -> float:
        return self.spec.ttl

    @property
    def propagation(self) -> float:
        return self.spec.propagation

    def instancer(self, service: str | None = None) -> Instancer:
        """An instancer of ``service`` (default: this test's service)."""
        instancer = sd_core.instancer(self.name, service or self.service, **self.options)
        self._cleanup.append(instancer.stop)
        return instancer

    def registrar(self, registration: Registration) -> Registrar:
        """A registrar of ``registration`` (not registered yet)."""
        registrar = sd_core.registrar(self.name, registration, **self.options)
        self._cleanup.append(registrar.close)
        return registrar

    def registration(self, instance_id: str, port: int, **fields: Any) -> Registration:
        """A registration of this test's service with the TTL the backend is tested at."""
        fields.setdefault("ttl", self.ttl)
        return Registration(self.service, self.spec.host, port, id=instance_id, **fields)

    def spawn_registrar(self, registration: Registration, timeout: float = 30.0) -> Child:
        """A child Python process that registers ``registration`` and then idles."""
        spec = {
            "backend": self.name,
            "options": dict(self.options),
            "registration": {
                "service": registration.service,
                "host": registration.host,
                "port": registration.port,
                "id": registration.id,
                "tags": sorted(registration.tags),
                "meta": dict(registration.meta),
                "ttl": registration.ttl,
                "weight": registration.weight,
                "zone": registration.zone,
            },
        }
        child = Child([sys.executable, str(_CHILD), json.dumps(spec)])
        self._cleanup.append(child.kill)
        child.wait_ready(timeout)
        return child

    def close(self) -> None:
        """Stop and close everything made through this object, newest first."""
        errors: list[Exception] = []
        while self._cleanup:
            try:
                self._cleanup.pop()()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise ExceptionGroup("cleaning up the backend under test failed", errors)


class Child:
    """A registering child process; its output is kept for failure messages."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.output: list[str] = []

    def wait_ready(self, timeout: float) -> None:
        """Wait until the child printed READY; fail the test after ``timeout`` seconds."""
        stdout = self.proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([stdout], [], [], remaining)
            if not readable:
                break
            line = stdout.readline().decode(errors="replace")
            if not line:
                break  # it exited
            self.output.append(line)
            if line.strip() == "READY":
                return
        self.kill()
        pytest.fail(f"the registering child did not get ready:\n{''.join(self.output)}")

    def kill(self) -> None:
        """SIGKILL the child (no clean-up runs in it) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def ids(event: Event) -> set[str]:
    """The instance ids of an event."""
    return {instance.id for instance in event.instances}


def wait_for(sub: Subscription, check: Callable[[Event], bool], timeout: float, what: str) -> Event:
    """Take events until one passes ``check``; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Event | None = None
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            last = sub.get(remaining)
        except TimeoutError:
            break
        if check(last):
            return last
    pytest.fail(f"no event with {what} within {timeout} s; last event: {last!r}")


async def wait_for_async(
    sub: Subscription, check: Callable[[Event], bool], timeout: float, what: str
) -> Event:
    """Async twin of :func:`wait_for`."""
    deadline = time.monotonic() + timeout
    last: Event | None = None
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            last = await sub.get_async(remaining)
        except TimeoutError:
            break
        if check(last):
            return last
    pytest.fail(f"no event with {what} within {timeout} s; last event: {last!r}")
