"""Helpers for the Eureka plugin's tests: timings, option sets, waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pytest_sd import wait_for_event as wait_for
from pytest_sd.eureka import EurekaServer
from sd_eureka import EurekaRegistrar
from sd_eureka._poller import TASK_NAME

from sd_core import Event, Instancer
from sd_core.plugin import core_loop

__all__ = [
    "FAST",
    "MakeInstancer",
    "MakeRegistrar",
    "ids",
    "options_for",
    "poll",
    "poll_tasks",
    "put",
    "raw_instance",
    "wait_for",
]

FAST: dict[str, Any] = {"refresh": 0.3, "timeout": 2.0, "retry_max": 0.5}
"""Short refresh, timeouts and retry delays, so that the tests are quick."""

MakeInstancer = Callable[..., Instancer]
MakeRegistrar = Callable[..., EurekaRegistrar]


def options_for(server: EurekaServer) -> dict[str, Any]:
    """Options reaching ``server`` with its credentials (as options), and FAST timings."""
    return {
        "address": server.address,
        "username": server.username,
        "password": server.password,
        **FAST,
    }


def ids(event: Event) -> set[str]:
    """The instance ids of an event."""
    return {instance.id for instance in event.instances}


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.02)


def poll_tasks() -> int:
    """How many registry pollers run on the core's loop."""

    async def count() -> int:
        return sum(
            1
            for task in asyncio.all_tasks()
            if task.get_name().startswith(TASK_NAME) and not task.done()
        )

    return core_loop().call(count(), timeout=5)


def raw_instance(app: str, ident: str, **fields: Any) -> dict[str, Any]:
    """An instance document as other clients write it, for the server's REST API."""
    return {
        "instance": {
            "instanceId": ident,
            "hostName": "127.0.0.1",
            "app": app,
            "ipAddr": "127.0.0.1",
            "vipAddress": app.lower(),
            "status": "UP",
            "port": {"$": 8080, "@enabled": "true"},
            "dataCenterInfo": {
                "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
                "name": "MyOwn",
            },
            "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
            "lastDirtyTimestamp": str(int(time.time() * 1000)),
            **fields,
        }
    }


def put(server: EurekaServer, app: str, ident: str, **fields: Any) -> None:
    """Register ``ident`` in ``app`` through the server's REST API (as another client)."""
    response = server.api("POST", f"/apps/{app}", raw_instance(app, ident, **fields))
    assert response.status == 204, response
