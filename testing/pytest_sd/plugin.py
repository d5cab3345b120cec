"""pytest fixtures that start real backend servers (the ``sd`` pytest plugin of pytest-sd).

Installed with pytest-sd (not with sd-core) and loaded by every pytest run of that
environment; it starts nothing until a test asks for one of its fixtures. Where the servers
come from: see :mod:`pytest_sd._binaries` and docs/testing-backends.md. A missing server
skips the tests that need it, with a message saying how to install it, or fails them when
``CI=true``.

Sharing and faults:

* Servers are started once per session and shared (``consul_server``, ``consul_acl_server``,
  ``etcd_server``, ``etcd_cluster``, ``etcd_auth_server``, ``zookeeper_server``,
  ``zookeeper_ensemble``, ``bind_server``, ``eureka_server``). Tests keep apart by using the
  ``sd_namespace`` fixture in their service names, key prefixes, chroots and DNS names.
* Tests may break a shared server with its fault handles (``stop``, ``kill``, ``pause``,
  ``start(wipe=True)``…): after each test that used it the server (each cluster member) is
  resumed, started again if needed, and waited for until ready. Data written by one test may
  still be there (or be gone after a wipe) for the next.
* ``dnsmasq_server`` is fresh for each test (it starts in milliseconds).

When a test fails, the part of each server's log written during that test is added to the
report as a section.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import NoReturn, Protocol, TypeVar

import pytest

from ._binaries import INSTALL_COMMAND, BackendNotInstalled
from ._process import ManagedProcess, stop_all
from .consul import ConsulServer
from .dns import BindServer, DnsmasqServer
from .etcd import EtcdCluster, EtcdServer
from .eureka import EurekaServer, EurekaTLSServer
from .zookeeper import ZooKeeperEnsemble, ZooKeeperServer

__all__ = ["INSTALL_COMMAND"]

_T = TypeVar("_T")
_USED = pytest.StashKey[list[tuple[ManagedProcess, int]]]()


class _Restorable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def ensure_running(self) -> None: ...


def _not_installed(exc: BackendNotInstalled) -> NoReturn:
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(str(exc), pytrace=False)
    pytest.skip(str(exc))


def _create(factory: Callable[[], _T]) -> _T:
    missing: BackendNotInstalled | None = None
    try:
        return factory()
    except BackendNotInstalled as exc:
        missing = exc
    # Outside the except block, so that the skip/fail carries no chained traceback.
    _not_installed(missing)


@contextmanager
def _running(server: _Restorable) -> Iterator[None]:
    try:
        server.start()
        yield
    finally:
        server.stop()


def _members(server: object) -> list[ManagedProcess]:
    if isinstance(server, ManagedProcess):
        return [server]
    members: list[ManagedProcess] = getattr(server, "members", [])
    return list(members)


@contextmanager
def _used_by(
    request: pytest.FixtureRequest, server: _Restorable, *, restore: bool = True
) -> Iterator[None]:
    """Attach the server's log to the test's report; restore the server after the test."""
    if restore:
        server.ensure_running()
    used = request.node.stash.setdefault(_USED, [])
    used.extend((member, member.log_size()) for member in _members(server))
    yield
    if restore:
        server.ensure_running()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add the log of each server the test used to the report of a failing test."""
    report = yield
    if report.failed:
        for server, offset in item.stash.get(_USED, []):
            text = server.read_log(offset)
            report.sections.append((f"{server.name} log ({server.log_path})", text))
    return report


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of the conformance suite's checks."""
    config.addinivalue_line(
        "markers",
        "sd_requires(*capabilities): a conformance check needing these capabilities "
        "(skipped for a backend that does not declare them)",
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop any server process still running (fixtures normally did already)."""
    stop_all()


@pytest.fixture
def sd_namespace(request: pytest.FixtureRequest) -> str:
    """A unique, DNS-safe name for this test: prefix service names, keys, chroots with it."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:24].strip("-")
    return f"sd-{slug}-{secrets.token_hex(3)}"


# -- Consul --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _sd_consul_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulServer]:
    server = _create(lambda: ConsulServer(tmp_path_factory.mktemp("consul")))
    with _running(server):
        yield server


@pytest.fixture
def consul_server(
    request: pytest.FixtureRequest, _sd_consul_server: ConsulServer
) -> Iterator[ConsulServer]:
    """A Consul 1.8 server agent (no ACLs), shared by the session."""
    with _used_by(request, _sd_consul_server):
        yield _sd_consul_server


@pytest.fixture(scope="session")
def _sd_consul_acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulServer]:
    server = _create(
        lambda: ConsulServer(tmp_path_factory.mktemp("consul-acl"), acl=True, name="consul-acl")
    )
    with _running(server):
        yield server


@pytest.fixture
def consul_acl_server(
    request: pytest.FixtureRequest, _sd_consul_acl_server: ConsulServer
) -> Iterator[ConsulServer]:
    """A Consul 1.8 server agent with default-deny ACLs; ``token`` is the management token."""
    with _used_by(request, _sd_consul_acl_server):
        yield _sd_consul_acl_server


# -- etcd ----------------------------------------------------------------------------------
@pytest.fixture(scope="session", params=["3.4", "3.5"], ids=["etcd3.4", "etcd3.5"])
def _sd_etcd_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EtcdServer]:
    version: str = request.param
    server = _create(
        lambda: EtcdServer(tmp_path_factory.mktemp(f"etcd-{version}"), version, name="etcd")
    )
    with _running(server):
        yield server


