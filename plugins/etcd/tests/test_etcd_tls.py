"""TLS: an etcd that serves clients over TLS and asks them for a certificate (mutual TLS)."""

from __future__ import annotations

import pytest
from etcd_helpers import ids, wait_for
from pytest_sd.etcd import EtcdTLSServer

import sd_core
from sd_core import BackendUnavailableError, ConfigError, Registration, RegistrationError


def test_mutual_tls(etcd_tls_server: EtcdTLSServer, sd_namespace: str) -> None:
    certs = etcd_tls_server.certificates
    options = {
        "address": etcd_tls_server.tls_url,
        "ca": str(certs.ca),
        "cert": str(certs.client_cert),
        "key": str(certs.client_key),
        "timeout": 2.0,
    }
    registration = Registration(sd_namespace, "127.0.0.1", 20301, id="a", ttl=2.0)
    with sd_core.registrar("etcd", registration, **options):
        # host:port with a CA is TLS too.
        plain_form = {**options, "address": etcd_tls_server.tls_address}
        instancer = sd_core.instancer("etcd", sd_namespace, **plain_form)
        try:
            with instancer.subscribe() as sub:
                wait_for(sub, lambda e: ids(e) == {"a"}, 5.0, "instance a over TLS")
        finally:
            instancer.stop()
    assert etcd_tls_server.get(f"/services/{sd_namespace}/a") is None  # deregistered


def test_a_certificate_that_does_not_verify_is_an_error(
    etcd_tls_server: EtcdTLSServer, sd_namespace: str
) -> None:
    certs = etcd_tls_server.certificates
    client = {"cert": str(certs.client_cert), "key": str(certs.client_key)}
    wrong_ca = {"address": etcd_tls_server.tls_url, "ca": str(certs.other_ca), **client}
    instancer = sd_core.instancer("etcd", sd_namespace, timeout=2.0, **wrong_ca)
    try:
        with instancer.subscribe() as sub:
            event = wait_for(sub, lambda e: not e.ok, 5.0, "an error event")
        assert isinstance(event.error, BackendUnavailableError)
        assert f"etcd at https://{etcd_tls_server.tls_address}" in str(event.error)
    finally:
        instancer.stop()
    no_client_cert = {"address": etcd_tls_server.tls_url, "ca": str(certs.ca)}
    registration = Registration(sd_namespace, "127.0.0.1", 20302, ttl=2.0)
    registrar = sd_core.registrar("etcd", registration, timeout=2.0, **no_client_cert)
    try:
        with pytest.raises(RegistrationError):  # etcd asks for a client certificate
            registrar.register()
    finally:
        registrar.close()


def test_tls_options_that_cannot_work_are_refused_at_once(
    etcd_tls_server: EtcdTLSServer,
) -> None:
    ca = str(etcd_tls_server.certificates.ca)
    with pytest.raises(ConfigError, match="verify=false is not supported"):
        sd_core.instancer("etcd", "web", address=etcd_tls_server.tls_url, verify=False)
    with pytest.raises(ConfigError, match="says http://"):
        sd_core.instancer("etcd", "web", address=f"http://{etcd_tls_server.tls_address}", ca=ca)
    with pytest.raises(ConfigError, match="option ca"):
        sd_core.instancer("etcd", "web", address=etcd_tls_server.tls_url, ca="/no/such/file")
