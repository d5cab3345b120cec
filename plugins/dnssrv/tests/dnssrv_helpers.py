"""Helpers for the dnssrv plugin's tests: options, and events waited for in real time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pytest_sd.dns import BindServer

from sd_core import Event, Instancer, Registrar

__all__ = [
    "FAST",
    "Events",
    "MakeInstancer",
    "MakeRegistrar",
    "bind_options",
    "poll",
    "summary",
]

MakeInstancer = Callable[..., Instancer]
MakeRegistrar = Callable[..., Registrar]

FAST: dict[str, Any] = {"timeout": 1.0, "min_refresh": 0.1, "max_refresh": 0.5, "retry_max": 0.5}
"""Short timeouts, refreshes and retry delays, so that the tests are quick."""


def bind_options(bind: BindServer, **extra: Any) -> dict[str, Any]:
    """Options that discover in and register to the BIND fixture's zone, with its key."""
    return {
        "address": bind.address,
        "domain": bind.zone,
        "key_name": bind.tsig_key_name,
        "key_secret": bind.tsig_secret,
        **FAST,
        **extra,
    }


def summary(event: Event) -> set[tuple[str, int, int, int, str]]:
    """``(host, port, priority, weight, target)`` of each instance of an event."""
    return {
        (i.host, i.port, i.priority, i.weight, i.meta.get("target", "")) for i in event.instances
    }


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true; ``AssertionError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.02)


class Events:
    """Every event an instancer delivers, waited for in real time (also under a FakeClock,
    which a Subscription's timeouts would follow). Deregisters itself on :meth:`close`."""

    def __init__(self, instancer: Instancer) -> None:
        self.instancer = instancer
        self.events: list[Event] = []
        self._changed = threading.Condition()
        instancer.register(self)

    def __call__(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def count(self) -> int:
        """How many events were delivered so far."""
        with self._changed:
            return len(self.events)

    def wait(
        self, check: Callable[[Event], bool], timeout: float, what: str, *, since: int = 0
    ) -> Event:
        """The first event after the first ``since`` ones that passes ``check`` (delivered
        already or within ``timeout`` real seconds); ``AssertionError`` naming ``what``."""
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
                    raise AssertionError(
                        f"no event with {what} within {timeout:g} s: {self.events[-3:]!r}"
                    )
                self._changed.wait(remaining)

    def wait_next(self, since: int, timeout: float, what: str) -> Event:
        """The first event delivered after the first ``since`` ones."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.events) <= since:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {timeout:g} s: {self.events[-3:]!r}")
                self._changed.wait(remaining)
            return self.events[since]

    def close(self) -> None:
        """Stop receiving events."""
        self.instancer.deregister(self)
