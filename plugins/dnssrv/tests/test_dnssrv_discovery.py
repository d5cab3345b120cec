"""Discovery against dnsmasq serving static SRV records: priorities, weights, addresses from
the additional section or by query, records left out, failures and recovery."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from dnssrv_helpers import FAST, Events, MakeInstancer, poll, summary
from pytest_sd import wait_for_event as wait_for
from pytest_sd.dns import AddressRecord, DnsmasqServer, SrvRecord

import sd_core
from sd_core import BackendUnavailableError, Endpointer, PriorityWeighted

WEB = "_web._tcp.sd.test"


def options(server: DnsmasqServer) -> dict[str, object]:
    return {"address": server.address, "domain": "sd.test", **FAST}


def test_priorities_weights_and_addresses_come_from_the_records(
    dnsmasq_server: DnsmasqServer, make_instancer: MakeInstancer
) -> None:
    dnsmasq_server.set_records(
        [
            SrvRecord(WEB, "a.sd.test", 8080, priority=1, weight=60),
            SrvRecord(WEB, "b.sd.test", 8081, priority=1, weight=30),
            SrvRecord(WEB, "c.sd.test", 8082, priority=2, weight=0),
            AddressRecord("a.sd.test", "127.0.0.2"),
            AddressRecord("b.sd.test", "127.0.0.3"),
            AddressRecord("c.sd.test", "::3"),
        ]
    )
    with make_instancer("web", **options(dnsmasq_server)).subscribe() as sub:
        event = wait_for(sub, lambda e: len(e.instances) == 3, 5, "three instances")
    assert summary(event) == {
        ("127.0.0.2", 8080, 1, 60, "a.sd.test"),
        ("127.0.0.3", 8081, 1, 30, "b.sd.test"),
        ("::3", 8082, 2, 0, "c.sd.test"),
    }
    assert {i.id for i in event.instances} == {"a.sd.test:8080", "b.sd.test:8081", "c.sd.test:8082"}
    assert {i.service for i in event.instances} == {"web"}
    assert "[::3]:8082" in {i.address for i in event.instances}


def test_targets_missing_from_the_additional_section_are_looked_up(
    dnsmasq_server: DnsmasqServer, make_instancer: MakeInstancer
) -> None:
    dnsmasq_server.set_records(
        [
            SrvRecord(WEB, "asked.sd.test", 9000, weight=5),
            SrvRecord(WEB, "dual.sd.test", 9001, weight=7),
            # answered only when asked: not in the SRV answer's additional section
            AddressRecord("asked.sd.test", "127.0.0.7", additional=False),
            AddressRecord("dual.sd.test", "127.0.0.8", additional=False),
            AddressRecord("dual.sd.test", "::8", additional=False),
        ]
    )
    answer = dnsmasq_server.query(WEB, "SRV")
    assert len(answer.of_type("SRV")) == 2  # (the test's premise: dnsmasq serves both)
    with make_instancer("web", **options(dnsmasq_server)).subscribe() as sub:
        event = wait_for(sub, lambda e: len(e.instances) == 3, 5, "three instances")
    assert summary(event) == {
        ("127.0.0.7", 9000, 0, 5, "asked.sd.test"),
        ("127.0.0.8", 9001, 0, 7, "dual.sd.test"),
        ("::8", 9001, 0, 7, "dual.sd.test"),
    }
    # A target with two addresses: one instance per address, ids told apart by the address.
    assert {i.id for i in event.instances} == {
        "asked.sd.test:9000",
        "dual.sd.test:9001/127.0.0.8",
        "dual.sd.test:9001/::8",
    }


def test_records_with_port_0_are_skipped_with_one_warning_and_unavailable_is_no_instance(
    dnsmasq_server: DnsmasqServer,
    make_instancer: MakeInstancer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dnsmasq_server.set_records(
        [
            SrvRecord(WEB, "good.sd.test", 8080),
            SrvRecord(WEB, "zero.sd.test", 0),
            SrvRecord(WEB, "nowhere.sd.test", 8082),  # a target without an address
            SrvRecord("_gone._tcp.sd.test", ".", 0),  # RFC 2782: decidedly not available
            AddressRecord("good.sd.test", "127.0.0.2"),
            AddressRecord("zero.sd.test", "127.0.0.3"),
        ]
    )
    caplog.set_level(logging.WARNING, logger="sd_dnssrv")
    offset = dnsmasq_server.log_size()
    instancer = make_instancer("web", **options(dnsmasq_server))
    events = Events(instancer)
    event = events.wait(lambda e: e.ok, 5, "a first set")
    # Several refreshes later (every 0.1-0.5 s, as dnsmasq's log shows): one warning per
    # record left out, not one per refresh.
    poll(lambda: dnsmasq_server.read_log(offset).count(f"query[SRV] {WEB}") >= 4, 10, "4 lookups")
    with make_instancer("gone", **options(dnsmasq_server)).subscribe() as sub:
        assert wait_for(sub, lambda e: True, 5, "a first event").instances == ()
    events.close()
    assert summary(event) == {("127.0.0.2", 8080, 0, 0, "good.sd.test")}
    assert [e for e in events.events if not e.ok] == []
    warnings = Counter(
        r.getMessage().split(" of ")[0] for r in caplog.records if r.name == "sd_dnssrv"
    )
    assert warnings == {
        "dnssrv: skipping SRV record zero.sd.test:0": 1,
        "dnssrv: skipping SRV record nowhere.sd.test:8082": 1,
    }


def test_a_name_that_does_not_exist_is_an_empty_set_not_an_error(
    dnsmasq_server: DnsmasqServer, make_instancer: MakeInstancer
) -> None:
    dnsmasq_server.set_records([SrvRecord(WEB, "a.sd.test", 8080)])
    answer = dnsmasq_server.query("_nobody._tcp.sd.test", "SRV")
    assert answer.rcode == "NXDOMAIN"  # (the test's premise)
    with make_instancer("nobody", **options(dnsmasq_server)).subscribe() as sub:
        event = wait_for(sub, lambda e: True, 5, "a first event")
    assert event.ok
    assert event.instances == ()


def test_server_stopped_is_one_error_event_and_the_last_set_is_kept_then_it_recovers(
    dnsmasq_server: DnsmasqServer, make_instancer: MakeInstancer
) -> None:
    dnsmasq_server.set_records(
        [SrvRecord(WEB, "a.sd.test", 8080), AddressRecord("a.sd.test", "127.0.0.2")]
    )
    instancer = make_instancer("web", **{**options(dnsmasq_server), "timeout": 0.3})
    events = Events(instancer)
    with Endpointer(instancer) as endpointer:
        events.wait(lambda e: len(e.instances) == 1, 5, "instance a")
        dnsmasq_server.stop()
        error = events.wait(lambda e: not e.ok, 5, "an error while the server is down")
        assert isinstance(error.error, BackendUnavailableError)
        assert "no answer within 0.3 s" in str(error.error), error.error
        # The watch keeps retrying (backoff capped at 0.5 s) without sending more errors, and
        # the endpointer keeps serving the last set.
        since = events.count()
        with pytest.raises(AssertionError):
            events.wait_next(since, 2.0, "a second event while down")
        assert [i.port for i in endpointer.endpoints()] == [8080]
        dnsmasq_server.start()
        again = events.wait(lambda e: e.ok, 5, "instance a again", since=since)
    events.close()
    assert [i.port for i in again.instances] == [8080]
    assert [e.ok for e in events.events] == [True, False, True]


def test_a_frozen_server_is_an_error_within_the_timeout_and_recovery_after_the_thaw(
    dnsmasq_server: DnsmasqServer, make_instancer: MakeInstancer
) -> None:
    dnsmasq_server.set_records(
        [SrvRecord(WEB, "a.sd.test", 8080), AddressRecord("a.sd.test", "127.0.0.2")]
    )
    instancer = make_instancer("web", **{**options(dnsmasq_server), "timeout": 0.3})
    events = Events(instancer)
    events.wait(lambda e: len(e.instances) == 1, 5, "instance a")
    dnsmasq_server.pause()
    try:
        events.wait(lambda e: not e.ok, 3, "an error while the server is frozen")
    finally:
        dnsmasq_server.resume()
    since = events.count()
    thawed = events.wait(lambda e: e.ok, 5, "an answer after the thaw", since=since)
    assert [i.port for i in thawed.instances] == [8080]
    events.close()


def test_the_rfc2782_balancer_keeps_to_the_lowest_priority_then_fails_over(
    dnsmasq_server: DnsmasqServer, make_instancer: MakeInstancer
) -> None:
    primary = [SrvRecord(WEB, "a.sd.test", 8080, 1, 75), SrvRecord(WEB, "b.sd.test", 8081, 1, 25)]
    backup = [SrvRecord(WEB, "c.sd.test", 8082, 5, 10)]
    addresses = [AddressRecord(f"{n}.sd.test", f"127.0.0.{i}") for i, n in enumerate("abc", 2)]
    dnsmasq_server.set_records([*primary, *backup, *addresses])
    instancer = make_instancer("web", **options(dnsmasq_server))
    with Endpointer(instancer) as endpointer:
        poll(lambda: len(endpointer.endpoints()) == 3, 5, "three endpoints")
        balancer = PriorityWeighted(endpointer, seed=1)
        picks = Counter(balancer.endpoint().port for _ in range(20_000))
        assert set(picks) == {8080, 8081}
        assert abs(picks[8080] / 20_000 - 0.75) < 0.75 * 0.05
        dnsmasq_server.set_records([*backup, *addresses])  # the whole first tier is gone
        poll(lambda: len(endpointer.endpoints()) == 1, 5, "the backup alone")
        assert {balancer.endpoint().port for _ in range(100)} == {8082}


def test_url_forms_and_the_dns_alias(dnsmasq_server: DnsmasqServer) -> None:
    dnsmasq_server.set_records(
        [SrvRecord(WEB, "a.sd.test", 8080), AddressRecord("a.sd.test", "127.0.0.2")]
    )
    urls = [
        f"dnssrv://{dnsmasq_server.address}/web?domain=sd.test&timeout=1",
        f"dns://{dnsmasq_server.address}/{WEB}?timeout=1",
        f"dns://{dnsmasq_server.address}/{WEB}.?proto=udp",  # a full name ignores proto
    ]
    for url in urls:
        with sd_core.instancer(url) as instancer, instancer.subscribe() as sub:
            event = wait_for(sub, lambda e: len(e.instances) == 1, 5, f"instance a via {url}")
        assert event.instances[0].address == "127.0.0.2:8080", url
