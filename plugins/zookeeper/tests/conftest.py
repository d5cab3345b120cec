"""Fixtures of the ZooKeeper plugin's tests; servers come from pytest_sd's fixtures. Each test
works under a chroot of its own (``/sd-<test>-<random>``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pytest_sd.zookeeper import ZooKeeperServer
from zookeeper_helpers import FAST, MakeInstancer, MakeRegistrar, plain_client

import sd_core
from sd_core import Instancer, Registrar, Registration


@pytest.fixture
def chroot(sd_namespace: str) -> str:
    """This test's chroot."""
    return f"/{sd_namespace}"


@pytest.fixture
def options(zookeeper_server: ZooKeeperServer, chroot: str) -> dict[str, Any]:
    """Options reaching the test server under this test's chroot, with FAST timings."""
    return {"address": zookeeper_server.address, "chroot": chroot, **FAST}


@pytest.fixture
def make_instancer(options: dict[str, Any]) -> Iterator[MakeInstancer]:
    """Make zookeeper instancers (the test's options, overridable); stopped after the test."""
    made: list[Instancer] = []

    def make(service: str, **overrides: Any) -> Instancer:
        instancer = sd_core.instancer("zookeeper", service, **{**options, **overrides})
        made.append(instancer)
        return instancer

    yield make
    for instancer in made:
        instancer.stop()


@pytest.fixture
def make_registrar(options: dict[str, Any]) -> Iterator[MakeRegistrar]:
    """Make zookeeper registrars (not registered yet); closed after the test."""
    made: list[Registrar] = []

    def make(registration: Registration, **overrides: Any) -> Registrar:
        registrar = sd_core.registrar("zookeeper", registration, **{**options, **overrides})
        made.append(registrar)
        return registrar

    yield make
    for registrar in reversed(made):
        registrar.close()


@pytest.fixture
def peer(zookeeper_server: ZooKeeperServer, chroot: str) -> Iterator[Any]:
    """A plain kazoo client under this test's chroot: writes nodes as the peers write them."""
    root = plain_client(zookeeper_server.address)
    root.ensure_path(chroot)
    root.stop()
    root.close()
    client = plain_client(zookeeper_server.address + chroot)
    yield client
    client.stop()
    client.close()
