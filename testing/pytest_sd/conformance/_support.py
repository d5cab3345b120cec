"""What the conformance checks are given: the backend under test, and ways to watch it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sd_core
from pytest_sd.registering_child import RegisteringChild
from sd_core import Event, Instancer, Registrar, Registration
from sd_core._conformance import Conformance

__all__ = ["BackendUnderTest", "Latest"]


@dataclass
class BackendUnderTest:
    """One backend, as a check sees it: factories, a fresh service name, the fault handles.

    Everything made through it is stopped or closed when the check ends, after a server
    the check stopped or paused is brought back.
    """

    conformance: Conformance
    service: str = field(default_factory=lambda: f"conformance-{uuid.uuid4().hex[:12]}")
    _cleanup: list[Callable[[], object]] = field(default_factory=list, repr=False)
    _server_down: bool = field(default=False, repr=False)
    _server_paused: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        """The backend's name."""
        return self.conformance.backend

    @property
    def ttl(self) -> float:
        """The registration TTL the checks use."""
        return self.conformance.ttl

    @property
    def propagation(self) -> float:
        """How long a change may take to reach a subscriber."""
        return self.conformance.propagation

    @property
    def options(self) -> dict[str, Any]:
        """The options of every instancer and registrar (a copy)."""
        return dict(self.conformance.options)

    def instancer(self, service: str | None = None, **extra: Any) -> Instancer:
        """An instancer of ``service`` (default: this check's service)."""
        options = {**self.conformance.options, **extra}
        instancer = sd_core.instancer(self.name, service or self.service, **options)
        self._cleanup.append(instancer.stop)
        return instancer

    def registrar(self, registration: Registration, **extra: Any) -> Registrar:
        """A registrar of ``registration`` (not registered yet)."""
        options = {**self.conformance.options, **extra}
        registrar = sd_core.registrar(self.name, registration, **options)
        self._cleanup.append(registrar.close)
        return registrar

    def instance_id(self, name: str) -> str:
        """The registration id of instance ``name`` in this check: unique to the check, so
        that checks sharing a server never meet (ids may be server-wide, as in Consul)."""
        return f"{self.service}-{name}"

    def registration(
        self, name: str, port: int, *, service: str | None = None, **fields: Any
    ) -> Registration:
        """A registration of instance ``name`` of this check's service (or ``service``), with
        the TTL the backend is tested at."""
        fields.setdefault("ttl", self.ttl)
        return Registration(
            service or self.service,
            self.conformance.host,
            port,
            id=self.instance_id(name),
            **fields,
        )

    def spawn_registrar(
        self, registration: Registration, timeout: float = 30.0
    ) -> RegisteringChild:
        """A child Python process that registers ``registration`` and then idles."""
        child = RegisteringChild(self.name, registration, self.options, timeout=timeout)
        self._cleanup.append(child.kill)
        return child

    def ids(self, event: Event) -> set[str]:
        """The names (see :meth:`instance_id`) of an event's instances."""
        prefix = self.instance_id("")
        return {
            self.conformance.registered_id(instance).removeprefix(prefix)
            for instance in event.instances
        }

    # -- faults ------------------------------------------------------------------------
    def _fault(self, name: str) -> Callable[[], object]:
        handle: Callable[[], object] | None = getattr(self.conformance.faults, name)
        if handle is None:  # the capability checks make this unreachable
            raise AssertionError(f"the {self.name} backend gave no {name!r} fault handle")
        return handle

    def stop_server(self) -> None:
        """The server goes away, keeping its state."""
        self._server_down = True
        self._fault("stop")()

    def start_server(self) -> None:
        """The stopped server comes back with its state (ready on return)."""
        self._fault("start")()
        self._server_down = False

    def wipe_server(self) -> None:
        """The server restarts with its state lost (ready on return)."""
        self._server_down = True
        self._fault("wipe")()
        self._server_down = False

    def pause_server(self) -> None:
        """The server freezes: it keeps its sockets and answers nothing."""
        self._server_paused = True
        self._fault("pause")()

    def resume_server(self) -> None:
        """The frozen server thaws."""
        self._fault("resume")()
        self._server_paused = False

    def close(self) -> None:
        """Bring the server back if a check left it down, then stop and close everything
        made through this object, newest first."""
        errors: list[Exception] = []
        for broken, repair in (
            (self._server_paused, self.resume_server),
            (self._server_down, self.start_server),
        ):
            if broken:
                try:
                    repair()
                except Exception as exc:
                    errors.append(exc)
        while self._cleanup:
            try:
                self._cleanup.pop()()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise ExceptionGroup("cleaning up the backend under test failed", errors)


class Latest:
    """Subscribed to an instancer: every event it delivers, for checks on the latest state
    and on how many events were sent. Deregisters itself on :meth:`close`."""

    def __init__(self, instancer: Instancer) -> None:
        self.instancer = instancer
        self.events: list[Event] = []
        self._changed = threading.Condition()
        instancer.register(self)

    def __call__(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    @property
    def latest(self) -> Event | None:
        """The last event delivered, if any."""
        with self._changed:
            return self.events[-1] if self.events else None

    def wait(self, check: Callable[[Event], bool], timeout: float, what: str) -> Event:
        """Wait until the *latest* event passes ``check`` and return it; ``AssertionError``
        naming ``what`` and the latest event after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                last = self.events[-1] if self.events else None
                if last is not None and check(last):
                    return last
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"the latest event did not show {what} within {timeout:g} s: {last!r}"
                    )
                self._changed.wait(remaining)

    def mark(self) -> int:
        """A position in the events, for :meth:`wait_any`."""
        with self._changed:
            return len(self.events)

    def wait_any(
        self, check: Callable[[Event], bool], timeout: float, what: str, *, since: int
    ) -> Event:
        """Wait until some event delivered after ``since`` (a :meth:`mark`) passes ``check``
        and return it; ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = since
            while True:
                for event in self.events[seen:]:
                    if check(event):
                        return event
                seen = len(self.events)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = self.events[-1] if self.events else None
                    raise AssertionError(
                        f"no event with {what} within {timeout:g} s; latest: {last!r}"
                    )
                self._changed.wait(remaining)

    def close(self) -> None:
        """Stop receiving events."""
        self.instancer.deregister(self)
