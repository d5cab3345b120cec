"""The parts that need no server: mapping, index rules, options, laziness, secrecy."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sd_consul import ConsulBackend
from sd_consul._backend import connection_from, health_query
from sd_consul._instancer import next_index, to_instances

import sd_core
import sd_core.plugin
from sd_core import ConfigError, Registration, RegistrationError
from sd_core._backend import Duration
from sd_core._options import resolve_for
from sd_core._selection import select


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


def test_connection_options(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "c.pem", "k.pem"))
    for path in (ca, cert, key):
        path.write_text("PEM")
    plain = connection_from({"address": "127.0.0.1:8500", "timeout": 10.0})
    assert (plain.url, plain.verify, plain.cert) == ("http://127.0.0.1:8500", True, None)
    tls = connection_from(
        {
            "address": "https://consul.example:9501",
            "ca": str(ca),
            "cert": str(cert),
            "key": str(key),
            "timeout": 1.0,
        }
    )
    assert (tls.scheme, tls.host, tls.port, tls.verify) == (
        "https",
        "consul.example",
        9501,
        str(ca),
    )
    assert tls.cert == (str(cert), str(key))
    assert connection_from({"address": "h", "cert": cert}).cert == str(cert)  # a Path will do
    assert connection_from({"address": "h", "scheme": "https", "timeout": 1}).port == 8501
    assert connection_from({"address": "[::1]:8500", "timeout": 1}).url == "http://[::1]:8500"
    insecure = connection_from({"address": "h:1", "ca": str(ca), "verify": False, "timeout": 1})
    assert insecure.verify is False


def test_tls_files_must_exist(tmp_path: Path) -> None:
    registration = Registration("web", "127.0.0.1", 1)
    missing = str(tmp_path / "missing.pem")
    for name in ("ca", "cert"):
        with pytest.raises(ConfigError, match=rf"option {name} names .*missing\.pem.* not exist"):
            ConsulBackend().registrar(registration, **{name: missing})
    with pytest.raises(ConfigError, match=r"option ca names .*, which is not a file"):
        sd_core.instancer("consul", "web", ca=str(tmp_path))


def test_connection_options_come_from_the_core_with_consul_s_variables() -> None:
    options = {option.name: option for option in ConsulBackend.options}
    connection = {name for name, option in options.items() if option.connection}
    assert connection == {"address", "token", "ca", "cert", "key", "verify", "timeout", "scheme"}
    assert {name: options[name].env for name in sorted(connection) if options[name].env} == {
        "address": "CONSUL_HTTP_ADDR",
        "ca": "CONSUL_CACERT",
        "cert": "CONSUL_CLIENT_CERT",
        "key": "CONSUL_CLIENT_KEY",
        "token": "CONSUL_HTTP_TOKEN",
        "verify": "CONSUL_HTTP_SSL_VERIFY",
    }
    assert options["token"].secret
    durations = {name for name, option in options.items() if option.type is Duration}
    assert durations == {
        "timeout",
        "wait",
        "retry_max",
        "check_interval",
        "deregister_critical_after",
    }


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "https://[::1]")
    monkeypatch.setenv("CONSUL_CACERT", str(ca))
    monkeypatch.setenv("CONSUL_HTTP_SSL_VERIFY", "false")
    *_, options = select("consul", "web", {})
    connection = connection_from(options)
    assert (connection.url, connection.verify) == ("https://[::1]:8501", False)
    assert connection_from(resolve_for(ConsulBackend(), {})) == connection  # a direct call too
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "[::1]:0")
    with pytest.raises(ConfigError, match="port 0"):
        ConsulBackend().instancer("web")


def test_address_forms() -> None:
    def parts(address: str) -> tuple[str, str, int]:
        connection = connection_from({"address": address})
        return connection.scheme, connection.host, connection.port

    assert parts("consul.example") == ("http", "consul.example", 8500)
    assert parts("consul.example.:1") == ("http", "consul.example.", 1)
    assert parts("consul_server:8500") == ("http", "consul_server", 8500)  # Docker names
    assert parts("HTTPS://10.0.0.1") == ("https", "10.0.0.1", 8501)
    assert parts("http://[fe80::1%eth0]:8500/") == ("http", "fe80::1%eth0", 8500)
    assert parts("[fe80::1%25eth0]:8500") == ("http", "fe80::1%eth0", 8500)  # RFC 6874
    assert parts(" [2001:db8::1] ") == ("http", "2001:db8::1", 8500)


BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    # address: port 0 used to mean "the default agent", silently
    ({"address": "127.0.0.1:0"}, r"address has port 0, which does not mean the default port"),
    ({"address": "a b:8500"}, r"address has a bad host: 'a b' holds ' '.*accepted: host:port"),
    ({"address": "h:99999"}, r"address has port 99999, which is out of range"),
    ({"address": "h:port"}, r"address has port 'port', which is not a number"),
    ({"address": "h:1/path"}, r"address has a path"),
    ({"address": "::1:8500"}, r"address has an IPv6 address outside brackets"),
    ({"address": "[::1"}, r"address opens '\[' without closing it"),
    ({"address": "[zz::1]:1"}, r"address has a bad host: .*not a valid IPv6 address"),
    ({"address": "999.1.1.1:1"}, r"address has a bad host: .*not a valid IPv4 address"),
    ({"address": "-bad-:1"}, r"address has a bad host: '-bad-' is not a hostname"),
    ({"address": "ftp://h:1"}, r"address has scheme ftp://, which is not http or https"),
    ({"address": "https://h:1", "scheme": "http"}, r"address says https:// but option scheme"),
    ({"scheme": "ftp"}, r"'scheme' must be one of http, https"),
    ({"key": "/k.pem"}, r"option key needs option cert"),
    # numbers and durations: bounds declared on the options, checked by the core
    ({"timeout": 0}, r"'timeout' must be between 10ms and 10m, got 0"),
    ({"timeout": "601s"}, r"'timeout' must be between 10ms and 10m, got '601s'"),
    ({"timeout": 1e308}, r"'timeout' must be between 10ms and 10m"),
    ({"timeout": "nan"}, r"'timeout' must be a duration \(.*\), got 'nan' \(not a number\)"),
    ({"timeout": float("inf")}, r"'timeout' must be a duration .*got inf \(not finite\)"),
    ({"timeout": "soon"}, r"'timeout' must be a duration \(a number of seconds .*got 'soon';"),
    ({"wait": 0}, r"'wait' must be between 1s and 10m"),
    ({"wait": "10m1s"}, r"'wait' must be between 1s and 10m"),
    ({"wait": -5}, r"'wait' must be a duration .*got -5 \(negative\)"),
    ({"retry_max": 0}, r"'retry_max' must be between 100ms and 10m"),
    ({"retry_max": 1e308}, r"'retry_max' must be between 100ms and 10m"),
    ({"consistency": "eventual"}, r"'consistency' must be one of default, stale, consistent"),
    ({"node_meta": ["novalue"]}, r"node_meta entries must be key:value"),
    ({"deregister_critical_after": "forever"}, r"'deregister_critical_after' must be a duration"),
    ({"deregister_critical_after": "9999999999h"}, r"between 1ns and 2562047h \(or never\)"),
    ({"deregister_critical_after": "-1m"}, r"'deregister_critical_after' .*\(negative\)"),
    ({"deregister_critical_after": 0}, r"between 1ns and 2562047h \(or never\)"),
    ({"check_interval": "ten seconds"}, r"'check_interval' must be a duration \("),
    ({"check_interval": "1m 30s"}, r"'check_interval' .*got '1m 30s' \(spaces inside\)"),
    ({"check_interval": "0s"}, r"'check_interval' must be between 1ns and 2562047h, got '0s'"),
    ({"check_interval": "never"}, r"'check_interval' must be a duration"),  # not for this one
    # checks: the plugin's own rules
    ({"http_check": "localhost:80"}, r"http_check must be an http:// or https:// URL"),
    ({"tcp_check": "localhost"}, r"tcp_check must be host:port"),
    ({"tcp_check": "localhost:0"}, r"tcp_check must be host:port"),
    ({"tcp_check": "http://localhost:1"}, r"tcp_check must be host:port"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_a_malformed_option_is_a_config_error_at_selection(
    options: dict[str, Any], message: str
) -> None:
    """Through sd_core (the core's resolution, then the plugin's) and straight through the
    backend: both refuse, naming the option and what it accepts, before any request."""
    registration = Registration("web", "127.0.0.1", 1)
    base = {"address": "127.0.0.1:1", **options}
    calls = [
        lambda: sd_core.registrar("consul", registration, **base),
        lambda: ConsulBackend().registrar(registration, **base),
        lambda: sd_core.instancer("consul", "web", **base),
        lambda: ConsulBackend().instancer("web", **base),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=message):
            call()


def test_port_zero_in_a_url_is_refused() -> None:
    # The core's URL parsing may refuse it first; either way it is not the default agent.
    with pytest.raises(ConfigError, match=r"port (is )?0"):
        sd_core.instancer("consul://127.0.0.1:0/web")
    with pytest.raises(ConfigError, match=r"port (is )?0"):
        sd_core.registrar("consul://127.0.0.1:0", Registration("web", "127.0.0.1", 1))
    with pytest.raises(ConfigError, match=r"port 0, which does not mean the default port"):
        sd_core.instancer("consul", "web", address="127.0.0.1:0")


def test_credentials_in_the_address_are_refused_without_being_shown() -> None:
    with pytest.raises(ConfigError, match="credentials") as info:
        sd_core.instancer("consul", "web", address="http://user:hunter22@h:1")
    assert "hunter22" not in str(info.value)


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ({}, {"DeregisterCriticalServiceAfter": "1m", "Interval": "10s"}),
        (
            {"deregister_critical_after": "1m30s", "check_interval": 2.5},
            {
                "DeregisterCriticalServiceAfter": "1m30s",
                "Interval": "2.5s",
            },
        ),
        (
            {"deregister_critical_after": 90, "check_interval": "500ms"},
            {
                "DeregisterCriticalServiceAfter": "1m30s",
                "Interval": "500ms",
            },
        ),
        (
            {"deregister_critical_after": "1.5h", "check_interval": "1m"},
            {
                "DeregisterCriticalServiceAfter": "1h30m",
                "Interval": "1m",
            },
        ),
        (
            {"deregister_critical_after": timedelta(days=1)},
            {
                "DeregisterCriticalServiceAfter": "24h",
            },
        ),
        ({"deregister_critical_after": "never"}, {"DeregisterCriticalServiceAfter": None}),
        ({"deregister_critical_after": "NEVER"}, {"DeregisterCriticalServiceAfter": None}),
        ({"deregister_critical_after": ""}, {"DeregisterCriticalServiceAfter": None}),
        ({"deregister_critical_after": math.inf}, {"DeregisterCriticalServiceAfter": None}),
    ],
)
def test_durations_are_sent_as_go_durations(given: dict[str, Any], sent: dict[str, Any]) -> None:
    """Through the core, straight to the backend, and resolved twice: the same checks."""
    registration = Registration("web", "127.0.0.1", 1)
    made = [
        sd_core.registrar("consul", registration, http_check="http://h:1/", **given),
        ConsulBackend().registrar(registration, http_check="http://h:1/", **given),
    ]
    _, _, resolved = select("consul", None, {"http_check": "http://h:1/", **given})
    made.append(ConsulBackend().registrar(registration, **resolved))
    try:
        for registrar in made:
            checks = registrar.checks  # type: ignore[attr-defined]
            shown = {
                "DeregisterCriticalServiceAfter": checks.deregister_critical_after,
                "Interval": checks.check_interval,
            }
            assert {key: shown[key] for key in sent} == sent
    finally:
        for registrar in made:
            registrar.close()


def test_durations_in_a_url_and_from_the_plugin_list() -> None:
    instancer = sd_core.instancer("consul://127.0.0.1:1/web?wait=1m30s&retry_max=250ms")
    try:
        _, _, resolved = select("consul://127.0.0.1:1/web?wait=1m30s&retry_max=250ms", None, {})
        assert (resolved["wait"], resolved["retry_max"], resolved["timeout"]) == (90.0, 0.25, 10.0)
        assert resolved["deregister_critical_after"] == 60.0
    finally:
        instancer.stop()
    _, _, resolved = select("consul:///web?deregister_critical_after=", None, {})
    assert resolved["deregister_critical_after"] == math.inf


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
    with pytest.raises(ConfigError, match="'check_interval' must be a duration"):
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
    assert isinstance(info.backend, sd_core.plugin.Backend)


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


def test_a_token_that_cannot_be_sent_in_a_header_is_refused_unseen() -> None:
    registration = Registration("web", "127.0.0.1", 1)
    for token, message in (
        ("s3cr3t-€-token-value", r"'token' holds a character outside ASCII"),
        ("s3cr3t-\x00-token-value", r"'token' holds a control character"),
        (" \n", r"'token' is empty"),
    ):
        for make in (
            lambda t: ConsulBackend().registrar(registration, token=t),
            lambda t: sd_core.instancer("consul", "web", token=t),
        ):
            with pytest.raises(ConfigError, match=message) as info:
                make(token)
            for part in ("s3cr3t", token):
                assert part not in str(info.value)
