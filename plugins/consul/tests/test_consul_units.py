"""The parts that need no server: mapping, index rules, options, laziness, secrecy."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import pytest
from sd_consul import ConsulBackend
from sd_consul._backend import connection_from, health_query
from sd_consul._instancer import next_index, to_instances

import sd_core
from sd_core import ConfigError, Registration, RegistrationError


def entry(node: str, sid: str, port: int = 80, address: str = "", **service: Any) -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Address": "10.0.0.1", "Datacenter": "dc9"},
        "Service": {"ID": sid, "Service": "web", "Address": address, "Port": port, **service},
        "Checks": [{"Status": "passing"}],
    }


def test_mapping_of_health_entries() -> None:
    entries = [
        entry(
            "n1",
            "a",
            8080,
            "192.0.2.1",
            Tags=["x", "y"],
            Meta={"k": "v"},
            Weights={"Passing": 5, "Warning": 1},
        ),
        entry("n2", "b", 8081),
    ]
    instances, skipped = to_instances(entries)
    assert skipped == {}
    a, b = sorted(instances, key=lambda i: i.id)
    assert (a.host, a.port, a.id, a.service, a.zone) == ("192.0.2.1", 8080, "n1/a", "web", "dc9")
    assert (a.tags, dict(a.meta), a.weight) == ({"x", "y"}, {"k": "v"}, 5)
    assert (b.host, b.weight) == ("10.0.0.1", 1)  # the node's address; default weight


def test_warning_instances_take_the_warning_weight() -> None:
    warned = entry("n1", "a", Weights={"Passing": 5, "Warning": 2})
    warned["Checks"] = [{"Status": "passing"}, {"Status": "warning"}]
    (instance,), _ = to_instances([warned])
    assert instance.weight == 2


def test_ids_are_qualified_by_node() -> None:
    instances, _ = to_instances([entry("n1", "a"), entry("n2", "a", 81), entry("n1", "b")])
    assert {i.id for i in instances} == {"n1/a", "n2/a", "n1/b"}


def test_malformed_entries_are_skipped_with_a_reason() -> None:
    no_address = entry("n3", "c")
    no_address["Node"]["Address"] = ""
    bad_meta = entry("n1", "d", Meta={"k": 1})
    instances, skipped = to_instances(
        [entry("n1", "zero", 0), no_address, bad_meta, {"Node": None}, entry("n1", "ok")]
    )
    assert [i.id for i in instances] == ["n1/ok"]
    assert set(skipped) == {("n1", "zero"), ("n3", "c"), ("n1", "d"), ("", "")}
    assert "port" in skipped[("n1", "zero")]
    assert "address" in skipped[("n3", "c")]


def test_client_side_tags_must_all_match() -> None:
    entries = [entry("n", "a", Tags=["p", "q"]), entry("n", "b", Tags=["p"])]
    instances, _ = to_instances(entries, tags=["p", "q"])
    assert [i.id for i in instances] == ["n/a"]


@pytest.mark.parametrize(
    ("previous", "returned", "expected"),
    [(0, 12, 12), (12, 12, 12), (12, 15, 15), (15, 3, 0), (0, 0, 1), (5, 0, 0)],
)
def test_next_index(previous: int, returned: int, expected: int) -> None:
    assert next_index(previous, returned) == expected


def test_connection_options() -> None:
    plain = connection_from({"address": "127.0.0.1:8500", "timeout": 10.0})
    assert (plain.url, plain.verify, plain.cert) == ("http://127.0.0.1:8500", True, None)
    tls = connection_from(
        {
            "address": "https://consul.example:9501",
            "ca": "/ca.pem",
            "cert": "/c.pem",
            "key": "/k.pem",
            "timeout": 1.0,
        }
    )
    assert (tls.scheme, tls.host, tls.port, tls.verify) == (
        "https",
        "consul.example",
        9501,
        "/ca.pem",
    )
    assert tls.cert == ("/c.pem", "/k.pem")
    assert connection_from({"address": "h", "scheme": "https", "timeout": 1}).port == 8501
    assert connection_from({"address": "[::1]:8500", "timeout": 1}).url == "http://[::1]:8500"
    insecure = connection_from({"address": "h:1", "ca": "/ca.pem", "verify": False, "timeout": 1})
    assert insecure.verify is False


@pytest.mark.parametrize(
    "options",
    [
        {"address": "https://h:1", "scheme": "http"},
        {"address": "h:1", "scheme": "ftp"},
        {"address": "h:99999"},
        {"address": "h:1/path"},
        {"address": "h:1", "key": "/k.pem"},
        {"address": "h:1", "timeout": 0},
    ],
)
def test_bad_connection_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        connection_from({"timeout": 1.0, **options})


@pytest.mark.parametrize(
    "options",
    [{"consistency": "eventual"}, {"node_meta": ["novalue"]}, {"wait": 0}, {"wait": 601}],
)
def test_bad_discovery_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        health_query({"wait": 30.0, **options})


def test_discovery_options() -> None:
    query = health_query(
        {
            "tag": ["a"],
            "tags": ["b", "a"],
            "node_meta": ["rack:r1"],
            "consistency": "stale",
            "wait": 5.0,
        }
    )
    assert (query.tags, dict(query.node_meta), query.consistency) == (
        ("a", "b"),
        {"rack": "r1"},
        "stale",
    )


def test_bad_registration_options_and_values() -> None:
    registration = Registration("web", "127.0.0.1", 1)
    backend = ConsulBackend()
    with pytest.raises(ConfigError, match="Go duration"):
        backend.registrar(registration, check_interval="ten seconds")
    with pytest.raises(ConfigError, match="http_check"):
        backend.registrar(registration, http_check="localhost:80")
    with pytest.raises(ConfigError, match="weight"):
        backend.registrar(Registration("web", "127.0.0.1", 1, weight=0))
    with pytest.raises(ConfigError, match="unknown option"):
        backend.registrar(registration, tokne="x")
    with pytest.raises(ConfigError, match="unknown option 'tokne'"):
        sd_core.registrar("consul", registration, tokne="x")


def test_set_status_accepts_three_values() -> None:
    registrar = ConsulBackend().registrar(Registration("web", "127.0.0.1", 1))
    try:
        with pytest.raises(ValueError, match="passing, warning, critical"):
            registrar.set_status("ok")
        registrar.set_status("warning", "before registering: applied at register()")
    finally:
        registrar.close()


def test_the_token_is_in_no_repr_or_option_error() -> None:
    secret = "s3cr3t-token-value"
    registrar = ConsulBackend().registrar(Registration("web", "127.0.0.1", 1), token=secret)
    try:
        assert secret not in repr(registrar)
        assert secret not in repr(registrar.client)  # type: ignore[attr-defined]
        assert secret not in repr(registrar.client.connection)  # type: ignore[attr-defined]
    finally:
        registrar.close()
    assert all(secret not in repr(option) for option in ConsulBackend.options)
    with pytest.raises(ConfigError) as info:
        sd_core.registrar("consul", Registration("web", "127.0.0.1", 1), token=secret, wait="soon")
    assert secret not in str(info.value)


def test_importing_the_plugin_does_not_import_py_consul() -> None:
    code = "import sys, sd_consul; print('consul' in sys.modules, 'requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_backend_is_installed_through_its_entry_point() -> None:
    info = sd_core.backends()["consul"]
    assert info.distribution == "sd-consul"
    assert isinstance(info.backend, ConsulBackend)
    assert isinstance(info.backend, sd_core.Backend)


def test_an_unreachable_agent_is_a_registration_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    registrar = ConsulBackend().registrar(
        Registration("web", "127.0.0.1", 1), address=f"127.0.0.1:{port}", timeout=1.0
    )
    try:
        with pytest.raises(RegistrationError, match="cannot reach the agent"):
            registrar.register()
    finally:
        registrar.close()
