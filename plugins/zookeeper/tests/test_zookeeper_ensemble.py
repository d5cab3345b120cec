"""A 3-server ensemble: losing the server the client is on, and losing the quorum."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pytest_sd.zookeeper import ZooKeeperEnsemble, ZooKeeperServer
from zookeeper_helpers import FAST, ids, poll, wait_for

import sd_core
from sd_core import Event, Registrar, Registration


@pytest.fixture
def ensemble_options(zookeeper_ensemble: ZooKeeperEnsemble, sd_namespace: str) -> dict[str, Any]:
    return {
        "address": zookeeper_ensemble.connect_string,
        "chroot": f"/{sd_namespace}",
        **FAST,
        "session_timeout": 4.0,
    }


@pytest.fixture
def registrar(ensemble_options: dict[str, Any]) -> Iterator[Registrar]:
    made = sd_core.registrar(
        "zk", Registration("web", "10.0.0.1", 8080, id="w1"), **ensemble_options
    )
    yield made
    made.close()


def _server_of(registrar: Any, ensemble: ZooKeeperEnsemble) -> ZooKeeperServer:
    port = registrar.client.kazoo._connection._socket.getpeername()[1]
    return next(member for member in ensemble.members if member.port == port)


def test_losing_the_server_the_client_is_on_keeps_session_and_registration(
    zookeeper_ensemble: ZooKeeperEnsemble,
    ensemble_options: dict[str, Any],
    registrar: Registrar,
) -> None:
    registrar.register()
    client: Any = registrar.client  # type: ignore[attr-defined]
    session = client.session_id
    events: list[Event] = []
    with sd_core.instancer("zk", "web", **ensemble_options) as instancer:
        instancer.register(events.append)
        with instancer.subscribe() as sub:
            wait_for(sub, lambda e: ids(e) == {"w1"}, 10.0, "w1")
        states: list[str] = []

        def on_session(state: str, error: object) -> None:
            states.append(state)

        client.add_listener(on_session)  # a poll of `connected` could miss a quick failover
        _server_of(registrar, zookeeper_ensemble).kill()
        poll(lambda: "suspended" in states, 10.0, "the connection dropped")
        poll(lambda: client.connected, 10.0, "connected to another server")
        client.remove_listener(on_session)
        assert "lost" not in states, states
        assert client.session_id == session
        assert registrar.restores == 0 and registrar.health.healthy
        # The watch still works: a change reaches the subscriber.
        with (
            sd_core.registrar(
                "zk", Registration("web", "10.0.0.2", 8080, id="w2"), **ensemble_options
            ) as second,
            instancer.subscribe() as sub,
        ):
            wait_for(sub, lambda e: ids(e) == {"w1", "w2"}, 10.0, "w1 and w2")
            assert second.health.healthy
        instancer.settle()
    assert all(e.ok for e in events), events


def test_losing_the_quorum_and_getting_it_back(
    zookeeper_ensemble: ZooKeeperEnsemble,
    ensemble_options: dict[str, Any],
    registrar: Registrar,
) -> None:
    """Two of three servers killed: no quorum, the session is taken as lost after its timeout
    (one error event, the registrar lost); back: the registration and the watch recover."""
    registrar.register()
    with sd_core.instancer("zk", "web", **ensemble_options) as instancer:
        with instancer.subscribe() as sub:
            wait_for(sub, lambda e: ids(e) == {"w1"}, 10.0, "w1")
            victims = zookeeper_ensemble.members[:2]
            for member in victims:
                member.kill()
            wait_for(sub, lambda e: not e.ok, 20.0, "an error without a quorum")
            assert not registrar.health.healthy
            for member in victims:
                member.start(wait=False)
            for member in victims:
                member.wait_ready(90)
            wait_for(sub, lambda e: e.ok and ids(e) == {"w1"}, 30.0, "w1 back")
        poll(lambda: registrar.health.healthy, 20.0, "the registrar healthy again")
        with (
            sd_core.registrar(
                "zk", Registration("web", "10.0.0.2", 8080, id="w2"), **ensemble_options
            ),
            instancer.subscribe() as sub,
        ):
            wait_for(sub, lambda e: ids(e) == {"w1", "w2"}, 10.0, "w1 and w2")
