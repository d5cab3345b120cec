"""What the conformance tests are given: a backend under test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

import sd_core
from sd_core import Event, Instance, Instancer, Registrar, Registration
from sd_core.testing import RegisteringChild

__all__ = [
    "ALL_CAPABILITIES",
    "BackendSpec",
    "BackendUnderTest",
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
    registered_id: Callable[[Instance], str] = lambda instance: instance.id
    """Recovers the ``Registration.id`` from a discovered instance's id (a backend may
    qualify ids, say by node, to keep them unique)."""

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

    def spawn_registrar(
        self, registration: Registration, timeout: float = 30.0
    ) -> RegisteringChild:
        """A child Python process that registers ``registration`` and then idles."""
        child = RegisteringChild(self.name, registration, self.options, timeout=timeout)
        self._cleanup.append(child.kill)
        return child

    def ids(self, event: Event) -> set[str]:
        """The registration ids of an event's instances."""
        return {self.spec.registered_id(instance) for instance in event.instances}

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
