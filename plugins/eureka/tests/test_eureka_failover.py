"""Several servers: when the first one stops, registration and discovery go on through the
second (two real servers that are not peers: the second learns the instance from the
registrar's registering again, as it would after a partition)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from eureka_helpers import FAST, ids, poll, wait_for
from pytest_sd.eureka import EurekaServer
from sd_eureka import EurekaRegistrar

import sd_core
from sd_core import Event, Registration

PROPAGATION = 5.0


def test_the_second_server_takes_over_when_the_first_stops(
    eureka_server: EurekaServer,
    eureka_second_server: EurekaServer,
    sd_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_eureka")
    first, second = eureka_server, eureka_second_server
    options: dict[str, Any] = {
        "address": [first.address, second.address],
        "username": first.username,
        "password": first.password,
        **FAST,
    }
    app = sd_namespace.upper()
    events: list[Event] = []
    registrar = sd_core.registrar(
        "eureka", Registration(sd_namespace, "127.0.0.1", 20601, id="a", ttl=3.0), **options
    )
    second_registrar = sd_core.registrar(
        "eureka", Registration(sd_namespace, "127.0.0.1", 20602, id="b", ttl=3.0), **options
    )
    instancer = sd_core.instancer("eureka", sd_namespace, **options)
    assert isinstance(registrar, EurekaRegistrar)
    try:
        instancer.register(events.append)
        with instancer.subscribe() as sub:
            registrar.register()
            wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "a through the first")
            assert first.api("GET", f"/apps/{app}/a").status == 200
            assert second.api("GET", f"/apps/{app}/a").status == 404
            first.stop()
            # The next renewal fails over to the second, which answers 404: registered there.
            bound = registrar.keepalive_interval + PROPAGATION
            poll(lambda: second.api("GET", f"/apps/{app}/a").status == 200, bound, "a on second")
            wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "a through the second")
            # Discovery goes on through the second server.
            second_registrar.register()
            wait_for(sub, lambda e: ids(e) == {"a", "b"}, PROPAGATION, "a and b")
        poll(lambda: registrar.health.healthy, PROPAGATION, "the registrar healthy")
        assert registrar.health.restores >= 1
        # The poller failed over inside its calls: no subscriber ever saw an error.
        assert all(event.ok for event in events), [e for e in events if not e.ok]
        assert "it is used first from now on" in caplog.text
    finally:
        instancer.stop()
        registrar.close()
        second_registrar.close()
