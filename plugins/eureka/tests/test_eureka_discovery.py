"""Discovery against the real server: one poller per connection, deltas after one full
fetch, the hashcode check, the views (status, host, secure port), bad records."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from eureka_helpers import MakeInstancer, MakeRegistrar, ids, poll, poll_tasks, put, wait_for
from pytest_sd.eureka import EurekaServer
from sd_eureka import EurekaBackend
from sd_eureka._backend import connection_from
from sd_eureka._poller import poller_for

from sd_core import Event, Registration
from sd_core.plugin import connections, core_loop, resolve_for

PROPAGATION = 5.0


def only(ident: str) -> Callable[[Event], bool]:
    """A check that an event lists ``ident`` alone."""
    return lambda event: ids(event) == {ident}


def listing(ident: str) -> Callable[[Event], bool]:
    """A check that an event lists ``ident``."""
    return lambda event: ident in ids(event)


def test_one_poller_and_one_client_serve_every_instancer_of_a_connection(
    options: dict[str, Any],
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    clients = connections().count("eureka")
    assert poll_tasks() == 0
    services = [f"{sd_namespace}-{n}" for n in range(30)]
    instancers = [make_instancer(service) for service in services]
    # Other views of the registry: other fan-outs, the same poller.
    instancers.append(make_instancer(services[0], status=["UP", "STARTING"]))
    instancers.append(make_instancer(services[0], host_from="hostName", refresh=1.0))
    subs = [instancer.subscribe() for instancer in instancers]
    try:
        firsts = [wait_for(sub, lambda e: e.ok, PROPAGATION, "a first set") for sub in subs]
        assert all(not event.instances for event in firsts), "services nobody registered"
        registrars = [
            make_registrar(Registration(service, "127.0.0.1", 20000 + n, id=f"i{n}"))
            for n, service in enumerate(services[:3])
        ]
        for registrar in registrars:
            registrar.register()
        assert poll_tasks() == 1
        assert connections().count("eureka") == clients + 1
        for n in range(3):
            event = wait_for(subs[n], lambda e: bool(e.instances), PROPAGATION, "its one")
            assert ids(event) == {f"i{n}"}
        assert ids(wait_for(subs[-1], lambda e: bool(e.instances), PROPAGATION, "i0")) == {"i0"}
    finally:
        for sub in subs:
            sub.close()
    for instancer in instancers:
        instancer.stop()
    poll(lambda: poll_tasks() == 0, 5.0, "the poller stopping with its last instancer")
    assert connections().count("eureka") == clients + 1, "the registrars still hold the client"
    for registrar in registrars:
        registrar.close()
    assert connections().count("eureka") == clients


def test_deltas_follow_one_full_fetch(
    options: dict[str, Any],
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: e.ok, PROPAGATION, "a first set")
        for n in range(3):
            registrar = make_registrar(Registration(sd_namespace, "127.0.0.1", 20100, id=f"d{n}"))
            registrar.register()
            wait_for(sub, only(f"d{n}"), PROPAGATION, f"d{n}")
            registrar.deregister()
            wait_for(sub, lambda e: not e.instances, PROPAGATION, "none")
    requests = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    full = [line for line in requests if "GET " in line and "/eureka/apps " in line]
    deltas = [line for line in requests if "GET " in line and "/eureka/apps/delta " in line]
    assert len(full) == 1, full
    assert len(deltas) >= 6, deltas


def test_a_registry_that_does_not_add_up_is_fetched_whole_again(
    options: dict[str, Any],
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sd_eureka")
    make_registrar(Registration(sd_namespace, "127.0.0.1", 20200, id="real")).register()
    instancer = make_instancer(sd_namespace)
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"real"}, PROPAGATION, "the real one")
        poller = poller_for(connection_from(resolve_for(EurekaBackend(), options)))
        run = poller._run
        assert run is not None and run.registry is not None

        async def corrupt() -> None:
            # An instance the server does not have: the next delta cannot add up.
            assert run.registry is not None
            app = sd_namespace.upper()
            ghost = dict(run.registry.apps[app]["real"], instanceId="ghost")
            run.registry.apps[app]["ghost"] = ghost
            run.registry.versions[app] += 1_000_000
            run._publish(poller.active())

        core_loop().call(corrupt(), timeout=5)
        wait_for(sub, lambda e: ids(e) == {"real", "ghost"}, PROPAGATION, "the ghost published")
        wait_for(sub, lambda e: ids(e) == {"real"}, PROPAGATION, "the ghost gone")
    assert "fetching all of it" in caplog.text


def test_views_choose_statuses_host_field_and_secure_port(
    eureka_server: EurekaServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    app = sd_namespace.upper()
    put(
        eureka_server,
        app,
        "out",
        status="OUT_OF_SERVICE",
        hostName="node-1.example",
        ipAddr="127.0.0.9",
        port={"$": 8080, "@enabled": "false"},
        securePort={"$": 8443, "@enabled": "true"},
    )
    put(eureka_server, app, "starting", status="STARTING")
    put(eureka_server, app, "up")

    def first(**options: Any) -> Event:
        with make_instancer(sd_namespace, **options).subscribe() as sub:
            return wait_for(sub, lambda e: e.ok, PROPAGATION, "a first set")

    assert ids(first()) == {"up"}
    assert ids(first(status=["STARTING", "UP"])) == {"starting", "up"}
    # Its plain port is disabled: listed only by an instancer of secure ports.
    assert ids(first(status=["OUT_OF_SERVICE"])) == set()
    (out,) = first(status=["OUT_OF_SERVICE"], secure=True).instances
    assert (out.host, out.port) == ("127.0.0.9", 8443)
    (named,) = first(status=["OUT_OF_SERVICE"], secure=True, host_from="hostName").instances
    assert named.host == "node-1.example"
    for ident in ("out", "starting", "up"):
        eureka_server.api("DELETE", f"/apps/{app}/{ident}")


def test_records_that_cannot_be_instances_are_skipped_with_one_warning_each(
    eureka_server: EurekaServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_eureka")
    app = sd_namespace.upper()
    put(eureka_server, app, "good")
    put(eureka_server, app, "bad-host", ipAddr="not a host!")
    put(eureka_server, app, "bad-port", port={"$": 0, "@enabled": "true"})
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"good"}, PROPAGATION, "only the good one")
        # Changes in the application re-map it, several times: no warning again.
        for n in range(3):
            put(eureka_server, app, f"more-{n}")
            wait_for(sub, listing(f"more-{n}"), PROPAGATION, f"more-{n}")
        warnings = [r.getMessage() for r in caplog.records if r.name == "sd_eureka"]
        assert len([w for w in warnings if "'bad-host'" in w]) == 1, warnings
        assert len([w for w in warnings if "'bad-port'" in w]) == 1, warnings
        assert all(app in w for w in warnings)
        # Fixed, it is listed; the good ones never left.
        put(eureka_server, app, "bad-host", ipAddr="127.0.0.2")
        event = wait_for(sub, lambda e: "bad-host" in ids(e), PROPAGATION, "bad-host fixed")
        assert {"good", "more-0", "more-1", "more-2"} <= ids(event)
    for ident in ("good", "bad-host", "bad-port", "more-0", "more-1", "more-2"):
        eureka_server.api("DELETE", f"/apps/{app}/{ident}")


def test_service_names_ignore_case(
    sd_namespace: str, make_instancer: MakeInstancer, make_registrar: MakeRegistrar
) -> None:
    make_registrar(Registration(sd_namespace.upper(), "127.0.0.1", 20300, id="x")).register()
    with make_instancer(sd_namespace).subscribe() as sub:
        event = wait_for(sub, lambda e: ids(e) == {"x"}, PROPAGATION, "x")
    assert event.instances[0].service == sd_namespace  # lower case, as Spring names services


def test_an_instancer_attached_to_a_running_poller_gets_the_registry_at_once(
    sd_namespace: str, make_instancer: MakeInstancer, make_registrar: MakeRegistrar
) -> None:
    """With a 30 s refresh, only the registry the poller holds can answer in time: the same
    view (its fan-out's latest registry) and another view (mapped for it on attaching)."""
    slow = {"refresh": 30.0}
    make_registrar(Registration(sd_namespace, "127.0.0.1", 20310, id="y")).register()
    with make_instancer(f"{sd_namespace}-other", **slow).subscribe() as first:
        wait_for(first, lambda e: e.ok, PROPAGATION, "the first fetch")
        for options in ({}, {"status": ["UP", "DOWN"]}, {"host_from": "hostName"}):
            with make_instancer(sd_namespace, **slow, **options).subscribe() as sub:
                assert ids(wait_for(sub, lambda e: True, 2.0, "a first set")) == {"y"}, options
