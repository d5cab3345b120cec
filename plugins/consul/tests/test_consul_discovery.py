"""Discovery and registration against a real Consul agent."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from consul_helpers import MakeInstancer, MakeRegistrar, ids, wait_for
from pytest_sd._binaries import BackendNotInstalled
from pytest_sd.consul import ConsulServer

import sd_core
from sd_core import Registration

PROPAGATION = 3.0


def reg(service: str, ident: str, port: int, **fields: object) -> Registration:
    fields.setdefault("ttl", 2.0)
    return Registration(service, "127.0.0.1", port, id=ident, **fields)  # type: ignore[arg-type]


def test_register_appears_and_deregister_disappears(
    sd_namespace: str, make_instancer: MakeInstancer, make_registrar: MakeRegistrar
) -> None:
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: e.ok and not e.instances, PROPAGATION, "an empty set")
        registrar = make_registrar(reg(sd_namespace, "a", 20001))
        registrar.register()
        wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "instance a")
        registrar.deregister()
        wait_for(sub, lambda e: e.ok and not e.instances, PROPAGATION, "no instance")


def test_tags_meta_weight_and_zone_round_trip(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    registration = reg(
        sd_namespace, "a", 20002, tags={"prod", "v2"}, meta={"version": "1.2"}, weight=7
    )
    make_registrar(registration).register()
    with make_instancer(sd_namespace).subscribe() as sub:
        event = wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "instance a")
    (instance,) = event.instances
    assert instance.address == "127.0.0.1:20002"
    assert instance.service == sd_namespace
    assert instance.tags == {"prod", "v2"}
    assert dict(instance.meta) == {"version": "1.2"}
    assert instance.weight == 7
    assert instance.zone == consul_server.datacenter


def test_a_second_instance_appears_beside_the_first(
    sd_namespace: str, make_instancer: MakeInstancer, make_registrar: MakeRegistrar
) -> None:
    make_registrar(reg(sd_namespace, "a", 20003)).register()
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "instance a")
        make_registrar(reg(sd_namespace, "b", 20004)).register()
        event = wait_for(sub, lambda e: ids(e) == {"a", "b"}, PROPAGATION, "a and b")
    assert sorted(i.port for i in event.instances) == [20003, 20004]


def test_passing_only_by_default_and_all_with_passing_false(
    sd_namespace: str, make_instancer: MakeInstancer, make_registrar: MakeRegistrar
) -> None:
    a, b = (
        make_registrar(reg(sd_namespace, "a", 20005)),
        make_registrar(reg(sd_namespace, "b", 20006)),
    )
    a.register()
    b.register()
    passing_only = make_instancer(sd_namespace)
    with (
        passing_only.subscribe() as passing,
        make_instancer(sd_namespace, passing=False).subscribe() as everything,
    ):
        wait_for(passing, lambda e: ids(e) == {"a", "b"}, PROPAGATION, "a and b passing")
        b.set_status("critical", "disk full")
        wait_for(passing, lambda e: ids(e) == {"a"}, PROPAGATION, "only a passing")
        b.set_status("warning", "slow")
        # A warning is not passing either; every instance is seen with passing=False.
        wait_for(everything, lambda e: ids(e) == {"a", "b"}, PROPAGATION, "both, any status")
        state = passing_only.state
        assert state is not None
        assert ids(state) == {"a"}
        b.set_status("passing")
        wait_for(passing, lambda e: ids(e) == {"a", "b"}, PROPAGATION, "b passing again")


def test_warning_status_survives_keepalives(
    sd_namespace: str, make_instancer: MakeInstancer, make_registrar: MakeRegistrar
) -> None:
    registrar = make_registrar(reg(sd_namespace, "a", 20007, ttl=1.0))
    registrar.register()
    registrar.set_status("warning", "degraded")
    with make_instancer(sd_namespace, passing=False).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "instance a")
    with make_instancer(sd_namespace).subscribe() as passing:
        # Several keepalives (every ttl/3) later it is still not passing.
        time.sleep(1.5)
        event = wait_for(passing, lambda e: e.ok, PROPAGATION, "a set")
        assert ids(event) == set()


def test_tag_filters_all_must_match(
    sd_namespace: str, make_instancer: MakeInstancer, make_registrar: MakeRegistrar
) -> None:
    make_registrar(reg(sd_namespace, "ab", 20011, tags={"a", "b"})).register()
    make_registrar(reg(sd_namespace, "a", 20012, tags={"a"})).register()
    make_registrar(reg(sd_namespace, "b", 20013, tags={"b", "c"})).register()
    with (
        make_instancer(sd_namespace, tag=["a"]).subscribe() as only_a,
        make_instancer(sd_namespace, tag=["a", "b"]).subscribe() as a_and_b,
        make_instancer(sd_namespace, tags=["b"], tag=["c"]).subscribe() as b_and_c,
        make_instancer(sd_namespace).subscribe() as every,
    ):
        wait_for(every, lambda e: ids(e) == {"ab", "a", "b"}, PROPAGATION, "all three")
        wait_for(only_a, lambda e: ids(e) == {"ab", "a"}, PROPAGATION, "tagged a")
        wait_for(a_and_b, lambda e: ids(e) == {"ab"}, PROPAGATION, "tagged a and b")
        wait_for(b_and_c, lambda e: ids(e) == {"b"}, PROPAGATION, "tagged b and c")


def test_url_selects_address_service_and_tag(
    consul_server: ConsulServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    make_registrar(reg(sd_namespace, "p", 20014, tags={"prod"})).register()
    make_registrar(reg(sd_namespace, "d", 20015, tags={"dev"})).register()
    url = f"consul://{consul_server.address}/{sd_namespace}?tag=prod&wait=1"
    instancer = sd_core.instancer(url)
    try:
        with instancer.subscribe() as sub:
            wait_for(sub, lambda e: ids(e) == {"p"}, PROPAGATION, "the prod instance")
    finally:
        instancer.stop()


def test_address_from_consul_http_addr(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_registrar(reg(sd_namespace, "a", 20016)).register()
    monkeypatch.setenv("CONSUL_HTTP_ADDR", f"http://{consul_server.address}")
    instancer = sd_core.instancer("consul", sd_namespace, wait=1.0)
    try:
        with instancer.subscribe() as sub:
            wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "instance a")
    finally:
        instancer.stop()


def test_tcp_check_beside_the_ttl_check(
    sd_namespace: str, make_instancer: MakeInstancer, make_registrar: MakeRegistrar
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        registrar = make_registrar(
            reg(sd_namespace, "a", port), tcp_check=f"127.0.0.1:{port}", check_interval="500ms"
        )
        registrar.register()
        with make_instancer(sd_namespace).subscribe() as sub:
            wait_for(sub, lambda e: ids(e) == {"a"}, 10.0, "a, its TCP check passing")
    # The listener is closed: the TCP check fails and a is no longer passing.
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: e.ok and not e.instances, 10.0, "a failing its TCP check")


def test_http_check_beside_the_ttl_check(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    registrar = make_registrar(
        reg(sd_namespace, "a", 20017),
        http_check=f"{consul_server.url}/v1/status/leader",
        check_interval="500ms",
    )
    registrar.register()
    checks = consul_server.api("GET", "/v1/agent/checks").json()
    assert checks["service:a:http"]["ServiceID"] == "a"
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, 10.0, "a, its HTTP check passing")


def test_same_id_on_two_nodes_is_qualified_by_node(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    make_registrar(reg(sd_namespace, "web-1", 20018)).register()
    other = {
        "Node": f"{sd_namespace}-node",
        "Address": "127.0.0.2",
        "Service": {"ID": "web-1", "Service": sd_namespace, "Port": 20019},
    }
    assert consul_server.api("PUT", "/v1/catalog/register", other).status == 200
    try:
        with make_instancer(sd_namespace).subscribe() as sub:
            event = wait_for(sub, lambda e: len(e.instances) == 2, PROPAGATION, "two instances")
        assert {instance.id for instance in event.instances} == {
            f"{consul_server.node_name}/web-1",
            f"{sd_namespace}-node/web-1",
        }
        hosts = {i.id.split("/")[0]: i.host for i in event.instances}
        assert hosts[f"{sd_namespace}-node"] == "127.0.0.2"  # the node's address
    finally:
        consul_server.api("PUT", "/v1/catalog/deregister", {"Node": f"{sd_namespace}-node"})


def test_malformed_entries_are_skipped_with_one_warning(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_consul")
    # Port 0, straight through the HTTP API: there is no address to reach it at.
    bad = {"ID": "portless", "Name": sd_namespace}
    assert consul_server.api("PUT", "/v1/agent/service/register", bad).status == 200
    try:
        with make_instancer(sd_namespace).subscribe() as sub:
            make_registrar(reg(sd_namespace, "good", 20020)).register()
            wait_for(sub, lambda e: ids(e) == {"good"}, PROPAGATION, "only the good one")
            make_registrar(reg(sd_namespace, "good2", 20021)).register()
            wait_for(sub, lambda e: ids(e) == {"good", "good2"}, PROPAGATION, "both good ones")
        warnings = [r.getMessage() for r in caplog.records if "portless" in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert "port" in warnings[0]
    finally:
        consul_server.api("PUT", "/v1/agent/service/deregister/portless")


def test_stop_is_prompt_during_a_blocking_query_and_leaves_no_thread(
    sd_namespace: str, make_instancer: MakeInstancer, make_registrar: MakeRegistrar
) -> None:
    registrar = make_registrar(reg(sd_namespace, "a", 20022))
    registrar.register()
    instancer = make_instancer(sd_namespace, wait=60.0)
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "instance a")
    time.sleep(0.3)  # now inside a blocking query that would last 60 s
    started = time.monotonic()
    instancer.stop()
    assert time.monotonic() - started < 1.0
    registrar.close()
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.startswith(("sd-watch-consul", "sd-keepalive-consul"))]


class IPv6ConsulServer(ConsulServer):
    """A Consul agent whose HTTP API also listens on ::1."""

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["client_addr"] = f"{self.host} ::1"
        return config


@pytest.fixture(scope="module")
def ipv6_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IPv6ConsulServer]:
    try:
        server = IPv6ConsulServer(tmp_path_factory.mktemp("consul-ipv6"), name="consul-ipv6")
    except BackendNotInstalled as exc:  # as sd_core's fixtures do: skip, but fail in CI
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_an_agent_reached_over_ipv6(ipv6_server: IPv6ConsulServer, sd_namespace: str) -> None:
    address = f"[::1]:{ipv6_server.http_port}"
    registration = Registration(sd_namespace, "::1", 20023, ttl=5.0)
    with sd_core.registrar("consul", registration, address=address) as registrar:
        assert registrar.service_id == f"{sd_namespace}:[::1]:20023"  # type: ignore[attr-defined]
        instancer = sd_core.instancer(f"consul://{address}/{sd_namespace}?wait=1")
        try:
            with instancer.subscribe() as sub:
                event = wait_for(sub, lambda e: len(e.instances) == 1, PROPAGATION, "the instance")
        finally:
            instancer.stop()
    assert event.instances[0].address == "[::1]:20023"
