"""Helpers for the Consul plugin's tests: timings, types, and waits."""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_sd import wait_for_event as wait_for

from sd_core import Event, Instancer, Registrar

__all__ = ["FAST", "MakeInstancer", "MakeRegistrar", "ids", "poll", "wait_for"]

FAST = {"wait": 1.0, "timeout": 2.0, "retry_max": 0.5}
"""Short blocking waits, timeouts and retry delays, so that the tests are quick."""

MakeInstancer = Callable[..., Instancer]
MakeRegistrar = Callable[..., Registrar]


def ids(event: Event) -> set[str]:
    """The registration ids of an event's instances (their ids without the node)."""
    return {instance.id.split("/", 1)[1] for instance in event.instances}


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.02)