@pytest.fixture
def etcd_server(
    request: pytest.FixtureRequest, _sd_etcd_server: EtcdServer
) -> Iterator[EtcdServer]:
    """A single etcd server; tests using it run once with etcd 3.4 and once with 3.5."""
    with _used_by(request, _sd_etcd_server):
        yield _sd_etcd_server


@pytest.fixture(scope="session")
def _sd_etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = _create(lambda: EtcdCluster(tmp_path_factory.mktemp("etcd-cluster")))
    with _running(cluster):
        yield cluster


@pytest.fixture
def etcd_cluster(
    request: pytest.FixtureRequest, _sd_etcd_cluster: EtcdCluster
) -> Iterator[EtcdCluster]:
    """A 3-member etcd 3.5 cluster."""
    with _used_by(request, _sd_etcd_cluster):
        yield _sd_etcd_cluster


@pytest.fixture(scope="session")
def _sd_etcd_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = _create(
        lambda: EtcdServer(tmp_path_factory.mktemp("etcd-auth"), "3.5", auth=True, name="etcd-auth")
    )
    with _running(server):
        yield server


@pytest.fixture
def etcd_auth_server(
    request: pytest.FixtureRequest, _sd_etcd_auth_server: EtcdServer
) -> Iterator[EtcdServer]:
    """An etcd 3.5 server with authentication on: a root user and a user limited to a prefix."""
    with _used_by(request, _sd_etcd_auth_server):
        yield _sd_etcd_auth_server


# -- ZooKeeper -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _sd_zookeeper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    server = _create(lambda: ZooKeeperServer(tmp_path_factory.mktemp("zookeeper")))
    with _running(server):
        yield server


@pytest.fixture
def zookeeper_server(
    request: pytest.FixtureRequest, _sd_zookeeper_server: ZooKeeperServer
) -> Iterator[ZooKeeperServer]:
    """A standalone ZooKeeper 3.8 server."""
    with _used_by(request, _sd_zookeeper_server):
        yield _sd_zookeeper_server


@pytest.fixture(scope="session")
def _sd_zookeeper_ensemble(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ZooKeeperEnsemble]:
    ensemble = _create(lambda: ZooKeeperEnsemble(tmp_path_factory.mktemp("zookeeper-ensemble")))
    with _running(ensemble):
        yield ensemble


@pytest.fixture
def zookeeper_ensemble(
    request: pytest.FixtureRequest, _sd_zookeeper_ensemble: ZooKeeperEnsemble
) -> Iterator[ZooKeeperEnsemble]:
    """A 3-server ZooKeeper 3.8 ensemble."""
    with _used_by(request, _sd_zookeeper_ensemble):
        yield _sd_zookeeper_ensemble


# -- DNS -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _sd_bind_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    server = _create(lambda: BindServer(tmp_path_factory.mktemp("bind")))
    with _running(server):
        yield server


@pytest.fixture
def bind_server(
    request: pytest.FixtureRequest, _sd_bind_server: BindServer
) -> Iterator[BindServer]:
    """BIND 9 with zone ``sd.test.`` open to RFC 2136 updates signed with its TSIG key, and
    DNS over TLS listeners (``tls_port``, ``mtls_port``) when openssl is installed."""
    with _used_by(request, _sd_bind_server):
        yield _sd_bind_server


@pytest.fixture
def dnsmasq_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DnsmasqServer]:
    """A fresh dnsmasq for this test; give it records with ``set_records([...])``."""

    server = _create(lambda: DnsmasqServer(tmp_path_factory.mktemp("dnsmasq")))
    with _running(server), _used_by(request, server, restore=False):
        yield server


# -- Eureka --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _sd_eureka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EurekaServer]:
    server = _create(lambda: EurekaServer(tmp_path_factory.mktemp("eureka")))
    with _running(server):
        yield server


@pytest.fixture
def eureka_server(
    request: pytest.FixtureRequest, _sd_eureka_server: EurekaServer
) -> Iterator[EurekaServer]:
    """A Spring Cloud Netflix Eureka server tuned for tests, with HTTP basic auth
    (``username``, ``password``, ``credentials_url``)."""
    with _used_by(request, _sd_eureka_server):
        yield _sd_eureka_server


@pytest.fixture(scope="session")
def _sd_eureka_second_server(
    tmp_path_factory: pytest.TempPathFactory, _sd_eureka_server: EurekaServer
) -> Iterator[EurekaServer]:
    password = _sd_eureka_server.password
    server = _create(
        lambda: EurekaServer(
            tmp_path_factory.mktemp("eureka-2"), name="eureka-2", password=password
        )
    )
    with _running(server):
        yield server


@pytest.fixture
def eureka_second_server(
    request: pytest.FixtureRequest, _sd_eureka_second_server: EurekaServer
) -> Iterator[EurekaServer]:
    """Another Eureka server with the credentials of ``eureka_server``, not its peer: they
    share no registrations (for failover from one to the other)."""
    with _used_by(request, _sd_eureka_second_server):
        yield _sd_eureka_second_server


@pytest.fixture(scope="session")
def _sd_eureka_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EurekaTLSServer]:
    server = _create(lambda: EurekaTLSServer(tmp_path_factory.mktemp("eureka-tls")))
    with _running(server):
        yield server


@pytest.fixture
def eureka_tls_server(
    request: pytest.FixtureRequest, _sd_eureka_tls_server: EurekaTLSServer
) -> Iterator[EurekaTLSServer]:
    """A Eureka server that serves HTTPS only and asks clients for a certificate of its CA,
    with basic auth; ``certificates`` are its :class:`~pytest_sd.certificates.Certificates`."""
    with _used_by(request, _sd_eureka_tls_server):
        yield _sd_eureka_tls_server
