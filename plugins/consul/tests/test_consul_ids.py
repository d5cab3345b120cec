"""Service ids: the ones Consul round-trips, the ones it cannot, and the default id.

Consul service ids are unique per agent, not per service; they travel in URL paths to renew,
read and remove a service, and some cannot (see ``sd_consul._ids``).
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from consul_helpers import MakeInstancer, MakeRegistrar, ids, poll, wait_for
from pytest_sd._binaries import BackendNotInstalled
from pytest_sd.consul import ConsulServer
from sd_consul import ConsulBackend, ConsulRegistrar
from sd_consul._backend import Connection, new_client
from sd_consul._registrar import CheckOptions

import sd_core
from sd_core import ConfigError, Registration, RegistrationError

PROPAGATION = 3.0
MAX_ID_BYTES = 65536
"""The longest id accepted (UTF-8 bytes): far below the agent's 1 MiB request-line limit."""

ACCEPTED_IDS = [
    "a/b",
    "a/",
    "a/b/",
    "a?b",
    "a#b",
    "a%b",
    "a%2Fb",
    "a&b=c;d+e",
    "a b",
    " a ",
    "a\\b",
    "a:b",
    "[::1]:8080",
    "..a",
    "a..",
    "...",
    "'\"<>|{}~",
    "é",
    "日本",
    "😀",
    "x" * MAX_ID_BYTES,
    "日" * (MAX_ID_BYTES // 3),
]
REFUSED_IDS = [
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x00b",
    "a\x7fb",
    "a\u00a0b",  # no-break space
    "a\u200bb",  # zero-width space
    "a\u00adb",  # soft hyphen
    "a\u2028b",  # line separator
    "a\ud800b",  # lone surrogate
    ".",
    "..",
    "./a",
    "a/.",
    "a/..",
    "a/./b",
    "a/../b",
    "/",
    "/a",
    "a//b",
    "a//",
    "x" * (MAX_ID_BYTES + 1),
]


def label(value: str) -> str:
    return ascii(value) if len(value) < 30 else f"{value[:10]!a}*{len(value)}"


def forced(service: str, port: int, **fields: str) -> Registration:
    """A Registration with these fields even where the core's own checks (which refuse
    control characters) would not let one be made: the plugin must refuse it by itself."""
    try:
        return Registration(service, "127.0.0.1", port, **fields)  # type: ignore[arg-type]
    except ValueError:
        registration = Registration("placeholder", "127.0.0.1", port, id="placeholder")
        values = {"service": service, "id": f"127.0.0.1:{port}", **fields}
        for name, value in values.items():
            object.__setattr__(registration, name, value)
        return registration


def agent_services(server: ConsulServer) -> dict[str, Any]:
    services: dict[str, Any] = server.api("GET", "/v1/agent/services").json()
    return services


def check_status(server: ConsulServer, check_id: str) -> str:
    checks = server.api("GET", "/v1/agent/checks").json()
    return str(checks[check_id]["Status"])


def test_every_accepted_id_registers_renews_sets_status_and_deregisters(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    registrars = {
        sid: make_registrar(Registration(sd_namespace, "127.0.0.1", 21000 + n, id=sid, ttl=30))
        for n, sid in enumerate(ACCEPTED_IDS)
    }
    with make_instancer(sd_namespace, passing=False).subscribe() as sub:
        for registrar in registrars.values():
            registrar.register()
        wait_for(sub, lambda e: ids(e) == set(ACCEPTED_IDS), PROPAGATION, "every id")
        services = agent_services(consul_server)
        for sid, registrar in registrars.items():
            assert isinstance(registrar, ConsulRegistrar)
            assert services[sid]["Service"] == sd_namespace, label(sid)
            assert registrar._backend_keepalive() is True, label(sid)  # the TTL pass
            registrar.set_status("warning", f"note for {label(sid)}")
            assert check_status(consul_server, f"service:{sid}:ttl") == "warning", label(sid)
            registrar.deregister()
            assert sid not in agent_services(consul_server), label(sid)
        wait_for(sub, lambda e: e.ok and not e.instances, PROPAGATION, "no instance left")


@pytest.mark.parametrize("sid", REFUSED_IDS, ids=label)
def test_an_id_consul_cannot_round_trip_is_refused_at_construction(
    consul_server: ConsulServer, sd_namespace: str, caplog: pytest.LogCaptureFixture, sid: str
) -> None:
    caplog.set_level(logging.DEBUG)
    registration = forced(sd_namespace, 21100, id=sid)
    options = {"address": consul_server.address}
    message = r"Registration\.id .* cannot be a Consul service id: .*; accepted: printable"
    with pytest.raises(ConfigError, match=message):
        sd_core.registrar("consul", registration, **options)
    with pytest.raises(ConfigError, match=message):
        ConsulBackend().registrar(registration, **options)
    client = new_client(Connection(consul_server.host, consul_server.http_port))
    try:
        with pytest.raises(ConfigError, match=message):
            ConsulRegistrar(registration, client, CheckOptions())
    finally:
        client.close()
    assert not [r for r in caplog.records if "Starting new HTTP" in r.getMessage()]


@pytest.mark.parametrize("service", [".", "..", "/a", "a//b", "a\nb", "a\u00a0b"], ids=label)
def test_a_service_name_consul_cannot_route_is_refused(service: str) -> None:
    message = r"cannot be used with Consul: .*; accepted: printable"
    with pytest.raises(ConfigError, match=message):
        sd_core.instancer("consul", service, address="127.0.0.1:1")
    for registration in (forced(service, 1), forced(service, 1, id="a")):
        with pytest.raises(ConfigError, match=rf"Registration\.service .*{message}"):
            sd_core.registrar("consul", registration, address="127.0.0.1:1")


# -- what Consul does with the refused ids: on a throwaway agent, since they stay there -------


@pytest.fixture(scope="module")
def throwaway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulServer]:
    try:
        server = ConsulServer(tmp_path_factory.mktemp("consul-ids"), name="consul-ids")
    except BackendNotInstalled as exc:  # as sd_core's fixtures do: skip, but fail in CI
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_consul_cannot_deregister_the_refused_ids(throwaway_server: ConsulServer) -> None:
    """Why they are refused: each registers, and then cannot be removed, however quoted."""
    stuck = []
    for n, sid in enumerate(REFUSED_IDS):
        if sid == "a\ud800b":
            continue  # not UTF-8: JSON carries it as U+FFFD, another id altogether
        if len(sid) > MAX_ID_BYTES:
            continue  # refused to stay far from the 1 MiB request-line limit; see below
        definition = {"ID": sid, "Name": f"stuck-{n}", "Port": 1}
        assert throwaway_server.api("PUT", "/v1/agent/service/register", definition).status == 200
        for quoting in ("/:", ""):  # as py-consul quotes the path, and everything quoted
            path = urllib.parse.quote(sid, safe=quoting)
            throwaway_server.api("PUT", f"/v1/agent/service/deregister/{path}")
        if sid in agent_services(throwaway_server):
            stuck.append(sid)
    expected = [s for s in REFUSED_IDS if s != "a\ud800b" and len(s) <= MAX_ID_BYTES]
    assert stuck == expected


def test_consul_cannot_deregister_an_id_over_a_megabyte(throwaway_server: ConsulServer) -> None:
    sid = "x" * 1_100_000  # the agent reads at most 1 MiB (+ 4 KiB) of request line and headers
    definition = {"ID": sid, "Name": "huge", "Port": 1}
    assert throwaway_server.api("PUT", "/v1/agent/service/register", definition).status == 200
    assert throwaway_server.api("PUT", f"/v1/agent/service/deregister/{sid}").status == 431
    assert sid in agent_services(throwaway_server)


# -- the default id: qualified by the service ----------------------------------------------


def test_default_ids_of_two_services_on_one_address_do_not_collide(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    api, admin = sd_namespace, f"{sd_namespace}-admin"
    with (
        make_instancer(api).subscribe() as api_sub,
        make_instancer(admin).subscribe() as admin_sub,
    ):
        wait_for(api_sub, lambda e: e.ok and not e.instances, PROPAGATION, "no api yet")
        api_registrar = make_registrar(Registration(api, "127.0.0.1", 21200, ttl=5))
        admin_registrar = make_registrar(Registration(admin, "127.0.0.1", 21200, ttl=5))
        api_registrar.register()
        wait_for(api_sub, lambda e: len(e.instances) == 1, PROPAGATION, "the api instance")
        admin_registrar.register()
        wait_for(admin_sub, lambda e: len(e.instances) == 1, PROPAGATION, "the admin instance")
        # A fresh look at api (a new watch: other options) still finds it: not replaced.
        with make_instancer(api, wait=2.0).subscribe() as fresh:
            event = wait_for(fresh, lambda e: e.ok, PROPAGATION, "a set")
            assert [i.address for i in event.instances] == ["127.0.0.1:21200"]
        state = make_instancer(api).state
        assert state is not None
        assert [i.address for i in state.instances] == ["127.0.0.1:21200"]
        services = agent_services(consul_server)
        assert services[f"{api}:127.0.0.1:21200"]["Service"] == api
        assert services[f"{admin}:127.0.0.1:21200"]["Service"] == admin
        # Closing one leaves the other.
        api_registrar.close()
        wait_for(api_sub, lambda e: e.ok and not e.instances, PROPAGATION, "api gone")
        assert f"{admin}:127.0.0.1:21200" in agent_services(consul_server)
        admin_registrar.close()
        wait_for(admin_sub, lambda e: e.ok and not e.instances, PROPAGATION, "admin gone")


def test_an_id_taken_by_another_service_is_refused_and_left_alone(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    api, admin = sd_namespace, f"{sd_namespace}-admin"
    mine = make_registrar(Registration(api, "127.0.0.1", 21201, id="shared", ttl=5))
    mine.register()
    theirs = make_registrar(Registration(admin, "127.0.0.1", 21202, id="shared", ttl=5))
    with pytest.raises(
        RegistrationError, match=rf"'shared' is taken on the agent by service '{api}'"
    ):
        theirs.register()
    assert agent_services(consul_server)["shared"]["Service"] == api
    theirs.close()  # never registered: removes nothing
    assert agent_services(consul_server)["shared"]["Service"] == api
    with make_instancer(api).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"shared"}, PROPAGATION, "api still there")


def test_deregistering_never_removes_another_services_registration(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_consul")
    mine = make_registrar(Registration(sd_namespace, "127.0.0.1", 21203, id="x", ttl=5))
    mine.register()
    # Someone else takes the id over (another tool, straight through the API).
    other = {"ID": "x", "Name": f"{sd_namespace}-other", "Port": 21204}
    assert consul_server.api("PUT", "/v1/agent/service/register", other).status == 200
    try:
        mine.close()
        assert agent_services(consul_server)["x"]["Service"] == f"{sd_namespace}-other"
        assert any("not deregistering service id 'x'" in r.getMessage() for r in caplog.records)
    finally:
        consul_server.api("PUT", "/v1/agent/service/deregister/x")


def test_a_lost_registration_is_not_restored_over_another_service(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    mine = make_registrar(Registration(sd_namespace, "127.0.0.1", 21205, id="y", ttl=1.0))
    mine.register()
    # The agent forgets ours, and another service registers under the id meanwhile: the
    # keepalive finds its TTL check unknown and tries to restore.
    assert consul_server.api("PUT", "/v1/agent/service/deregister/y").status == 200
    other = {"ID": "y", "Name": f"{sd_namespace}-other", "Port": 21206}
    assert consul_server.api("PUT", "/v1/agent/service/register", other).status == 200
    try:
        poll(
            lambda: any("'y' is taken on the agent" in r.getMessage() for r in caplog.records),
            5.0,
            "a refused restore",
        )
        assert agent_services(consul_server)["y"]["Service"] == f"{sd_namespace}-other"
        mine.close()  # leaves theirs alone
        assert agent_services(consul_server)["y"]["Service"] == f"{sd_namespace}-other"
    finally:
        consul_server.api("PUT", "/v1/agent/service/deregister/y")
