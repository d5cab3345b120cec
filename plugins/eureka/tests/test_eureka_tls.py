"""TLS through the kit's connection options, against a real Eureka server that serves HTTPS
only, with certificates of pytest-sd's test CA, asks clients for theirs (mutual TLS) and
sits behind basic auth (the ``eureka_tls_server`` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
from eureka_helpers import FAST, ids, wait_for
from pytest_sd.eureka import EurekaTLSServer

import sd_core
from sd_core import BackendUnavailableError, ConfigError, Registration, RegistrationError

PROPAGATION = 5.0


def tls_options(server: EurekaTLSServer, **overrides: Any) -> dict[str, Any]:
    certs = server.certificates
    return {
        "address": f"https://{server.address}",
        "username": server.username,
        "password": server.password,
        "ca": str(certs.ca),
        "cert": str(certs.client_cert),
        "key": str(certs.client_key),
        **FAST,
        **overrides,
    }


def first_event(options: dict[str, Any], service: str, check: Any, what: str) -> sd_core.Event:
    """The first event of an instancer made with ``options`` that passes ``check``."""
    instancer = sd_core.instancer("eureka", service, **options)
    try:
        with instancer.subscribe() as sub:
            return wait_for(sub, check, PROPAGATION, what)
    finally:
        instancer.stop()


def test_mutual_tls(eureka_tls_server: EurekaTLSServer, sd_namespace: str) -> None:
    server = eureka_tls_server
    assert server.url.startswith("https://")
    options = tls_options(server)
    registration = Registration(sd_namespace, "127.0.0.1", 20701, id="a", ttl=3.0)
    with sd_core.registrar("eureka", registration, **options) as registrar:
        first_event(options, sd_namespace, lambda e: ids(e) == {"a"}, "a over TLS")
        held = server.api("GET", f"/apps/{sd_namespace.upper()}/a")
        assert held.status == 200 and held.json()["instance"]["port"]["$"] == 20701
        assert registrar.health.healthy
    assert server.api("GET", f"/apps/{sd_namespace.upper()}/a").status == 404, "deregistered"
    # The scheme may come from the option instead of the address; the URL's credentials.
    url = f"https://{server.username}:{server.password}@{server.address}/eureka"
    by_option = tls_options(server, address=server.address, scheme="https")
    from_url = tls_options(server, address=url, username=None, password=None)
    for variant in (by_option, from_url):
        assert first_event(variant, sd_namespace, lambda e: True, "a set").ok


def test_plain_http_to_a_tls_server_is_a_refusal_saying_so(
    eureka_tls_server: EurekaTLSServer, sd_namespace: str
) -> None:
    options = tls_options(eureka_tls_server, address=eureka_tls_server.address)
    event = first_event(options, sd_namespace, lambda e: not e.ok, "an error")
    # Tomcat answers plain HTTP on its TLS port with a 400: a refusal, on one line.
    assert isinstance(event.error, ConfigError)
    message = str(event.error)
    assert "400" in message and "host and port requires TLS" in message, message
    assert "\r" not in message and "\n" not in message


def test_without_a_client_certificate_the_server_refuses(
    eureka_tls_server: EurekaTLSServer, sd_namespace: str
) -> None:
    options = tls_options(eureka_tls_server, cert=None, key=None)
    event = first_event(options, sd_namespace, lambda e: not e.ok, "an error")
    assert isinstance(event.error, BackendUnavailableError)
    assert "no server answered" in str(event.error)
    registration = Registration(sd_namespace, "127.0.0.1", 20702, id="a")
    registrar = sd_core.registrar("eureka", registration, **options)
    try:
        with pytest.raises(RegistrationError, match="no server answered"):
            registrar.register()
    finally:
        registrar.close()
    assert eureka_tls_server.api("GET", f"/apps/{sd_namespace.upper()}/a").status == 404


@pytest.mark.parametrize("ca", ["other", "system"])
def test_a_server_certificate_of_another_ca_is_refused_unless_verify_is_off(
    eureka_tls_server: EurekaTLSServer, sd_namespace: str, ca: str
) -> None:
    certs = eureka_tls_server.certificates
    refused = tls_options(eureka_tls_server, ca=str(certs.other_ca) if ca == "other" else None)
    event = first_event(refused, sd_namespace, lambda e: not e.ok, "an error")
    assert isinstance(event.error, BackendUnavailableError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(event.error)
    unverified = {**refused, "verify": False}
    assert first_event(unverified, sd_namespace, lambda e: True, "a set").ok
