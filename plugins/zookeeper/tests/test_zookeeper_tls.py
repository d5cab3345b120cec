"""TLS against a real ZooKeeper server that serves clients over TLS (Netty, PEM files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_sd.zookeeper import ZooKeeperTLSServer
from zookeeper_helpers import FAST, ids, wait_for

import sd_core
from sd_core import BackendUnavailableError, Registration


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperTLSServer]:
    server = ZooKeeperTLSServer(tmp_path_factory.mktemp("zookeeper-tls"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _options(server: ZooKeeperTLSServer, chroot: str, **tls: Any) -> dict[str, Any]:
    return {"address": server.tls_address, "chroot": chroot, **FAST, **tls}


def test_mutual_tls_registers_and_discovers(tls_server: ZooKeeperTLSServer, tmp_path: Path) -> None:
    certs = tls_server.certificates
    options = _options(
        tls_server,
        "/tls-mutual",
        ca=str(certs.ca),
        cert=str(certs.client_cert),
        key=str(certs.client_key),
    )
    registration = Registration("web", "10.0.0.1", 8080, id="w1")
    with (
        sd_core.registrar("zookeeper", registration, **options) as registrar,
        sd_core.instancer("zookeeper", "web", **options) as instancer,
        instancer.subscribe() as events,
    ):
        event = wait_for(events, lambda e: ids(e) == {"w1"}, 15.0, "w1 over TLS")
        assert event.instances[0].address == "10.0.0.1:8080"
        assert registrar.health.healthy


def test_tls_with_the_ca_alone_from_the_url(tls_server: ZooKeeperTLSServer) -> None:
    """Server authentication only: ``tls=true`` and the CA, given in the URL."""
    url = f"zk://{tls_server.tls_address}/web?tls=true&ca={tls_server.certificates.ca}"
    with (
        sd_core.registrar(
            "zookeeper",
            Registration("web", "10.0.0.2", 8080, id="w2"),
            **_options(tls_server, "/tls-ca", ca=str(tls_server.certificates.ca)),
        ),
        sd_core.instancer(url, chroot="/tls-ca", **FAST) as instancer,
        instancer.subscribe() as events,
    ):
        wait_for(events, lambda e: ids(e) == {"w2"}, 15.0, "w2 over TLS")


def test_a_server_certificate_of_another_ca_is_refused(tls_server: ZooKeeperTLSServer) -> None:
    options = _options(tls_server, "/tls-other", ca=str(tls_server.certificates.other_ca))
    registrar = sd_core.registrar("zookeeper", Registration("web", "10.0.0.3", 8080), **options)
    with pytest.raises(BackendUnavailableError) as caught:
        registrar.register()
    registrar.close()
    assert tls_server.tls_address in str(caught.value)
    with (
        sd_core.instancer("zookeeper", "web", **options) as instancer,
        instancer.subscribe() as events,
    ):
        event = wait_for(events, lambda e: not e.ok, 15.0, "an error event")
        assert isinstance(event.error, BackendUnavailableError)
