"""TLS: an agent serving HTTPS with certificates made by ``consul tls``; mutual TLS."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consul_helpers import ids, wait_for
from pytest_sd._binaries import BackendNotInstalled
from pytest_sd._ports import free_ports
from pytest_sd.consul import ConsulServer

import sd_core
from sd_core import BackendUnavailableError, Registration, RegistrationError


class TLSConsulServer(ConsulServer):
    """A Consul agent that also serves HTTPS, asking clients for a certificate."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, name="consul-tls")
        (self.https_port,) = free_ports(1)
        self.tls_dir = data_dir / "tls"
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        for args in (
            ["ca", "create"],
            ["cert", "create", "-server"],
            ["cert", "create", "-client"],
        ):
            subprocess.run(
                [str(self.binary), "tls", *args], cwd=self.tls_dir, check=True, capture_output=True
            )
        self.ca = self.tls_dir / "consul-agent-ca.pem"
        self.client_cert = self.tls_dir / "dc1-client-consul-0.pem"
        self.client_key = self.tls_dir / "dc1-client-consul-0-key.pem"

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["ports"]["https"] = self.https_port
        config.update(
            ca_file=str(self.ca),
            cert_file=str(self.tls_dir / "dc1-server-consul-0.pem"),
            key_file=str(self.tls_dir / "dc1-server-consul-0-key.pem"),
            verify_incoming_https=True,
        )
        return config


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSConsulServer]:
    try:
        server = TLSConsulServer(tmp_path_factory.mktemp("consul-tls"))
    except BackendNotInstalled as exc:  # as sd_core's fixtures do: skip, but fail in CI
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_mutual_tls(tls_server: TLSConsulServer, sd_namespace: str) -> None:
    options = {
        "address": f"https://127.0.0.1:{tls_server.https_port}",
        "ca": str(tls_server.ca),
        "cert": str(tls_server.client_cert),
        "key": str(tls_server.client_key),
        "wait": 1.0,
    }
    registration = Registration(sd_namespace, "127.0.0.1", 20301, id="a", ttl=2.0)
    with sd_core.registrar("consul", registration, **options):
        instancer = sd_core.instancer("consul", sd_namespace, **options)
        try:
            with instancer.subscribe() as sub:
                wait_for(sub, lambda e: ids(e) == {"a"}, 3.0, "instance a over TLS")
        finally:
            instancer.stop()


def test_an_unverified_agent_certificate_is_an_error(
    tls_server: TLSConsulServer, sd_namespace: str
) -> None:
    options = {"address": f"127.0.0.1:{tls_server.https_port}", "scheme": "https", "wait": 1.0}
    instancer = sd_core.instancer("consul", sd_namespace, **options)
    try:
        with instancer.subscribe() as sub:
            event = wait_for(sub, lambda e: not e.ok, 3.0, "an error event")
        assert isinstance(event.error, BackendUnavailableError)
        assert "TLS failed" in str(event.error)
    finally:
        instancer.stop()
    registration = Registration(sd_namespace, "127.0.0.1", 20302, id="b", ttl=2.0)
    registrar = sd_core.registrar("consul", registration, ca=str(tls_server.ca), **options)
    try:
        with pytest.raises(RegistrationError):  # no client certificate: refused
            registrar.register()
    finally:
        registrar.close()
