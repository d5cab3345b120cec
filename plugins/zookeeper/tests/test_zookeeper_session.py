"""The session: a real expiry, a short disconnection, and one session per connection."""

from __future__ import annotations

from typing import Any

from kazoo.client import KazooClient  # type: ignore[import-untyped]
from pytest_sd.zookeeper import ZooKeeperServer
from zookeeper_helpers import MakeInstancer, MakeRegistrar, ids, poll, wait_for

from sd_core import Event, Registration
from sd_core.plugin import connections


def _client_of(registrar: Any) -> Any:
    return registrar.client


def test_the_node_is_recreated_after_a_real_session_expiry(
    zookeeper_server: ZooKeeperServer,
    chroot: str,
    peer: Any,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    """Another client opens our session (same id and password) and closes it: ZooKeeper
    expires the session and deletes its nodes; the registrar creates the node again in the new
    session, and subscribers see the instance again, after one error event."""
    registrar = make_registrar(Registration("web", "10.0.0.1", 8080, id="w1"))
    registrar.register()
    client = _client_of(registrar)
    first = peer.get("/services/web/w1")[1]
    events: list[Event] = []
    instancer = make_instancer("web")
    instancer.register(events.append)
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"w1"}, 5.0, "w1")
        old_session = client.session_id
        thief = KazooClient(
            hosts=zookeeper_server.address + chroot,
            client_id=client.kazoo.client_id,
            timeout=2.0,
        )
        thief.start(timeout=10)
        thief.stop()  # closes the session: ZooKeeper deletes its ephemeral nodes
        thief.close()
        poll(lambda: registrar.restores == 1, 10.0, "the registration restored")
        wait_for(sub, lambda e: ids(e) == {"w1"} and e.ok, 10.0, "w1 again")
    assert client.session_id != old_session
    again = peer.get("/services/web/w1")[1]
    assert again.ephemeralOwner == client.session_id != first.ephemeralOwner
    assert registrar.health.healthy
    errors = [e for e in events if not e.ok]
    assert len(errors) == 1, events
    assert "expired" in str(errors[0].error)


def test_a_short_disconnection_keeps_the_set_and_sends_no_error(
    zookeeper_server: ZooKeeperServer, make_registrar: MakeRegistrar, make_instancer: MakeInstancer
) -> None:
    """SUSPENDED (the server frozen for less than the session timeout): subscribers keep the
    last set, nothing is sent, and the session and its node survive."""
    registrar = make_registrar(Registration("web", "10.0.0.1", 8080, id="w1"))
    registrar.register()
    events: list[Event] = []
    instancer = make_instancer("web", session_timeout=6.0)
    instancer.register(events.append)
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"w1"}, 5.0, "w1")
    session = _client_of(registrar).session_id
    zookeeper_server.pause()
    try:
        poll(lambda: not _client_of(registrar).connected, 20.0, "the connection dropped")
    finally:
        zookeeper_server.resume()
    poll(lambda: _client_of(registrar).connected, 10.0, "connected again")
    instancer.settle()
    assert [ids(e) for e in events] == [{"w1"}], events
    assert _client_of(registrar).session_id == session
    assert registrar.restores == 0


def test_instancers_and_registrars_of_one_connection_share_one_session(
    make_registrar: MakeRegistrar, make_instancer: MakeInstancer, options: dict[str, Any]
) -> None:
    before = connections().count("zookeeper")
    registrars = [
        make_registrar(Registration(f"svc{n}", "10.0.0.1", 8000 + n, id="i")) for n in range(5)
    ]
    instancers = [make_instancer(f"svc{n}") for n in range(5)]
    for registrar in registrars:
        registrar.register()
    for n, instancer in enumerate(instancers):
        with instancer.subscribe() as sub:
            wait_for(sub, lambda e: ids(e) == {"i"}, 5.0, f"svc{n}")
    assert connections().count("zookeeper") == before + 1
    sessions = {_client_of(r).session_id for r in registrars}
    assert len(sessions) == 1
    # Another chroot is another connection, so another session.
    other = make_instancer("svc0", chroot=options["chroot"] + "-other")
    with other.subscribe() as sub:
        wait_for(sub, lambda e: e.ok, 5.0, "a first set")
    assert connections().count("zookeeper") == before + 2
