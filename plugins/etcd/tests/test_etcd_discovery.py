"""Discovery against a real etcd (3.4 and 3.5): what is read, what is skipped, and the watch
that follows the read without losing or repeating a change."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from typing import Any

import pytest
from etcd_helpers import Gateway, MakeInstancer, MakeRegistrar, addresses, ids, wait_for
from pytest_sd.etcd import EtcdServer
from sd_etcd._client import EtcdClient

import sd_core
from sd_core import Event, Registration
from sd_core.plugin import connections


def test_our_json_and_go_kit_host_port_values_are_both_read(
    etcd_server: EtcdServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    gateway = Gateway(etcd_server)
    # As go-kit's etcdv3 registrar writes: the instance string as the value, under a lease.
    gateway.put(f"/services/{sd_namespace}/10.0.0.7:9000", "10.0.0.7:9000", gateway.grant(30))
    reg = Registration(sd_namespace, "127.0.0.1", 20001, id="ours", tags={"t"}, weight=3)
    make_registrar(reg).register()
    with make_instancer(sd_namespace).subscribe() as sub:
        event = wait_for(sub, lambda e: len(e.instances) == 2, 5.0, "both instances")
    by_id = {instance.id: instance for instance in event.instances}
    assert by_id["ours"] == reg.instance()
    go = by_id["10.0.0.7:9000"]
    assert (go.address, go.service, go.tags, go.weight) == ("10.0.0.7:9000", sd_namespace, set(), 1)


def test_values_that_are_no_instance_are_skipped_with_one_warning(
    etcd_server: EtcdServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_etcd")
    gateway = Gateway(etcd_server)
    prefix = f"/services/{sd_namespace}/"
    gateway.put(prefix + "bad", "neither json nor an address")
    gateway.put(prefix + "broken-json", '{"host": "10.0.0.1", "port": ')
    gateway.put(prefix + "good", "10.0.0.1:80")
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"good"}, 5.0, "only the good instance")
        for port in (81, 82, 83):  # changes elsewhere under the prefix: no new warning
            gateway.put(prefix + "good", f"10.0.0.1:{port}")
        wait_for(sub, lambda e: addresses(e) == {"10.0.0.1:83"}, 5.0, "the last change")
        # A read again (the stream is lost with the server) warns no more either.
        etcd_server.stop()
        wait_for(sub, lambda e: not e.ok, 5.0, "an error while etcd is down")
        etcd_server.start()
        wait_for(sub, lambda e: e.ok and ids(e) == {"good"}, 10.0, "the good instance again")
    warned = [r.getMessage() for r in caplog.records if r.name == "sd_etcd"]
    assert len([m for m in warned if prefix + "bad'" in m]) == 1, warned
    assert len([m for m in warned if prefix + "broken-json'" in m]) == 1, warned
    assert any("neither a JSON object nor host:port" in m for m in warned)
    assert any("not valid JSON" in m for m in warned)


def test_services_that_share_a_beginning_are_kept_apart(
    etcd_server: EtcdServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    gateway = Gateway(etcd_server)
    gateway.put(f"/services/{sd_namespace}/a", "10.0.0.1:80")
    gateway.put(f"/services/{sd_namespace}-admin/b", "10.0.0.2:80")
    gateway.put(f"/services/{sd_namespace}x", "10.0.0.3:80")
    with make_instancer(sd_namespace).subscribe() as sub:
        event = wait_for(sub, lambda e: e.ok, 5.0, "a first set")
    assert ids(event) == {"a"}
    assert addresses(event) == {"10.0.0.1:80"}


def test_the_prefix_option_and_the_url_form(
    etcd_server: EtcdServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    prefix = f"/{sd_namespace}/registry"
    make_registrar(Registration("api", "127.0.0.1", 20002, id="x"), prefix=prefix).register()
    assert Gateway(etcd_server).get(f"{prefix}/api/x") is not None
    instancer = sd_core.instancer(f"etcd://{etcd_server.address}/api?prefix={prefix}&timeout=2")
    try:
        with instancer.subscribe() as sub:
            wait_for(sub, lambda e: ids(e) == {"x"}, 5.0, "instance x under the prefix")
    finally:
        instancer.stop()
    with make_instancer("api").subscribe() as sub:  # the default prefix: not there
        event = wait_for(sub, lambda e: e.ok, 5.0, "a first set")
        assert "x" not in ids(event)


def test_a_burst_of_changes_loses_no_update_and_repeats_no_set(
    etcd_server: EtcdServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    gateway = Gateway(etcd_server)
    prefix = f"/services/{sd_namespace}/"
    events: list[Event] = []
    changed = threading.Condition()

    def record(event: Event) -> None:
        with changed:
            events.append(event)
            changed.notify_all()

    instancer = make_instancer(sd_namespace)
    instancer.register(record)
    expected: dict[str, str] = {}
    for step in range(60):
        key = f"i{step % 7}"
        if step % 3 == 2 and key in expected:
            gateway.delete(prefix + key)
            del expected[key]
        else:
            expected[key] = f"10.0.{step}.1:80"
            gateway.put(prefix + key, expected[key])
    want = {f"{key}={address}" for key, address in expected.items()}
    with changed:
        done = changed.wait_for(
            lambda: bool(events) and {f"{i.id}={i.address}" for i in events[-1].instances} == want,
            timeout=10.0,
        )
    instancer.deregister(record)
    assert done, f"the last set is not {sorted(want)}: {events[-1] if events else None}"
    assert all(event.ok for event in events)
    repeated = [a for a, b in itertools.pairwise(events) if a == b]
    assert repeated == [], "a set was sent twice in a row"


def test_a_compaction_between_the_read_and_the_watch_makes_it_read_again(
    etcd_server: EtcdServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watch starts at the revision read + 1: when etcd compacted it meanwhile, the watch
    is refused, and the instancer reads again (and so sees what changed in between)."""
    caplog.set_level(logging.INFO, logger="sd_etcd")
    gateway = Gateway(etcd_server)
    prefix = f"/services/{sd_namespace}/"
    gateway.put(prefix + "a", "10.0.0.1:80")
    real_read = EtcdClient.read
    reads: list[int] = []

    async def read_then_compact(self: EtcdClient, key_prefix: str) -> Any:
        revision, entries = await real_read(self, key_prefix)
        reads.append(revision)
        if key_prefix == prefix and len(reads) == 1:
            # Another client changes the prefix and compacts the history past our read.
            await asyncio.to_thread(gateway.put, prefix + "b", "10.0.0.2:80")
            await asyncio.to_thread(gateway.put, f"/elsewhere/{sd_namespace}", "x")
            await asyncio.to_thread(gateway.compact)
        return revision, entries

    monkeypatch.setattr(EtcdClient, "read", read_then_compact)
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a", "b"}, 5.0, "a and b, after reading again")
    assert len(reads) == 2, reads
    assert any("is compacted" in r.getMessage() for r in caplog.records), caplog.text
    assert connections().count("etcd") >= 1  # the watch's client is still open here
