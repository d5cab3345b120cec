"""TTL-driven refresh against BIND: a record changed on the server is seen once the TTL of
the answer ran out, not before; min_refresh and max_refresh clamp that TTL; an empty answer
is asked again after its negative-caching TTL (the zone's SOA). The core's clock is a
FakeClock, so "not before" is exact: the watch sleeps in fake time, which only the test
moves, while the lookups themselves are real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dnssrv_helpers import Events, MakeInstancer
from pytest_sd.dns import BindServer

from sd_core.plugin import FakeClock, use_clock

QUIET = 0.5
"""Real seconds a test waits to see that nothing comes (nothing can: the fake time stands)."""
SEEN = 5.0
"""Real seconds a due lookup may take to reach the test."""


@pytest.fixture
def fake() -> Iterator[FakeClock]:
    with use_clock(FakeClock()) as installed:
        assert isinstance(installed, FakeClock)
        yield installed


class Zone:
    """A service's records in the BIND fixture's zone, changed as an operator does."""

    def __init__(self, bind: BindServer, service: str) -> None:
        self.bind = bind
        self.service = service
        self.owner = f"_{service}._tcp.{bind.zone}"
        self.target = f"a.{service}.{bind.zone}"

    def publish(self, port: int, ttl: int, *, replace: int | None = None) -> None:
        """SRV ``0 1 port target`` and the target's A record, with ``ttl``; ``replace`` names
        the port of the SRV record to remove in the same update."""
        commands = [
            f"update add {self.owner} {ttl} SRV 0 1 {port} {self.target}",
            f"update add {self.target} {ttl} A 127.0.0.2",
        ]
        if replace is not None:
            commands.insert(0, f"update delete {self.owner} SRV 0 1 {replace} {self.target}")
        self.bind.nsupdate(*commands)

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"address": self.bind.address, "domain": self.bind.zone, "timeout": 1.0, **extra}


def ports(events: Events) -> list[int]:
    latest = events.events[-1]
    assert latest.ok, latest
    return sorted(i.port for i in latest.instances)


def nothing_new(events: Events, since: int) -> None:
    with pytest.raises(AssertionError):
        events.wait_next(since, QUIET, "an event")


def test_a_changed_record_is_seen_after_its_ttl_and_not_before(
    fake: FakeClock, bind_server: BindServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    zone = Zone(bind_server, sd_namespace)
    zone.publish(8080, ttl=3)
    instancer = make_instancer(sd_namespace, **zone.options(min_refresh=0.1, max_refresh=60))
    events = Events(instancer)
    events.wait(lambda e: len(e.instances) == 1, SEEN, "the first set")
    zone.publish(8081, ttl=3, replace=8080)
    since = events.count()
    fake.advance(2.9)
    nothing_new(events, since)
    assert ports(events) == [8080]
    fake.advance(0.2)
    events.wait(lambda e: [i.port for i in e.instances] == [8081], SEEN, "8081", since=since)
    events.close()


def test_min_refresh_holds_a_short_ttl_back(
    fake: FakeClock, bind_server: BindServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    zone = Zone(bind_server, sd_namespace)
    zone.publish(8080, ttl=1)
    instancer = make_instancer(sd_namespace, **zone.options(min_refresh=5, max_refresh=60))
    events = Events(instancer)
    events.wait(lambda e: len(e.instances) == 1, SEEN, "the first set")
    zone.publish(8081, ttl=1, replace=8080)
    since = events.count()
    fake.advance(1.5)  # past the TTL, short of min_refresh
    nothing_new(events, since)
    fake.advance(3.3)
    nothing_new(events, since)
    fake.advance(0.3)
    events.wait(lambda e: [i.port for i in e.instances] == [8081], SEEN, "8081", since=since)
    events.close()


def test_max_refresh_cuts_a_long_ttl_short(
    fake: FakeClock, bind_server: BindServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    zone = Zone(bind_server, sd_namespace)
    zone.publish(8080, ttl=3600)
    instancer = make_instancer(sd_namespace, **zone.options(min_refresh=0.1, max_refresh=2))
    events = Events(instancer)
    events.wait(lambda e: len(e.instances) == 1, SEEN, "the first set")
    zone.publish(8081, ttl=3600, replace=8080)
    since = events.count()
    fake.advance(1.9)
    nothing_new(events, since)
    fake.advance(0.2)
    events.wait(lambda e: [i.port for i in e.instances] == [8081], SEEN, "8081", since=since)
    events.close()


def test_an_absent_name_is_asked_again_after_the_negative_caching_ttl_of_the_zone(
    fake: FakeClock, bind_server: BindServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    zone = Zone(bind_server, sd_namespace)
    negative_ttl = bind_server.ttl  # the SOA's TTL and MINIMUM (RFC 2308)
    assert bind_server.query(zone.owner, "SRV").rcode == "NXDOMAIN"  # (the test's premise)
    instancer = make_instancer(sd_namespace, **zone.options(min_refresh=0.1, max_refresh=60))
    events = Events(instancer)
    first = events.wait(lambda e: True, SEEN, "a first event")
    assert first.ok and first.instances == ()
    zone.publish(8080, ttl=3)
    since = events.count()
    fake.advance(negative_ttl - 0.2)
    nothing_new(events, since)
    fake.advance(0.3)
    events.wait(lambda e: [i.port for i in e.instances] == [8080], SEEN, "8080", since=since)
    events.close()
