"""A 3-member etcd cluster: members die under the client (it moves to another endpoint), and
history is compacted while an instancer cannot reach its member."""

from __future__ import annotations

import time
from typing import Any

from etcd_helpers import Gateway, ids, poll, wait_for
from pytest_sd.etcd import EtcdCluster, EtcdMember
from sd_etcd import EtcdRegistrar
from sd_etcd._client import EtcdClient

import sd_core
from sd_core import Registration
from sd_core.plugin import connections


def _member(cluster: EtcdCluster, client: EtcdClient) -> EtcdMember:
    """The member ``client``'s channel uses now."""
    (member,) = [m for m in cluster.members if m.address == client.endpoint.netloc]
    return member


def test_discovery_and_registration_go_on_when_the_member_in_use_and_the_leader_die(
    etcd_cluster: EtcdCluster, sd_namespace: str
) -> None:
    options: dict[str, Any] = {"address": etcd_cluster.addresses, "timeout": 2.0, "retry_max": 0.5}
    ttl = 3.0
    instancer = sd_core.instancer("etcd", sd_namespace, **options)
    registrars: list[sd_core.Registrar] = []

    def register(name: str, port: int) -> EtcdRegistrar:
        reg = Registration(sd_namespace, "127.0.0.1", port, id=name, ttl=ttl)
        registrar = sd_core.registrar("etcd", reg, **options)
        registrars.append(registrar)
        registrar.register()
        assert isinstance(registrar, EtcdRegistrar)
        return registrar

    events: list[sd_core.Event] = []
    instancer.register(events.append)
    try:
        with instancer.subscribe() as sub:
            a = register("a", 20001)
            wait_for(sub, lambda e: ids(e) == {"a"}, 5.0, "instance a")
            client = a.client
            assert connections().count("etcd") >= 1
            first = _member(etcd_cluster, client)

            first.kill()  # the member the one channel of this process uses
            b = register("b", 20002)  # goes to another member at once
            assert client.endpoint.netloc != first.address
            wait_for(sub, lambda e: ids(e) == {"a", "b"}, 10.0, "a and b")
            first.start()  # back, so that the cluster keeps a quorum without the leader

            leader = etcd_cluster.leader()
            leader.kill()
            register("c", 20003)
            wait_for(sub, lambda e: ids(e) == {"a", "b", "c"}, 15.0, "a, b and c")
            b.deregister()
            wait_for(sub, lambda e: ids(e) == {"a", "c"}, 10.0, "a and c")

            # Leases were kept alive through both deaths: nothing expired, nothing restored;
            # and the subscribers never saw an error (each call went on to another member).
            time.sleep(ttl)
            instancer.settle()
            assert ids(events[-1]) == {"a", "c"}
            assert [e for e in events if not e.ok] == []
            assert all(r.health.healthy for r in registrars[::2]), [r.health for r in registrars]
            assert sum(r.restores for r in registrars) == 0
            survivors = [m for m in etcd_cluster.members if m.running]
            keys = Gateway(survivors[0]).keys(f"/services/{sd_namespace}/")
            assert set(keys) == {f"/services/{sd_namespace}/a", f"/services/{sd_namespace}/c"}
    finally:
        instancer.deregister(events.append)
        for registrar in registrars:
            registrar.close()
        instancer.stop()


def test_compaction_while_an_instancer_cannot_reach_its_member(
    etcd_cluster: EtcdCluster, sd_namespace: str
) -> None:
    """The instancer talks to one member only; while that member is down, the others change
    the service and compact the history. Back, the instancer has the right set."""
    # Writes go to the leader, so that they need no election; the lonely one is a follower.
    leader = etcd_cluster.leader()
    lonely = next(member for member in etcd_cluster.members if member is not leader)
    gateway = Gateway(leader)
    prefix = f"/services/{sd_namespace}/"
    gateway.put(prefix + "a", "10.0.0.1:80")
    gateway.put(prefix + "b", "10.0.0.2:80")
    instancer = sd_core.instancer(
        "etcd", sd_namespace, address=lonely.address, timeout=2.0, retry_max=0.5
    )
    try:
        with instancer.subscribe() as sub:
            wait_for(sub, lambda e: ids(e) == {"a", "b"}, 5.0, "a and b")
            lonely.kill()
            wait_for(sub, lambda e: not e.ok, 5.0, "an error while the member is down")
            gateway.delete(prefix + "a")
            gateway.put(prefix + "c", "10.0.0.3:80")
            gateway.put(prefix + "b", "10.0.0.4:80")
            gateway.compact()
            lonely.start()
            event = wait_for(sub, lambda e: e.ok, 15.0, "the member answering again")
            assert {i.id: i.address for i in event.instances} == {
                "b": "10.0.0.4:80",
                "c": "10.0.0.3:80",
            }

            # Frozen rather than gone: the same, once it thaws.
            lonely.pause()
            gateway.delete(prefix + "c")
            gateway.put(prefix + "d", "10.0.0.5:80")
            gateway.compact()
            time.sleep(1.0)
            lonely.resume()
            wait_for(sub, lambda e: e.ok and ids(e) == {"b", "d"}, 15.0, "b and d after the thaw")
    finally:
        instancer.stop()
    poll(lambda: connections().count("etcd") == 0, 5.0, "the client closed")
