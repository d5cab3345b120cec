"""The mapping of etcd's data, as pure logic: keys, values, and the set a read and the watch
events after it make (no server needed)."""

from __future__ import annotations

import json
import logging

import pytest
from sd_etcd._client import Change
from sd_etcd._instancer import ServiceSet
from sd_etcd._layout import check_service, decode, encode, instance_key, service_prefix

from sd_core import ConfigError, Registration


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("/services", "/services/web/"),
        ("/services/", "/services/web/"),
        ("/", "/web/"),
        ("", "web/"),
        ("/a/b", "/a/b/web/"),
    ],
)
def test_service_prefix(prefix: str, expected: str) -> None:
    assert service_prefix(prefix, "web") == expected


def test_instance_key_ends_with_the_registration_id() -> None:
    reg = Registration("web", "10.0.0.1", 8080)
    assert instance_key("/services", reg) == "/services/web/10.0.0.1:8080"
    reg = Registration("web", "10.0.0.1", 8080, id="a/b")
    assert instance_key("/services", reg) == "/services/web/a/b"


@pytest.mark.parametrize("service", ["", " ", "a/b", "/web", None])
def test_a_service_that_cannot_name_a_prefix_is_refused(service: object) -> None:
    with pytest.raises(ConfigError, match="service"):
        check_service(service)


def test_json_round_trip() -> None:
    reg = Registration(
        "web",
        "2001:db8::1",
        8080,
        id="a",
        tags={"prod", "v2"},
        meta={"version": "1.0", "note": "ünïcode"},
        weight=7,
        zone="eu-1",
    )
    value = encode(reg, "json")
    assert json.loads(value) == {
        "host": "2001:db8::1",
        "port": 8080,
        "tags": ["prod", "v2"],
        "meta": {"version": "1.0", "note": "ünïcode"},
        "weight": 7,
        "zone": "eu-1",
    }
    assert decode("web", "a", value) == reg.instance()


def test_address_values_are_what_go_kit_writes_and_reads() -> None:
    assert encode(Registration("web", "10.0.0.1", 8080), "address") == b"10.0.0.1:8080"
    assert encode(Registration("web", "2001:db8::1", 8080), "address") == b"[2001:db8::1]:8080"
    instance = decode("web", "10.0.0.1:8080", b"10.0.0.1:8080")
    assert (instance.host, instance.port, instance.id, instance.service) == (
        "10.0.0.1",
        8080,
        "10.0.0.1:8080",
        "web",
    )
    assert decode("web", "x", b" [::1]:80 \n").address == "[::1]:80"
    assert decode("web", "x", b"svc.example.com:443").host == "svc.example.com"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"garbage", "neither a JSON object nor host:port"),
        (b"http://10.0.0.1:80", "neither a JSON object nor host:port"),
        (b"10.0.0.1", "neither a JSON object nor host:port"),
        (b"10.0.0.1:0", "neither a JSON object nor host:port"),
        (b"", "neither a JSON object nor host:port"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"port": 80}', "no host"),
        (b'{"host": "h", "port": "80"}', "no port"),
        (b'{"host": "h", "port": 80, "tags": "a"}', "tags"),
        (b'{"host": "h", "port": 80, "meta": {"a": 1}}', "meta"),
        (b'{"host": "h", "port": 80, "weight": 1.5}', "weight"),
        (b'{"host": "h", "port": 80, "zone": 3}', "zone"),
        (b'{"host": "h", "port": 70000}', "port"),
        (b'{"host": "bad host", "port": 80}', "host"),
    ],
)
def test_values_that_are_no_instance_say_why(value: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode("web", "x", value)


def _set() -> ServiceSet:
    service_set = ServiceSet("web", "/services/web/")
    service_set.reset(10, [(b"/services/web/a", b"10.0.0.1:80")])
    return service_set


def test_events_at_or_below_the_revision_read_are_not_applied_again() -> None:
    service_set = _set()
    assert not service_set.apply([Change(b"/services/web/a", None, 10)])  # the read had it
    assert not service_set.apply([Change(b"/services/web/b", b"10.0.0.2:80", 9)])
    assert [i.id for i in service_set.instances()] == ["a"]
    assert service_set.apply([Change(b"/services/web/b", b"10.0.0.2:80", 11)])
    assert not service_set.apply([Change(b"/services/web/b", b"10.0.0.2:80", 11)])  # replayed
    assert service_set.apply([Change(b"/services/web/a", None, 12)])
    assert [i.id for i in service_set.instances()] == ["b"]
    assert service_set.revision == 12


def test_the_events_of_one_transaction_all_apply() -> None:
    service_set = _set()
    changed = service_set.apply(
        [
            Change(b"/services/web/a", None, 11),
            Change(b"/services/web/b", b"10.0.0.2:80", 11),
            Change(b"/services/web/c", b"10.0.0.3:80", 11),
        ]
    )
    assert changed
    assert sorted(i.id for i in service_set.instances()) == ["b", "c"]


def test_a_value_changed_in_place_replaces_the_instance() -> None:
    service_set = _set()
    assert service_set.apply([Change(b"/services/web/a", b"10.0.0.9:81", 11)])
    assert [i.address for i in service_set.instances()] == ["10.0.0.9:81"]


def test_a_bad_value_is_skipped_with_one_warning_while_it_lasts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_etcd")
    service_set = _set()
    service_set.apply([Change(b"/services/web/bad", b"garbage", 11)])
    service_set.apply([Change(b"/services/web/b", b"10.0.0.2:80", 12)])
    service_set.reset(
        12, [(b"/services/web/bad", b"garbage"), (b"/services/web/b", b"10.0.0.2:80")]
    )
    assert sorted(i.id for i in service_set.instances()) == ["b"]
    warnings = [r for r in caplog.records if "/services/web/bad" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "neither a JSON object nor host:port" in warnings[0].getMessage()
    # Another bad value is warned about again; a good one ends the warning.
    service_set.apply([Change(b"/services/web/bad", b"other garbage", 13)])
    service_set.apply([Change(b"/services/web/bad", b"10.0.0.5:80", 14)])
    service_set.apply([Change(b"/services/web/bad", b"garbage", 15)])
    warnings = [r for r in caplog.records if "/services/web/bad" in r.getMessage()]
    assert len(warnings) == 3
    assert sorted(i.id for i in service_set.instances()) == ["b"]
