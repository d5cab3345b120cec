"""Registration against a real etcd (3.4 and 3.5): the key, its value, its lease, and what
the registrar does when the lease is gone."""

from __future__ import annotations

import json
import logging
import time

import pytest
from etcd_helpers import Gateway, MakeInstancer, MakeRegistrar, ids, poll, wait_for
from pytest_sd.etcd import EtcdServer
from sd_etcd import EtcdRegistrar

from sd_core import RegistrarState, Registration


def _etcd(registrar: object) -> EtcdRegistrar:
    assert isinstance(registrar, EtcdRegistrar)
    return registrar


def test_the_key_holds_our_json_under_a_lease_of_the_ttl(
    etcd_server: EtcdServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    gateway = Gateway(etcd_server)
    reg = Registration(sd_namespace, "127.0.0.1", 20001, id="a", meta={"v": "1"}, ttl=2.5)
    registrar = _etcd(make_registrar(reg))
    registrar.register()
    assert registrar.key == f"/services/{sd_namespace}/a"
    assert registrar.backend_id == registrar.key
    stored = gateway.get(registrar.key)
    assert stored is not None
    assert json.loads(stored["value"]) == {
        "host": "127.0.0.1",
        "port": 20001,
        "tags": [],
        "meta": {"v": "1"},
        "weight": 1,
        "zone": "",
    }
    assert stored["lease"] == registrar.lease_id
    assert registrar.lease_ttl == 3  # whole seconds: the TTL rounded up
    assert 0 < gateway.lease_ttl(stored["lease"]) <= 3
    # Kept alive: after twice the TTL the key is still there, on the same lease.
    time.sleep(2 * reg.ttl)
    stored = gateway.get(registrar.key)
    assert stored is not None and stored["lease"] == registrar.lease_id
    assert registrar.health.state is RegistrarState.REGISTERED
    assert registrar.restores == 0


def test_value_address_writes_the_plain_host_port_go_kit_reads(
    etcd_server: EtcdServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_etcd")
    reg = Registration(sd_namespace, "::1", 20002, tags={"t"})
    registrar = _etcd(make_registrar(reg, value="address"))
    registrar.register()
    stored = Gateway(etcd_server).get(f"/services/{sd_namespace}/[::1]:20002")
    assert stored is not None and stored["value"] == b"[::1]:20002"
    assert any("writes only host:port" in r.getMessage() for r in caplog.records)


def test_deregister_deletes_the_key_and_revokes_the_lease(
    etcd_server: EtcdServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    gateway = Gateway(etcd_server)
    registrar = _etcd(make_registrar(Registration(sd_namespace, "127.0.0.1", 20003, ttl=30)))
    registrar.register()
    lease = registrar.lease_id
    assert lease is not None and gateway.lease_ttl(lease) > 0
    registrar.deregister()
    assert gateway.get(registrar.key) is None
    assert gateway.lease_ttl(lease) == -1
    assert registrar.lease_id is None
    registrar.deregister()  # idempotent


def test_a_lease_revoked_from_outside_is_restored_within_two_ttls(
    etcd_server: EtcdServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    gateway = Gateway(etcd_server)
    ttl = 2.0
    registrar = _etcd(
        make_registrar(Registration(sd_namespace, "127.0.0.1", 20004, id="a", ttl=ttl))
    )
    registrar.register()
    first = registrar.lease_id
    assert first is not None
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, 3.0, "instance a")
        gateway.revoke(first)  # an operator, or another process
        revoked = time.monotonic()
        wait_for(sub, lambda e: e.ok and not e.instances, 3.0, "the key gone with its lease")
        wait_for(sub, lambda e: ids(e) == {"a"}, 2 * ttl, "instance a restored")
        assert time.monotonic() - revoked <= 2 * ttl
    poll(lambda: registrar.restores == 1, 1.0, "the restore counted")
    assert registrar.lease_id not in (None, first)
    stored = gateway.get(registrar.key)
    assert stored is not None and stored["lease"] == registrar.lease_id


def test_deregister_leaves_the_key_when_another_registrar_took_it_over(
    etcd_server: EtcdServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    """Two registrars of the same id (a restarted process whose old one is still closing):
    the older one's deregistration does not remove the newer one's key."""
    gateway = Gateway(etcd_server)
    reg = Registration(sd_namespace, "127.0.0.1", 20005, id="a", ttl=30)
    old, new = _etcd(make_registrar(reg)), _etcd(make_registrar(reg))
    old.register()
    new.register()
    old.deregister()
    stored = gateway.get(new.key)
    assert stored is not None and stored["lease"] == new.lease_id
    new.deregister()
    assert gateway.get(new.key) is None


def test_a_ttl_under_a_second_asks_for_a_lease_of_one_second(
    etcd_server: EtcdServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    registrar = _etcd(make_registrar(Registration(sd_namespace, "127.0.0.1", 20006, ttl=0.6)))
    registrar.register()
    assert registrar.lease_ttl == 1
    assert registrar.keepalive_interval == pytest.approx(0.2)
    time.sleep(1.5)  # longer than the lease: alive only if the keepalive renews it
    assert Gateway(etcd_server).get(registrar.key) is not None


def test_keepalives_fail_while_etcd_is_down_and_recover(
    etcd_server: EtcdServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    registrar = _etcd(make_registrar(Registration(sd_namespace, "127.0.0.1", 20007, ttl=2.0)))
    registrar.register()
    etcd_server.stop()
    poll(lambda: registrar.health.state is RegistrarState.FAILING, 10.0, "the registrar failing")
    assert "etcd at" in str(registrar.health.last_error)
    etcd_server.start()
    poll(lambda: registrar.health.healthy, 10.0, "the registrar healthy again")
    stored = Gateway(etcd_server).get(registrar.key)
    assert stored is not None and stored["lease"] == registrar.lease_id
