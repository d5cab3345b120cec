"""Fixtures of the etcd plugin's tests; servers come from pytest_sd's fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from etcd_helpers import FAST, MakeInstancer, MakeRegistrar
from pytest_sd._binaries import BackendNotInstalled
from pytest_sd.etcd import EtcdServer, EtcdTLSServer

import sd_core
from sd_core import Instancer, Registrar, Registration


@pytest.fixture
def options(etcd_server: EtcdServer) -> dict[str, Any]:
    """Options reaching the test server, with FAST timings."""
    return {"address": etcd_server.address, **FAST}


@pytest.fixture
def make_instancer(options: dict[str, Any]) -> Iterator[MakeInstancer]:
    """Make etcd instancers (the test's options, overridable); stopped after the test."""
    made: list[Instancer] = []

    def make(service: str, **overrides: Any) -> Instancer:
        instancer = sd_core.instancer("etcd", service, **{**options, **overrides})
        made.append(instancer)
        return instancer

    yield make
    for instancer in made:
        instancer.stop()


@pytest.fixture
def make_registrar(options: dict[str, Any]) -> Iterator[MakeRegistrar]:
    """Make etcd registrars (not registered yet); closed after the test."""
    made: list[Registrar] = []

    def make(registration: Registration, **overrides: Any) -> Registrar:
        keep = {k: v for k, v in options.items() if k != "retry_max"}
        registrar = sd_core.registrar("etcd", registration, **{**keep, **overrides})
        made.append(registrar)
        return registrar

    yield make
    for registrar in made:
        registrar.close()


@pytest.fixture(scope="session")
def etcd_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdTLSServer]:
    """An etcd 3.5 server serving TLS clients that show a certificate signed by its CA."""
    try:
        server = EtcdTLSServer(tmp_path_factory.mktemp("etcd-tls"))
    except BackendNotInstalled as exc:  # as pytest_sd's fixtures do: skip, but fail in CI
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()
