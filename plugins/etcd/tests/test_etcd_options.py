"""Options and selection: what is refused before any request, and how addresses are read."""

from __future__ import annotations

import pytest
from pytest_sd.etcd import EtcdServer
from sd_etcd import EtcdBackend, EtcdRegistrar

import sd_core
from sd_core import ConfigError, Registration
from sd_core.plugin import Address


def _registrar(**options: object) -> EtcdRegistrar:
    registrar = sd_core.registrar("etcd", Registration("web", "127.0.0.1", 8080), **options)
    assert isinstance(registrar, EtcdRegistrar)
    return registrar


def test_the_backend_is_installed_as_a_plugin() -> None:
    info = sd_core.backends()["etcd"]
    assert info.distribution == "sd-etcd"
    names = [option.name for option in info.backend.options]
    assert names[:9] == [
        "address",
        "username",
        "password",
        "ca",
        "cert",
        "key",
        "verify",
        "timeout",
        "prefix",
    ]
    assert {"value", "retry_max"} <= set(names)
    password = next(o for o in info.backend.options if o.name == "password")
    assert password.secret and password.env == "ETCDCTL_PASSWORD"


def test_several_endpoints_from_a_list_a_comma_separated_string_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = (Address("10.0.0.1", 2379), Address("10.0.0.2", 2380), Address("::1", 2379))
    for address in (
        ["10.0.0.1", "10.0.0.2:2380", "[::1]"],
        "10.0.0.1:2379,10.0.0.2:2380,[::1]:2379",
    ):
        registrar = _registrar(address=address)
        try:
            endpoints = tuple(
                Address(e.host, e.port) for e in registrar.client.connection.endpoints
            )
            assert endpoints == expected
        finally:
            registrar.close()
    monkeypatch.setenv("ETCDCTL_ENDPOINTS", "http://10.0.0.1:2379,10.0.0.2:2380")
    registrar = _registrar()
    try:
        assert [e.netloc for e in registrar.client.connection.endpoints] == [
            "10.0.0.1:2379",
            "10.0.0.2:2380",
        ]
        assert registrar.client.connection.tls is None
    finally:
        registrar.close()


def test_the_url_form(etcd_server: EtcdServer) -> None:
    instancer = sd_core.instancer(f"etcd://{etcd_server.address}/web?prefix=/reg&retry_max=1")
    try:
        assert repr(instancer).startswith("<")
    finally:
        instancer.stop()
    registrar = sd_core.registrar(
        f"etcd://{etcd_server.address}/web?value=address&prefix=/reg/",
        Registration("web", "127.0.0.1", 8080),
    )
    try:
        assert isinstance(registrar, EtcdRegistrar)
        assert registrar.key == "/reg/web/127.0.0.1:8080"
        assert registrar.value == b"127.0.0.1:8080"
    finally:
        registrar.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"password": "secret-value"}, "password needs option username"),
        ({"value": "yaml"}, "value"),
        ({"address": "user:pw@10.0.0.1:2379"}, "credentials"),
        ({"address": "10.0.0.1:0"}, "port 0"),
        ({"address": "ftp://10.0.0.1"}, "scheme"),
        ({"address": ["https://10.0.0.1", "http://10.0.0.2"]}, "says http://"),
        ({"timeout": 0}, "timeout"),
        ({"retry_max": "1h"}, "retry_max"),
    ],
)
def test_bad_options_are_refused_before_any_request(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        sd_core.instancer("etcd", "web", **options)
    assert "secret-value" not in str(refused.value)
    with pytest.raises(ConfigError, match=message):
        EtcdBackend().registrar(Registration("web", "127.0.0.1", 8080), **options)


@pytest.mark.parametrize("service", ["a/b", "/web", " "])
def test_a_service_that_cannot_be_a_key_prefix_is_refused(service: str) -> None:
    with pytest.raises(ConfigError, match="service"):
        sd_core.instancer("etcd", service)
    with pytest.raises(ConfigError, match="service"):
        EtcdBackend().instancer(service)
    if service.strip():
        with pytest.raises(ConfigError, match="'/'"):
            EtcdBackend().registrar(Registration(service, "127.0.0.1", 8080))


def test_a_username_without_a_password_does_not_authenticate() -> None:
    registrar = _registrar(username="root")
    try:
        assert registrar.client.connection.username is None
    finally:
        registrar.close()


def test_the_client_repr_shows_no_password() -> None:
    registrar = _registrar(username="root", password="hunter2-long-password")
    try:
        assert "hunter2" not in repr(registrar.client)
        assert "hunter2" not in repr(registrar.client.connection)
        assert "user='root'" in repr(registrar.client)
    finally:
        registrar.close()
