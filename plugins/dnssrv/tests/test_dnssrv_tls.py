"""DNS over TLS (RFC 7858) with BIND: discovery and registration through its TLS listener,
the server's certificate checked against the test CA (by IP address or by name), mutual TLS,
and the failures a wrong name, an unknown CA or a missing client certificate cause."""

from __future__ import annotations

from typing import Any

import pytest
from dnssrv_helpers import FAST, MakeInstancer, MakeRegistrar, summary
from pytest_sd import wait_for_event as wait_for
from pytest_sd.dns import BindServer

from sd_core import BackendUnavailableError, Registration, RegistrationError


def tls_options(bind: BindServer, *, mutual: bool = False, **extra: Any) -> dict[str, Any]:
    port = bind.mtls_port if mutual else bind.tls_port
    assert port is not None, "BIND's TLS listeners need openssl (Debian: apt-get install openssl)"
    options: dict[str, Any] = {
        "address": f"{bind.host}:{port}",
        "tls": True,
        "ca": str(bind.ca_path),
        "domain": bind.zone,
        "key_name": bind.tsig_key_name,
        "key_secret": bind.tsig_secret,
        **FAST,
    }
    if mutual:
        options |= {"cert": str(bind.client_cert_path), "key": str(bind.client_key_path)}
    return options | extra


@pytest.mark.parametrize("how", ["by address", "by name", "mutual"])
def test_register_and_discover_over_tls(
    how: str,
    bind_server: BindServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    # Only BIND's TLS listener is named: a plain DNS message there gets no answer.
    extra = {"tls_server_name": bind_server.tls_server_name} if how == "by name" else {}
    options = tls_options(bind_server, mutual=how == "mutual", **extra)
    with make_instancer(sd_namespace, **options).subscribe() as sub:
        wait_for(sub, lambda e: e.ok, 5, "a first set")
        reg = Registration(sd_namespace, "127.0.0.9", 8080, id="one", weight=4)
        registrar = make_registrar(reg, **options)
        registrar.register()
        event = wait_for(sub, lambda e: len(e.instances) == 1, 5, "the instance")
        target = f"one.{sd_namespace}.{bind_server.zone}".rstrip(".")
        assert summary(event) == {("127.0.0.9", 8080, 0, 4, target)}
        registrar.deregister()
        wait_for(sub, lambda e: e.ok and not e.instances, 5, "no instance")


def test_a_certificate_that_does_not_match_is_an_error_event_and_a_registration_error(
    bind_server: BindServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    wrong = tls_options(bind_server, tls_server_name="not-the-server.example")
    with make_instancer(sd_namespace, **wrong).subscribe() as sub:
        event = wait_for(sub, lambda e: not e.ok, 5, "an error")
    assert isinstance(event.error, BackendUnavailableError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(event.error) or "certificate" in str(event.error)
    registrar = make_registrar(Registration(sd_namespace, "127.0.0.9", 8080, id="one"), **wrong)
    with pytest.raises(RegistrationError, match=r"TLS with 127\.0\.0\.1:\d+ failed"):
        registrar.register()


def test_an_unknown_ca_fails_and_verify_false_skips_the_check(
    bind_server: BindServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    system_cas = tls_options(bind_server, ca=None)
    with make_instancer(sd_namespace, **system_cas).subscribe() as sub:
        event = wait_for(sub, lambda e: True, 5, "a first event")
    assert not event.ok and "certificate" in str(event.error).lower()
    unchecked = tls_options(bind_server, ca=None, verify=False)
    with make_instancer(sd_namespace, **unchecked).subscribe() as sub:
        event = wait_for(sub, lambda e: True, 5, "a first event")
    assert event.ok and event.instances == ()


def test_mutual_tls_without_a_client_certificate_is_refused(
    bind_server: BindServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    options = tls_options(bind_server, mutual=True, cert=None, key=None)
    with make_instancer(sd_namespace, **options).subscribe() as sub:
        assert not wait_for(sub, lambda e: True, 5, "a first event").ok
    registrar = make_registrar(Registration(sd_namespace, "127.0.0.9", 8080, id="one"), **options)
    with pytest.raises(RegistrationError):
        registrar.register()


def test_a_ca_implies_tls_and_tls_implies_port_853(
    bind_server: BindServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    implied = tls_options(bind_server)
    del implied["tls"]
    with make_instancer(sd_namespace, **implied).subscribe() as sub:
        assert wait_for(sub, lambda e: True, 5, "a first event").ok
    # Nothing listens on 127.0.0.1:853 here: the error names where the instancer asked.
    bare = make_instancer("web", address="127.0.0.1", tls=True, domain="x", timeout=0.5)
    with bare.subscribe() as sub:
        event = wait_for(sub, lambda e: True, 5, "a first event")
    assert not event.ok and "at tls://127.0.0.1:853 failed" in str(event.error), event
