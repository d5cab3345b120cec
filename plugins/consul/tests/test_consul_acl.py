"""Default-deny ACLs: the token is sent on every call and never shown."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest
from consul_helpers import FAST, ids, wait_for

import sd_core
from sd_core import ConfigError, Registration, RegistrationError
from sd_core.testing.consul import ConsulServer


def make_token(server: ConsulServer, rules: str) -> str:
    """A token holding one policy with ``rules``; returns its secret."""
    name = f"sd-test-{uuid.uuid4().hex[:8]}"
    policy = server.api("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
    assert policy.status == 200, policy
    token = server.api("PUT", "/v1/acl/token", {"Policies": [{"Name": name}]})
    assert token.status == 200, token
    secret: str = token.json()["SecretID"]
    return secret


@pytest.fixture
def acl_options(consul_acl_server: ConsulServer) -> dict[str, Any]:
    return {"address": consul_acl_server.address, **FAST}


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(lines)


def test_a_token_that_allows_it_registers_discovers_and_keeps_alive(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = make_token(
        consul_acl_server,
        f'service "{sd_namespace}" {{ policy = "write" }}\nnode_prefix "" {{ policy = "read" }}',
    )
    registration = Registration(sd_namespace, "127.0.0.1", 20201, id="a", ttl=1.0)
    registrar = sd_core.registrar("consul", registration, token=token, **acl_options)
    instancer = sd_core.instancer("consul", sd_namespace, token=token, **acl_options)
    try:
        with instancer.subscribe() as sub:
            registrar.register()
            wait_for(sub, lambda e: ids(e) == {"a"}, 3.0, "instance a")
            # Several TTL periods: the TTL passes carry the token, so a stays passing.
            time.sleep(2.5)
            state = instancer.state
            assert state is not None
            assert ids(state) == {"a"}
            registrar.set_status("critical", "testing")
            wait_for(sub, lambda e: e.ok and not e.instances, 3.0, "a critical")
            registrar.set_status("passing")
            wait_for(sub, lambda e: ids(e) == {"a"}, 3.0, "a passing")
            registrar.deregister()  # carries the token too
            wait_for(sub, lambda e: e.ok and not e.instances, 3.0, "a deregistered")
        shown = [repr(registrar), repr(instancer), everything_logged(caplog)]
        assert not [text for text in shown if token in text]
    finally:
        registrar.close()
        instancer.stop()
    services = consul_acl_server.api("GET", "/v1/agent/services").json()
    assert "a" not in services


def test_without_a_token_registration_fails_naming_the_permission(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    registration = Registration(sd_namespace, "127.0.0.1", 20202, id="a", ttl=2.0)
    registrar = sd_core.registrar("consul", registration, **acl_options)
    try:
        with pytest.raises(RegistrationError, match=r"service:write") as info:
            registrar.register()
    finally:
        registrar.close()
    assert "permission denied" in str(info.value).lower()
    assert "no ACL token was given" in str(info.value)


def test_a_token_for_another_service_is_refused_and_never_shown(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = make_token(consul_acl_server, 'service "someone-else" { policy = "write" }')
    registration = Registration(sd_namespace, "127.0.0.1", 20203, id="a", ttl=2.0)
    registrar = sd_core.registrar("consul", registration, token=token, **acl_options)
    try:
        with pytest.raises(RegistrationError, match=rf"service:write.*{sd_namespace}") as info:
            registrar.register()
    finally:
        registrar.close()
    chain = [info.value, info.value.__cause__]
    shown = [*map(str, chain), repr(registrar), everything_logged(caplog)]
    assert not [text for text in shown if token in text]


def test_discovery_without_a_token_is_an_error_event(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    registration = Registration(sd_namespace, "127.0.0.1", 20204, id="a", ttl=5.0)
    registrar = sd_core.registrar(
        "consul", registration, token=consul_acl_server.token, **acl_options
    )
    instancer = sd_core.instancer("consul", sd_namespace, **acl_options)
    try:
        registrar.register()
        with instancer.subscribe() as sub:
            event = wait_for(sub, lambda e: not e.ok, 3.0, "an error event")
        assert isinstance(event.error, ConfigError)
        assert "service:read" in str(event.error)
    finally:
        instancer.stop()
        registrar.close()


def test_discovery_with_an_unknown_token_is_an_error_event_without_the_token(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = str(uuid.uuid4())
    instancer = sd_core.instancer("consul", sd_namespace, token=token, **acl_options)
    try:
        with instancer.subscribe() as sub:
            event = wait_for(sub, lambda e: not e.ok, 3.0, "an error event")
        assert "does not know the ACL token" in str(event.error)
    finally:
        instancer.stop()
    shown = [str(event.error), repr(event), repr(instancer), everything_logged(caplog)]
    assert not [text for text in shown if token in text]


def test_token_from_consul_http_token(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert consul_acl_server.token is not None
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", consul_acl_server.token)
    registration = Registration(sd_namespace, "127.0.0.1", 20205, id="a", ttl=5.0)
    with sd_core.registrar("consul", registration, **acl_options):
        instancer = sd_core.instancer("consul", sd_namespace, **acl_options)
        try:
            with instancer.subscribe() as sub:
                wait_for(sub, lambda e: ids(e) == {"a"}, 3.0, "instance a")
        finally:
            instancer.stop()
