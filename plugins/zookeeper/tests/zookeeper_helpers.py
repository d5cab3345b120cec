"""Helpers for the ZooKeeper plugin's tests: timings, a plain kazoo client for writing nodes as
the peers do, and waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient  # type: ignore[import-untyped]
from pytest_sd import wait_for_event as wait_for

from sd_core import Event, Instancer, Registrar

__all__ = ["FAST", "MakeInstancer", "MakeRegistrar", "ids", "plain_client", "poll", "wait_for"]

FAST: dict[str, Any] = {"timeout": 2.0, "session_timeout": 2.0}
"""Short timeouts, so that the tests are quick (the test servers tick every 500 ms: sessions
of 1 to 10 s)."""

MakeInstancer = Callable[..., Instancer]
MakeRegistrar = Callable[..., Registrar]


def ids(event: Event) -> set[str]:
    """The ids of an event's instances."""
    return {instance.id for instance in event.instances}


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.02)


def plain_client(hosts: str, **kwargs: Any) -> Any:
    """A started kazoo client of its own (another process, as far as ZooKeeper knows)."""
    client = KazooClient(hosts=hosts, timeout=kwargs.pop("timeout", 4.0), **kwargs)
    client.start(timeout=15)
    return client
