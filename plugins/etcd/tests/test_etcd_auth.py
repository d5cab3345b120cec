"""Authentication (etcd 3.5 with auth on): a user limited to its prefix, refusals that say
what was refused, a token renewed when etcd forgets it, and the password kept out of sight."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from etcd_helpers import Gateway, ids, poll, wait_for
from pytest_sd.etcd import EtcdServer

import sd_core
from sd_core import ConfigError, Registration, RegistrationError


@pytest.fixture
def user_options(etcd_auth_server: EtcdServer) -> dict[str, Any]:
    """The limited user's options: its password, its prefix (/sd-user/)."""
    return {
        "address": etcd_auth_server.address,
        "username": etcd_auth_server.user,
        "password": etcd_auth_server.password,
        "prefix": etcd_auth_server.user_prefix,
        "timeout": 2.0,
        "retry_max": 0.5,
    }


@pytest.fixture
def made() -> Iterator[list[Any]]:
    """Instancers and registrars to stop or close after the test."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        (thing.close if hasattr(thing, "deregister") else thing.stop)()


def test_a_user_limited_to_its_prefix_registers_and_discovers(
    etcd_auth_server: EtcdServer,
    sd_namespace: str,
    user_options: dict[str, Any],
    made: list[Any],
) -> None:
    reg = Registration(sd_namespace, "127.0.0.1", 20001, id="a", ttl=2.0)
    registrar = sd_core.registrar("etcd", reg, **user_options)
    made.append(registrar)
    instancer = sd_core.instancer("etcd", sd_namespace, **user_options)
    made.append(instancer)
    registrar.register()
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, 5.0, "instance a")
        registrar.deregister()
        wait_for(sub, lambda e: e.ok and not e.instances, 5.0, "no instance")
    root = Gateway(etcd_auth_server)  # the fixture's helpers authenticate as root
    assert root.get(f"{etcd_auth_server.user_prefix}{sd_namespace}/a") is None


def test_outside_its_prefix_the_errors_name_the_key_and_the_permission(
    sd_namespace: str, user_options: dict[str, Any], made: list[Any]
) -> None:
    options = {**user_options, "prefix": "/services"}
    reg = Registration(sd_namespace, "127.0.0.1", 20002, id="a", ttl=2.0)
    registrar = sd_core.registrar("etcd", reg, **options)
    made.append(registrar)
    with pytest.raises(RegistrationError) as refused:
        registrar.register()
    message = str(refused.value)
    assert "permission denied" in message
    assert f"'/services/{sd_namespace}/a'" in message
    assert "user 'sd-user' has no write (readwrite) permission" in message
    instancer = sd_core.instancer("etcd", sd_namespace, **options)
    made.append(instancer)
    with instancer.subscribe() as sub:
        event = wait_for(sub, lambda e: not e.ok, 5.0, "an error event")
    assert isinstance(event.error, ConfigError)
    assert "permission denied: user 'sd-user' has no read permission" in str(event.error)
    assert f"'/services/{sd_namespace}/'" in str(event.error)


def test_a_wrong_password_or_none_is_a_clear_error(
    etcd_auth_server: EtcdServer,
    sd_namespace: str,
    user_options: dict[str, Any],
    made: list[Any],
) -> None:
    wrong = {**user_options, "password": "not-the-password"}
    instancer = sd_core.instancer("etcd", sd_namespace, **wrong)
    made.append(instancer)
    with instancer.subscribe() as sub:
        event = wait_for(sub, lambda e: not e.ok, 5.0, "an error event")
    assert isinstance(event.error, ConfigError)
    assert "authentication failed: wrong username or password (user 'sd-user')" in str(event.error)
    registrar = sd_core.registrar(
        "etcd", Registration(sd_namespace, "127.0.0.1", 20003, ttl=2.0), **wrong
    )
    made.append(registrar)
    with pytest.raises(RegistrationError, match="wrong username or password"):
        registrar.register()

    anonymous = {k: v for k, v in user_options.items() if k not in ("username", "password")}
    instancer = sd_core.instancer("etcd", sd_namespace, **anonymous)
    made.append(instancer)
    with instancer.subscribe() as sub:
        event = wait_for(sub, lambda e: not e.ok, 5.0, "an error event")
    assert isinstance(event.error, ConfigError)
    assert "no username and password were given" in str(event.error)


def test_the_token_is_renewed_when_etcd_forgets_it(
    etcd_auth_server: EtcdServer,
    sd_namespace: str,
    user_options: dict[str, Any],
    made: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """etcd keeps its simple tokens in memory: a restarted member knows none."""
    caplog.set_level(logging.INFO, logger="sd_etcd")
    reg = Registration(sd_namespace, "127.0.0.1", 20004, id="a", ttl=2.0)
    registrar = sd_core.registrar("etcd", reg, **user_options)
    made.append(registrar)
    instancer = sd_core.instancer("etcd", sd_namespace, **user_options)
    made.append(instancer)
    registrar.register()
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, 5.0, "instance a")
        etcd_auth_server.stop()
        etcd_auth_server.start()
        poll(
            lambda: any("authenticating again" in r.getMessage() for r in caplog.records),
            10.0,
            "a new token",
        )
        poll(lambda: registrar.health.healthy, 10.0, "the registrar healthy")
        second = sd_core.registrar(
            "etcd", Registration(sd_namespace, "127.0.0.1", 20005, id="b", ttl=2.0), **user_options
        )
        made.append(second)
        second.register()
        wait_for(sub, lambda e: e.ok and ids(e) == {"a", "b"}, 10.0, "a and b")
    assert registrar.restores == 0  # the lease lived on: only the token was renewed


def test_the_password_shows_nowhere(
    etcd_auth_server: EtcdServer,
    sd_namespace: str,
    user_options: dict[str, Any],
    made: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = user_options["password"]
    texts: list[str] = []
    reg = Registration(sd_namespace, "127.0.0.1", 20006, id="a", ttl=2.0)
    registrar = sd_core.registrar("etcd", reg, **user_options)
    made.append(registrar)
    instancer = sd_core.instancer("etcd", sd_namespace, **user_options)
    made.append(instancer)
    registrar.register()
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, 5.0, "instance a")
        texts += [repr(registrar), repr(instancer), repr(registrar.client)]  # type: ignore[attr-defined]
        etcd_auth_server.stop()
        event = wait_for(sub, lambda e: not e.ok, 5.0, "an error event")
        texts += [repr(event), str(event.error)]
        with pytest.raises(RegistrationError) as failed:
            registrar.deregister()
        texts += [str(failed.value), repr(failed.value), repr(failed.value.__cause__)]
        etcd_auth_server.start()
        wait_for(sub, lambda e: e.ok, 10.0, "etcd back")
    registrar.close()
    texts.append(caplog.text)
    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records
    leaks = [text for text in texts if password in text or repr(password)[1:-1] in text]
    assert leaks == []
