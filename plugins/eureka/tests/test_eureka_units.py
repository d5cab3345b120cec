"""The parts that need no server: the registry and its deltas, the mapping both ways, the
connection options, refusals, laziness and secrecy."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
from typing import Any

import pytest
from sd_eureka import EurekaBackend
from sd_eureka._backend import Server, connection_from
from sd_eureka._mapping import View, check_registration, instance_document, to_instance
from sd_eureka._registry import Registry, reconcile_hashcode

import sd_core
from sd_core import ConfigError, Registration
from sd_core.plugin import resolve_for, scrub


def record(ident: str, status: str = "UP", **fields: Any) -> dict[str, Any]:
    """An instance record as the server writes it (numbers as strings where it does)."""
    return {
        "instanceId": ident,
        "hostName": f"{ident}.example",
        "app": "WEB",
        "ipAddr": "10.0.0.1",
        "status": status,
        "overriddenStatus": "UNKNOWN",
        "port": {"$": 8080, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "dataCenterInfo": {
            "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            "name": "MyOwn",
        },
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
        "metadata": {"@class": "java.util.Collections$EmptyMap"},
        "vipAddress": "web",
        "lastUpdatedTimestamp": "1700000000000",
        "lastDirtyTimestamp": "1700000000000",
        **fields,
    }


def applications(hashcode: str | None, **apps: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "versions__delta": "1",
        "application": [{"name": name, "instance": recs} for name, recs in apps.items()],
    }
    if hashcode is not None:
        body["apps__hashcode"] = hashcode
    return {"applications": body}


# -- the registry ----------------------------------------------------------------------------
def test_the_hashcode_is_eurekas_statuses_and_counts_sorted() -> None:
    assert reconcile_hashcode({"UP": 3, "DOWN": 1}) == "DOWN_1_UP_3_"
    assert reconcile_hashcode({"UP": 2, "OUT_OF_SERVICE": 0}) == "UP_2_"
    assert reconcile_hashcode({}) == ""


def test_a_full_fetch_takes_arrays_lone_objects_and_missing_lists() -> None:
    registry = Registry()
    document = {
        "applications": {
            "apps__hashcode": "DOWN_1_UP_1_",
            "application": [
                {"name": "web", "instance": record("a")},  # one object, not an array
                {"name": "API", "instance": [record("b", "DOWN")]},
                {"name": "EMPTY"},
            ],
        }
    }
    assert registry.replace(document)
    assert sorted(registry.apps) == ["API", "WEB"]  # names upper-cased; empty apps dropped
    assert registry.hashcode() == "DOWN_1_UP_1_"
    assert not registry.replace(copy.deepcopy(document)), "the same registry changed nothing"
    assert Registry().replace({"applications": {"apps__hashcode": ""}}) is False


def test_a_delta_adds_modifies_and_deletes_and_is_checked_against_the_hashcode() -> None:
    registry = Registry()
    registry.replace(applications("UP_2_", WEB=[record("a"), record("b")]))
    version = registry.versions["WEB"]
    delta = applications(
        "DOWN_1_UP_1_",
        WEB=[record("a", "DOWN", actionType="MODIFIED"), record("b", actionType="DELETED")],
        API=[record("c", actionType="ADDED")],
    )
    changed, consistent = registry.apply(delta)
    assert (changed, consistent) == (True, True)
    assert {app: sorted(recs) for app, recs in registry.apps.items()} == {
        "WEB": ["a"],
        "API": ["c"],
    }
    assert registry.apps["WEB"]["a"]["status"] == "DOWN"
    assert registry.versions["WEB"] != version
    # The server repeats its recent changes in every delta: applying them again changes
    # nothing, and still adds up.
    assert registry.apply(delta) == (False, True)
    # A delta from a server whose registry differs does not add up: fetch everything.
    assert registry.apply(applications("UP_5_")) == (False, False)
    # Deleting the last instance removes the application.
    registry.apply(applications("UP_1_", WEB=[record("a", actionType="DELETED")]))
    assert "WEB" not in registry.apps and "WEB" not in registry.versions


def test_renewals_alone_do_not_change_an_application() -> None:
    registry = Registry()
    registry.replace(applications("UP_1_", WEB=[record("a")]))
    version = registry.versions["WEB"]
    renewed = record("a", actionType="MODIFIED")
    renewed["leaseInfo"] = {"renewalIntervalInSecs": 30, "lastRenewalTimestamp": 1700000009999}
    assert registry.apply(applications("UP_1_", WEB=[renewed])) == (False, True)
    assert registry.versions["WEB"] == version


def test_unreadable_records_are_set_aside_and_still_counted() -> None:
    registry = Registry()
    nameless = {"app": "WEB", "status": "UP"}  # neither instanceId nor hostName
    document = applications("UP_2_", WEB=[record("a"), nameless, "junk"])  # type: ignore[list-item]
    document["applications"]["application"].append({"instance": [record("x")]})  # no name
    registry.replace(document)
    assert list(registry.apps["WEB"]) == ["a"]
    # Each told apart by a digest of its content, the same in the next document.
    assert sorted(app for app, _ in registry.rejected) == ["?", "WEB", "WEB"]
    assert all(ident.startswith("#") for _, ident in registry.rejected)
    keys = set(registry.rejected)
    registry.replace(copy.deepcopy(document))
    assert set(registry.rejected) == keys
    assert registry.hashcode() == "UP_2_", "the nameless UP record still counts"


@pytest.mark.parametrize(
    "document",
    [None, [], {"apps": {}}, {"applications": "none"}, {"applications": ["x"]}],
)
def test_a_document_that_is_not_a_registry_is_refused(document: object) -> None:
    with pytest.raises(ValueError, match="not an 'applications' object"):
        Registry().replace(document)
    with pytest.raises(ValueError, match="not an 'applications' object"):
        Registry().apply(document)


def test_a_delta_is_read_whole_before_anything_changes() -> None:
    registry = Registry()
    registry.replace(applications("UP_1_", WEB=[record("a")]))
    before = copy.deepcopy(registry.apps)
    with pytest.raises(ValueError, match="not an 'applications' object"):
        registry.apply({"applications": 7})
    assert registry.apps == before


# -- mapping: records to instances -------------------------------------------------------------
def test_a_record_as_spring_writes_it() -> None:
    rec = record(
        "10.0.0.1:web:8080",
        metadata={"zone": "zone-a", "weight": "5", "tags": "a,b", "version": "1.2", "n": 3},
    )
    instance = to_instance(rec, "web", View())
    assert instance is not None
    assert (instance.host, instance.port, instance.id) == ("10.0.0.1", 8080, "10.0.0.1:web:8080")
    assert (instance.service, instance.zone, instance.weight) == ("web", "zone-a", 5)
    assert instance.tags == frozenset({"a", "b"})
    assert dict(instance.meta) == {"version": "1.2", "n": "3"}


def test_views_choose_status_host_and_port() -> None:
    rec = record("a", "OUT_OF_SERVICE", securePort={"$": "8443", "@enabled": "true"})
    assert to_instance(rec, "web", View()) is None
    everything = View(statuses=frozenset({"UP", "OUT_OF_SERVICE"}))
    assert to_instance(rec, "web", everything) is not None
    named = to_instance(rec, "web", View(everything.statuses, host_from="hostName"))
    assert named is not None and named.host == "a.example"
    secure = to_instance(rec, "web", View(everything.statuses, secure=True))
    assert secure is not None and secure.port == 8443
    off = record("b", port={"$": 8080, "@enabled": "false"})
    assert to_instance(off, "web", View()) is None, "a disabled port is not listed"


def test_a_weight_that_is_not_a_number_stays_metadata() -> None:
    instance = to_instance(record("a", metadata={"weight": "heavy"}), "web", View())
    assert instance is not None
    assert (instance.weight, dict(instance.meta)) == (1, {"weight": "heavy"})


def test_no_instance_id_means_the_host_name() -> None:
    rec = record("a")
    del rec["instanceId"]
    instance = to_instance(rec, "web", View())
    assert instance is not None and instance.id == "a.example"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": None}, "status"),
        ({"ipAddr": ""}, "no ipAddr"),
        ({"ipAddr": "not a host!"}, "hostname"),
        ({"port": {"$": 0, "@enabled": "true"}}, "not a port number"),
        ({"port": {"$": "http", "@enabled": "true"}}, "not a port number"),
        ({"port": 8080}, "not an object"),
        ({"port": {"$": 8080, "@enabled": "maybe"}}, "@enabled"),
        ({"metadata": ["a"]}, "metadata"),
        ({"metadata": {"a": {"b": 1}}}, "not to a string"),
        ({"instanceId": None, "hostName": None}, "neither instanceId nor hostName"),
    ],
)
def test_records_that_cannot_be_instances_say_why(change: dict[str, Any], reason: str) -> None:
    with pytest.raises((ValueError, TypeError), match=reason):
        to_instance({**record("a"), **change}, "web", View())


# -- mapping: registrations to documents -------------------------------------------------------
def test_the_document_of_a_registration() -> None:
    reg = Registration(
        "web",
        "10.0.0.5",
        8080,
        id="web-1",
        tags=frozenset({"b", "a"}),
        meta={"version": "1"},
        ttl=7.5,
        weight=3,
        zone="z",
    )
    doc = instance_document(reg, status="STARTING", dirty=42, secure=False, renewal=2.5)
    instance = doc["instance"]
    assert instance["app"] == "WEB" and instance["vipAddress"] == "web"
    assert (instance["instanceId"], instance["hostName"], instance["ipAddr"]) == (
        "web-1",
        "10.0.0.5",
        "10.0.0.5",
    )
    assert instance["status"] == "STARTING" and instance["lastDirtyTimestamp"] == "42"
    assert instance["port"] == {"$": 8080, "@enabled": "true"}
    assert instance["securePort"]["@enabled"] == "false"
    assert instance["leaseInfo"] == {"renewalIntervalInSecs": 2, "durationInSecs": 8}
    assert instance["metadata"] == {"version": "1", "zone": "z", "weight": "3", "tags": "a,b"}
    assert instance["dataCenterInfo"]["@class"].endswith("DefaultDataCenterInfo")
    secure = instance_document(reg, status="UP", dirty=1, secure=True, renewal=1)["instance"]
    assert secure["securePort"] == {"$": 8080, "@enabled": "true"}
    assert secure["port"]["@enabled"] == "false"
    # What we write, we read back as it was registered.
    back = to_instance(instance, "web", View(frozenset({"STARTING"})))
    assert back == reg.instance()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"meta": {"zone": "a"}}, "Registration.zone"),
        ({"meta": {"tags": "a"}}, "Registration.tags"),
        ({"tags": frozenset({"a,b"})}, "comma"),
        ({"tags": frozenset({""})}, "empty"),
        ({"id": "a/b"}, "'/'"),
        ({"id": "a;b"}, "';'"),
        ({"id": "50%"}, "'%'"),
        ({"id": "a\\b"}, "'\\\\\\\\'"),
        ({"id": ".."}, "path segment"),
        ({"id": " a"}, "path segment"),
    ],
)
def test_registrations_eureka_could_not_give_back_are_refused(
    fields: dict[str, Any], reason: str
) -> None:
    reg = Registration("web", "127.0.0.1", 8080, **fields)
    with pytest.raises(ConfigError, match=reason):
        check_registration(reg)
    with pytest.raises(ConfigError, match=reason):  # before any client is made
        EurekaBackend().registrar(reg, address="127.0.0.1:1")


def test_ids_that_servers_route_are_accepted() -> None:
    for ident in ("a b", "a:b:c", "ünï", "a?b", "a#b", "..a", "a+b", "[v6]:80", "x" * 300):
        check_registration(Registration("web", "127.0.0.1", 8080, id=ident))


# -- connection options ----------------------------------------------------------------------
def connection(**options: Any) -> Any:
    return connection_from(resolve_for(EurekaBackend(), options, environ={}))


def test_addresses_urls_paths_and_ports() -> None:
    conn = connection(
        address=[
            "eureka-a",
            "10.0.0.2:9000",
            "https://eureka-c.example/eureka/v2/",
            "http://[::1]",
        ]
    )
    assert [server.url for server in conn.servers] == [
        "http://eureka-a:8761/eureka",
        "http://10.0.0.2:9000/eureka",
        "https://eureka-c.example:443/eureka/v2",
        "http://[::1]:80/eureka",
    ]
    assert connection().servers == (Server("http://127.0.0.1:8761/eureka"),)
    netflix = connection(address="h1,h2, h1", path="/eureka/v2/", scheme="https")
    assert [s.url for s in netflix.servers] == [
        "https://h1:8761/eureka/v2",
        "https://h2:8761/eureka/v2",
    ]


def test_credentials_from_the_url_win_over_the_options() -> None:
    conn = connection(
        address=["http://alice:s%40cret@h1:8761/eureka", "h2"], username="bob", password="pw-b"
    )
    first, second = conn.servers
    assert (first.username, first.password, first.from_options) == ("alice", "s@cret", False)
    assert (second.username, second.password, second.from_options) == ("bob", "pw-b", True)
    assert "s@cret" not in repr(conn) and "pw-b" not in repr(conn)
    assert scrub("s@cret and s%40cret") == "<secret> and <secret>"
    # An @ left unescaped in the password: the credentials end at the last @.
    (bare,) = connection(address="http://carol:p@ss-bare@h3/eureka").servers
    assert (bare.url, bare.username, bare.password) == ("http://h3:80/eureka", "carol", "p@ss-bare")


def test_the_options_credentials_go_in_pairs_when_they_are_used() -> None:
    with pytest.raises(ConfigError, match="option username needs option password"):
        connection(address="h1", username="bob")
    with pytest.raises(ConfigError, match="option password needs option username"):
        connection(address="h1", password="pw-lonely")
    # Unused beside the URL's own credentials: no error.
    conn = connection(address="http://a:pw-url@h1", password="pw-unused")
    assert conn.servers[0].username == "a"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("http://:pw-x@h1", "without a user name or a password"),
        ("http://user@h1", "without a user name or a password"),
        ("user:pw-no-scheme@h1:8761", "credentials but no scheme"),
        ("ftp://h1", "scheme"),
        ("h1:0", "port 0"),
        ("http://h1/eureka?x=1", "query"),
        (",", "names no"),
    ],
)
def test_bad_addresses(address: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as refused:
        connection(address=address)
    assert "pw-" not in str(refused.value), "the value's password is not quoted"


def test_a_scheme_option_that_contradicts_the_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="names http:// but option scheme is 'https'"):
        connection(address="http://h1", scheme="https")


def test_springs_environment_variable_gives_the_servers() -> None:
    variable = "http://u:pw-from-env@h1:8761/eureka/,http://u:pw-from-env@h2:8761/eureka/"
    opts = resolve_for(
        EurekaBackend(), {}, environ={"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": variable}
    )
    conn = connection_from(opts)
    assert [server.url for server in conn.servers] == [
        "http://h1:8761/eureka",
        "http://h2:8761/eureka",
    ]
    assert scrub("pw-from-env") == "<secret>"


def test_url_passwords_are_secret_before_the_core_logs_the_options(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The core logs every instancer's options at DEBUG before the plugin reads them."""
    caplog.set_level(logging.DEBUG)
    password = "pw-in-a-logged-url"
    instancer = sd_core.instancer(
        "eureka", "web", address=f"http://user:{password}@127.0.0.1:1/eureka", timeout=0.1
    )
    instancer.stop()
    assert "instancer of 'web'" in caplog.text
    assert password not in caplog.text


def test_discovery_options_are_checked() -> None:
    backend = EurekaBackend()
    with pytest.raises(ConfigError, match="status"):
        backend.instancer("web", status=["up"])  # Eureka's statuses are upper case
    with pytest.raises(ConfigError, match="host_from"):
        backend.instancer("web", host_from="ip")
    with pytest.raises(ConfigError, match="refresh"):
        backend.instancer("web", refresh="10ms")
    with pytest.raises(ConfigError, match="service"):
        backend.instancer("  ")


def test_importing_the_plugin_does_not_import_httpx() -> None:
    code = "import sys, sd_eureka; print('httpx' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_the_backend_is_installed_through_its_entry_point() -> None:
    info = sd_core.backends()["eureka"]
    assert info.distribution == "sd-eureka"
    assert isinstance(info.backend, EurekaBackend)
