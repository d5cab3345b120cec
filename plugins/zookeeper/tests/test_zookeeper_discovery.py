"""Discovery and registration on a real server: the node forms read, bad nodes skipped with one
warning, the service's node coming and going, changes of data, and what registration touches."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from zookeeper_helpers import MakeInstancer, MakeRegistrar, ids, plain_client, wait_for

from sd_core import Registration, RegistrationError

# As Spring Cloud Zookeeper 4.1 writes it (checked against the real library in
# test_zookeeper_interop.py).
SPRING = (
    '{"name":"web","id":"s1","address":"10.0.0.1","port":8080,"sslPort":null,'
    '"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance",'
    '"id":"application-1","name":"web","metadata":{"instance_status":"UP","zone":"z1",'
    '"version":"3"}},"registrationTimeUTC":1700000000000,"serviceType":"DYNAMIC",'
    '"uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},'
    '{"value":"address","variable":true},{"value":":","variable":false},'
    '{"value":"port","variable":true}]}}'
)
# As Curator 5 writes it with a Map payload.
CURATOR = (
    '{"name":"web","id":"c1","address":"10.0.0.2","port":null,"sslPort":8443,'
    '"payload":{"@class":"java.util.LinkedHashMap","color":"red","tags":"a,b"},'
    '"registrationTimeUTC":1700000000000,"serviceType":"DYNAMIC","uriSpec":null}'
)


def test_every_peer_form_is_read(peer: Any, make_instancer: MakeInstancer) -> None:
    peer.create("/services/web/s1", SPRING.encode(), makepath=True)
    peer.create("/services/web/c1", CURATOR.encode())
    peer.create("/services/web/_c_0d1e-instance0000000001", b"10.0.0.3:9000")
    peer.create("/services/web/v6", b"[2001:db8::1]:9001")
    with make_instancer("web").subscribe() as sub:
        event = wait_for(sub, lambda e: len(e.instances) == 4, 5.0, "four instances")
    by_id = {i.id: i for i in event.instances}
    assert (by_id["s1"].address, by_id["s1"].zone, dict(by_id["s1"].meta)) == (
        "10.0.0.1:8080",
        "z1",
        {"version": "3"},
    )
    assert (by_id["c1"].port, by_id["c1"].tags, dict(by_id["c1"].meta)) == (
        8443,
        frozenset({"a", "b"}),
        {"color": "red"},
    )
    assert by_id["_c_0d1e-instance0000000001"].address == "10.0.0.3:9000"
    assert by_id["v6"].host == "2001:db8::1"


def test_bad_nodes_are_skipped_with_one_warning_each(
    peer: Any, make_instancer: MakeInstancer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_zookeeper")
    peer.create("/services/web/good", b"10.0.0.1:80", makepath=True)
    bad = {
        "garbage": b"this is not an instance",
        "badjson": b'{"address": "10.0.0.1", "port": ',
        "noport": json.dumps({"name": "web", "address": "10.0.0.1", "port": None}).encode(),
        "noaddress": json.dumps({"name": "web", "port": 80}).encode(),
        "empty": b"",
        "portzero": b"10.0.0.1:0",
    }
    for name, data in bad.items():
        peer.create(f"/services/web/{name}", data)
    with make_instancer("web").subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"good"}, 5.0, "only the good one")
        peer.create("/services/web/good2", b"10.0.0.2:80")  # a change: read again
        wait_for(sub, lambda e: ids(e) == {"good", "good2"}, 5.0, "good2")
    warned = [r.getMessage() for r in caplog.records if r.name == "sd_zookeeper"]
    for name in bad:
        about = [message for message in warned if f"node {name!r}" in message]
        assert len(about) == 1, (name, warned)


def test_the_service_node_may_be_absent_appear_and_go(
    peer: Any, make_instancer: MakeInstancer
) -> None:
    with make_instancer("late").subscribe() as sub:
        first = wait_for(sub, lambda e: True, 5.0, "a first event")
        assert first.ok and not first.instances
        peer.create("/services/late/a", b"10.0.0.1:80", makepath=True)
        wait_for(sub, lambda e: ids(e) == {"a"}, 5.0, "a")
        peer.delete("/services/late", recursive=True)
        wait_for(sub, lambda e: e.ok and not e.instances, 5.0, "none")
        peer.create("/services/late/b", b"10.0.0.2:80", makepath=True)
        wait_for(sub, lambda e: ids(e) == {"b"}, 5.0, "b")


def test_a_change_of_data_is_seen(peer: Any, make_instancer: MakeInstancer) -> None:
    peer.create("/services/web/a", b"10.0.0.1:80", makepath=True)
    with make_instancer("web").subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, 5.0, "a")
        peer.set("/services/web/a", b"10.0.0.9:81")
        event = wait_for(sub, lambda e: e.instances and e.instances[0].port == 81, 5.0, "moved")
    assert event.instances[0].host == "10.0.0.9"


def test_deregister_deletes_our_node_only(
    zookeeper_server: Any, chroot: str, peer: Any, make_registrar: MakeRegistrar
) -> None:
    registrar = make_registrar(Registration("web", "10.0.0.1", 80, id="mine"))
    registrar.register()
    peer.create("/services/web/theirs", b"10.0.0.2:80", ephemeral=True)
    registrar.deregister()
    assert peer.get_children("/services/web") == ["theirs"]
    # A node that replaced ours at the same path (another owner) is not deleted either.
    registrar.register()
    other = plain_client(zookeeper_server.address + chroot)
    try:
        peer.delete("/services/web/mine")
        other.create("/services/web/mine", b"10.0.0.3:80", ephemeral=True)
        registrar.deregister()
        assert other.exists("/services/web/mine") is not None
    finally:
        other.stop()
        other.close()
    assert peer.exists("/services/web") is not None


def test_an_id_held_by_another_live_instance_is_refused_a_ghost_is_replaced(
    peer: Any, make_registrar: MakeRegistrar
) -> None:
    peer.create("/services/web/x", b"10.0.0.2:80", ephemeral=True, makepath=True)
    with pytest.raises(RegistrationError, match="held by another instance"):
        make_registrar(Registration("web", "10.0.0.1", 80, id="x")).register()
    # The same address: the node of an earlier run whose session has not expired yet.
    peer.create("/services/web/y", b"10.0.0.1:80", ephemeral=True)
    registrar = make_registrar(Registration("web", "10.0.0.1", 80, id="y"))
    registrar.register()
    data, stat = peer.get("/services/web/y")
    assert json.loads(data)["address"] == "10.0.0.1"
    assert stat.ephemeralOwner == registrar.client.session_id  # type: ignore[attr-defined]
