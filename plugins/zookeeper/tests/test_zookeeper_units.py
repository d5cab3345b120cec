"""Pure logic: node data written and read, node names, ACL entries, options and URLs (the
factories are checked before any connection is made)."""

from __future__ import annotations

import json

import pytest
from sd_zookeeper import ZooKeeperBackend
from sd_zookeeper._acl import parse_acl
from sd_zookeeper._backend import connection_from, node_path
from sd_zookeeper._nodes import check_node_name, decode, encode

import sd_core
from sd_core import ConfigError, Registration
from sd_core.plugin import resolve_for


def test_spring_form_round_trips() -> None:
    reg = Registration(
        "web", "10.0.0.1", 80, id="w", tags={"b", "a"}, meta={"k": "v"}, weight=4, zone="z"
    )
    data = encode(reg, "spring", now=1700000000.5)
    document = json.loads(data)
    assert list(document) == [
        "name", "id", "address", "port", "sslPort", "payload",
        "registrationTimeUTC", "serviceType", "uriSpec",
    ]  # fmt: skip
    assert document["registrationTimeUTC"] == 1700000000500
    assert document["payload"]["metadata"] == {
        "k": "v", "tags": "a,b", "weight": "4", "zone": "z", "instance_status": "UP",
    }  # fmt: skip
    instance = decode("web", "w", data).instance
    assert instance == reg.instance()


def test_curator_and_hostport_forms() -> None:
    reg = Registration("web", "::1", 80, id="w", meta={"k": "v"})
    assert json.loads(encode(reg, "curator"))["payload"] == {
        "@class": "java.util.LinkedHashMap",
        "k": "v",
        "instance_status": "UP",
    }
    assert encode(reg, "hostport") == b"[::1]:80"
    assert (
        decode("web", "w", b"[::1]:80").instance
        == Registration("web", "::1", 80, id="w").instance()
    )


def test_status_other_than_up_hides_the_instance() -> None:
    reg = Registration("web", "10.0.0.1", 80, id="w")
    hidden = decode("web", "w", encode(reg, "spring", status="OUT_OF_SERVICE"))
    assert hidden.instance is None and hidden.hidden
    assert decode("web", "w", encode(reg, "spring", status="up")).instance is not None


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"", "no data"),
        (b"nonsense", "neither"),
        (b'{"address":"a.b","port":1', "not valid JSON"),
        (b"[1]", "neither"),
        (b'{"port":1}', "no address"),
        (b'{"address":"a.b","port":"80"}', "no port"),
        (b'{"address":"a.b","port":1,"enabled":false}', "disabled"),
        (b'{"address":"bad host!","port":1}', "host"),
    ],
)
def test_what_cannot_be_read_says_why(data: bytes, why: str) -> None:
    decoded = decode("web", "n", data)
    assert decoded.instance is None and why in decoded.skipped and not decoded.hidden


def test_registrations_the_format_cannot_carry_are_refused() -> None:
    with pytest.raises(ConfigError, match="may not hold 'zone'"):
        encode(Registration("web", "h", 1, meta={"zone": "z"}), "spring")
    with pytest.raises(ConfigError, match="may not be empty nor hold ','"):
        encode(Registration("web", "h", 1, tags={"a,b"}), "spring")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\x01", "\ud800"])
def test_bad_node_names(name: str) -> None:
    with pytest.raises(ConfigError):
        check_node_name("x", name)


def test_acl_entries() -> None:
    (entry,) = parse_acl(["digest:user:abc=:rw"], "acl")
    assert (entry.scheme, entry.id, entry.perms) == ("digest", "user:abc=", 3)
    assert len(parse_acl(["world:anyone:r,auth::cdrwa"], "acl")) == 2
    for bad in ("nope:x:r", "world:someone:r", "world:anyone:", "ip:1.2.3.4:z"):
        with pytest.raises(ConfigError):
            parse_acl([bad], "acl")


def test_connection_and_paths() -> None:
    backend = ZooKeeperBackend()
    opts = resolve_for(backend, {"address": "h1,h2:2182,[::1]", "chroot": "/a//b/"})
    connection = connection_from(opts)
    assert connection.connect_string == "h1:2181,h2:2182,[::1]:2181/a/b"
    assert node_path(opts, "web", "i") == "/services/web/i"
    assert node_path({"base_path": "/"}, "web") == "/web"
    with pytest.raises(ConfigError, match="start with '/'"):
        connection_from(resolve_for(backend, {"chroot": "a"}))
    with pytest.raises(ConfigError, match="may not hold ':'"):
        connection_from(resolve_for(backend, {"username": "a:b", "password": "pw1"}))
    with pytest.raises(ConfigError):
        resolve_for(backend, {"format": "xml"})
    with pytest.raises(ConfigError, match="between"):
        resolve_for(backend, {"session_timeout": "0.5s"})


def test_urls_names_and_alias() -> None:
    assert "zookeeper" in sd_core.backends()
    with pytest.raises(ConfigError, match="service name"):
        sd_core.instancer("zk://127.0.0.1:1/", "a/b")
    with pytest.raises(ConfigError, match=r"Registration\.id"):
        sd_core.registrar("zk", Registration("web", "h", 1, id="a/b"))
    with pytest.raises(ConfigError, match="base_path"):
        sd_core.instancer("zookeeper://127.0.0.1:1/web?base_path=services")
    registrar = sd_core.registrar(
        "zk", Registration("web", "h", 1), address="127.0.0.1:1", format="hostport"
    )
    try:
        with pytest.raises(ConfigError, match="no place for a status"):
            registrar.set_status("UP")
    finally:
        registrar.close()
