"""What needs no server: options and their errors, names, the mapping of answers to
instances, the refresh clamp. (Everything a user runs is tested against real servers in the
other modules; here only pure logic, with answers built by hand.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sd_dnssrv import DnsSrvBackend
from sd_dnssrv._client import AddressAnswer, SrvAnswer, SrvRecord
from sd_dnssrv._instancer import Refresh, to_instances
from sd_dnssrv._names import label_for, srv_name

import sd_core
from sd_core import ConfigError, Registration

BACKEND = DnsSrvBackend()
REG = Registration("web", "127.0.0.1", 8080, id="one")
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="


def test_the_backend_is_installed_as_dnssrv_and_dns() -> None:
    infos = sd_core.backends()
    assert infos["dnssrv"].distribution == "sd-dnssrv"
    assert "dns" in BACKEND.aliases


@pytest.mark.parametrize(
    ("service", "options", "name"),
    [
        ("web", {"domain": "example.com"}, "_web._tcp.example.com."),
        ("web", {"domain": "example.com.", "proto": "udp"}, "_web._udp.example.com."),
        ("_web", {"domain": "example.com"}, "_web._tcp.example.com."),
        ("web", {}, "_web._tcp"),
        ("_ldap._tcp.example.com", {"proto": "udp"}, "_ldap._tcp.example.com."),
        ("web.service.consul.", {}, "web.service.consul."),
    ],
)
def test_srv_names(service: str, options: dict[str, str], name: str) -> None:
    assert srv_name(service, proto=options.get("proto", "tcp"), domain=options.get("domain")) == (
        name
    )


def test_labels_for_ids() -> None:
    assert label_for("web-1") == "web-1"
    assert label_for("127.0.0.1:8080").startswith("127-0-0-1-8080-")
    assert label_for("Web") != label_for("web")  # DNS names ignore case; ids do not
    assert len(label_for("x" * 300)) <= 63
    assert label_for("ünïcode!").startswith("n-code-")
    assert label_for("___")  # nothing readable left: the hash alone


def make(kind: str, **options: Any) -> Any:
    if kind == "instancer":
        return BACKEND.instancer("web", **options)
    return BACKEND.registrar(REG, **options)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        (
            "instancer",
            {"address": "ns.example.com"},
            "names the name server 'ns.example.com', which is not an IP address",
        ),
        (
            "instancer",
            {"address": "127.0.0.1", "nameservers": "127.0.0.2"},
            "as address or as nameservers, not both",
        ),
        (
            "instancer",
            {"address": "127.0.0.1", "min_refresh": "10s", "max_refresh": "5s"},
            "min_refresh (10s) is longer than max_refresh (5s)",
        ),
        ("instancer", {"address": "127.0.0.1"}, "give option domain, or a full SRV name"),
        ("instancer", {"address": "127.0.0.1", "domain": "a..b"}, "option domain must be"),
        ("instancer", {"address": "127.0.0.1", "domain": "x", "proto": "t/c"}, "option proto"),
        ("registrar", {"address": "127.0.0.1"}, "registration needs option zone"),
        ("registrar", {"zone": "sd.test"}, "needs the zone's primary server"),
        (
            "registrar",
            {"server": "127.0.0.1", "zone": "sd.test", "key_secret": SECRET},
            "key_secret needs key_name",
        ),
        (
            "registrar",
            {"server": "127.0.0.1", "zone": "sd.test", "key_name": "k"},
            "key 'k' has no secret",
        ),
        (
            "registrar",
            {"server": "127.0.0.1", "zone": "sd.test", "key_name": "k", "key_secret": "not*b64"},
            "not a base64 TSIG secret",
        ),
        (
            "registrar",
            {"server": "127.0.0.1", "zone": "sd.test", "target": "a.elsewhere.test"},
            "the target 'a.elsewhere.test.' is outside zone 'sd.test.'",
        ),
        (
            "registrar",
            {"server": "127.0.0.1", "zone": "sd.test", "domain": "other.test"},
            "the SRV name '_web._tcp.other.test.' is outside zone 'sd.test.'",
        ),
        (
            "registrar",
            {"server": "127.0.0.1", "zone": "sd.test", "key_algorithm": "rot13"},
            "key_algorithm",
        ),
    ],
)
def test_bad_options_are_config_errors_saying_what_to_do(
    kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make(kind, **options)
    assert message in str(info.value)


def test_a_secret_that_is_not_base64_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as info:
        make("registrar", server="127.0.0.1", zone="sd.test", key_name="k", key_secret="s3cr*t")
    assert "s3cr*t" not in str(info.value)


def test_registrations_a_zone_cannot_hold_are_refused() -> None:
    options = {"server": "127.0.0.1", "zone": "sd.test"}
    for registration, message in [
        (Registration("web.api", "127.0.0.1", 80), "must be a service name (one DNS label)"),
        (Registration("web", "fe80::1%eth0", 80), "has a zone (%...)"),
        (Registration("web", "127.0.0.1", 80, weight=70000), "at most 65535"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            BACKEND.registrar(registration, **options)


def test_a_key_file_with_several_keys_needs_key_name(tmp_path: Path) -> None:
    keys = tmp_path / "keys.conf"
    keys.write_text(
        f'key "one" {{\n\talgorithm hmac-sha512;\n\tsecret "{SECRET}";\n}};\n'
        f'key "two" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n'
    )
    options = {"server": "127.0.0.1", "zone": "sd.test", "key_file": str(keys)}
    with pytest.raises(ConfigError, match=r"holds no key alone \(keys found: one, two\)"):
        BACKEND.registrar(REG, **options)
    registrar = BACKEND.registrar(REG, **options, key_name="one")
    try:
        assert registrar._key is not None
        assert (registrar._key.name, registrar._key.algorithm) == ("one.", "hmac-sha512")
        assert SECRET not in repr(registrar._key)
    finally:
        registrar.close()


def srv(target: str, port: int, priority: int = 0, weight: int = 1) -> SrvRecord:
    return SrvRecord(priority, weight, port, target)


def test_answers_map_to_instances_with_the_smallest_ttl_of_what_was_used() -> None:
    answer = SrvAnswer(
        name="_web._tcp.example.com",
        records=(
            srv("a.example.com", 80, 1, 10),
            srv("B.example.com", 81, 2, 0),
            srv("", 82),  # "."
            srv("unused.example.com", 0),  # port 0
        ),
        additional={"a.example.com": AddressAnswer(("10.0.0.1",), 30.0)},
        ttl=60.0,
    )
    resolved = {"b.example.com": AddressAnswer(("10.0.0.2", "2001:db8::2"), 20.0)}
    instances, skipped, ttl = to_instances("web", answer, resolved)
    assert ttl == 20.0
    assert sorted((i.id, i.host, i.priority, i.weight) for i in instances) == [
        ("B.example.com:81/10.0.0.2", "10.0.0.2", 2, 0),
        ("B.example.com:81/2001:db8::2", "2001:db8::2", 2, 0),
        ("a.example.com:80", "10.0.0.1", 1, 10),
    ]
    assert skipped == {"unused.example.com:0": "its port is 0"}


def test_the_refresh_is_the_ttl_clamped() -> None:
    refresh = Refresh(1.0, 60.0)
    assert [refresh.after(t) for t in (0.0, 0.5, 30.0, 3600.0, None)] == [1, 1, 30, 60, 1]
