"""Registration against the real server: the instance it holds, renewals, STARTING then UP,
the status override, registering again after a 404, the server losing its state, a killed
registrant evicted."""

from __future__ import annotations

import time
from typing import Any

import pytest
from eureka_helpers import FAST, MakeInstancer, MakeRegistrar, ids, poll, wait_for
from pytest_sd import RegisteringChild
from pytest_sd.eureka import EurekaServer
from sd_eureka import EurekaRegistrar

from sd_core import ConfigError, RegistrarState, Registration

PROPAGATION = 5.0


def held(server: EurekaServer, service: str, ident: str) -> dict[str, Any] | None:
    """The instance record the server holds, or None."""
    response = server.api("GET", f"/apps/{service.upper()}/{ident}")
    if response.status == 404:
        return None
    assert response.status == 200, response
    record: dict[str, Any] = response.json()["instance"]
    return record


def test_the_instance_the_server_holds_and_renews(
    eureka_server: EurekaServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    reg = Registration(
        sd_namespace,
        "127.0.0.1",
        20401,
        id="web-1",
        tags=frozenset({"b", "a"}),
        meta={"version": "1.4"},
        ttl=3.0,
        weight=5,
        zone="zone-a",
    )
    registrar = make_registrar(reg)
    registrar.register()
    record = held(eureka_server, sd_namespace, "web-1")
    assert record is not None
    assert record["app"] == sd_namespace.upper()
    assert (record["vipAddress"], record["secureVipAddress"]) == (sd_namespace, sd_namespace)
    assert (record["hostName"], record["ipAddr"], record["status"]) == ("127.0.0.1",) * 2 + ("UP",)
    assert record["port"] == {"$": 20401, "@enabled": "true"}
    assert record["securePort"]["@enabled"] == "false"
    assert record["leaseInfo"]["durationInSecs"] == 3
    assert record["leaseInfo"]["renewalIntervalInSecs"] == 1
    assert record["metadata"] == {"version": "1.4", "zone": "zone-a", "weight": "5", "tags": "a,b"}
    assert record["dataCenterInfo"]["name"] == "MyOwn"
    renewed = record["leaseInfo"]["lastRenewalTimestamp"]

    def renewed_since() -> bool:
        now = held(eureka_server, sd_namespace, "web-1")
        return now is not None and now["leaseInfo"]["lastRenewalTimestamp"] > renewed

    poll(renewed_since, 3 * registrar.keepalive_interval + 1, "a renewal")
    assert registrar.health.state is RegistrarState.REGISTERED


def test_a_secure_registration_announces_its_port_as_the_secure_one(
    eureka_server: EurekaServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    make_registrar(Registration(sd_namespace, "127.0.0.1", 20443, id="s"), secure=True).register()
    record = held(eureka_server, sd_namespace, "s")
    assert record is not None
    assert record["securePort"] == {"$": 20443, "@enabled": "true"}
    assert record["port"]["@enabled"] == "false"
    with make_instancer(sd_namespace, secure=True).subscribe() as sub:
        event = wait_for(sub, lambda e: ids(e) == {"s"}, PROPAGATION, "the secure one")
    assert event.instances[0].port == 20443
    with make_instancer(sd_namespace).subscribe() as sub:
        assert wait_for(sub, lambda e: e.ok, PROPAGATION, "a set").instances == ()


def test_starting_then_up(
    eureka_server: EurekaServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    registrar = make_registrar(
        Registration(sd_namespace, "127.0.0.1", 20402, id="a"), initial_status="STARTING"
    )
    with (
        make_instancer(sd_namespace).subscribe() as up,
        make_instancer(sd_namespace, status=["STARTING"]).subscribe() as starting,
    ):
        registrar.register()
        record = held(eureka_server, sd_namespace, "a")
        assert record is not None and record["status"] == "STARTING"
        wait_for(starting, lambda e: ids(e) == {"a"}, PROPAGATION, "a starting")
        assert wait_for(up, lambda e: e.ok, PROPAGATION, "a set").instances == ()
        registrar.set_status("UP")
        wait_for(up, lambda e: ids(e) == {"a"}, PROPAGATION, "a up")
        wait_for(starting, lambda e: not e.instances, PROPAGATION, "a no longer starting")
    record = held(eureka_server, sd_namespace, "a")
    assert record is not None and record["status"] == "UP"


def test_out_of_service_hides_the_instance_until_the_override_is_cleared(
    eureka_server: EurekaServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    registrar = make_registrar(Registration(sd_namespace, "127.0.0.1", 20403, id="a", ttl=3.0))
    registrar.register()
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "a")
        registrar.set_status("OUT_OF_SERVICE", "maintenance")
        wait_for(sub, lambda e: e.ok and not e.instances, PROPAGATION, "a hidden")
        record = held(eureka_server, sd_namespace, "a")
        assert record is not None
        assert (record["status"], record["overriddenStatus"]) == ("OUT_OF_SERVICE",) * 2
        # Renewals keep the override.
        renewals = 3 * registrar.keepalive_interval
        with pytest.raises(TimeoutError):
            sub.get(timeout=renewals)
        record = held(eureka_server, sd_namespace, "a")
        assert record is not None and record["status"] == "OUT_OF_SERVICE"
        registrar.set_status("up")  # any case
        wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "a back")
    record = held(eureka_server, sd_namespace, "a")
    assert record is not None
    assert (record["status"], record["overriddenStatus"]) == ("UP", "UNKNOWN")


def test_a_status_set_before_registering_is_registered(
    eureka_server: EurekaServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    registrar = make_registrar(Registration(sd_namespace, "127.0.0.1", 20404, id="a"))
    registrar.set_status("DOWN")
    registrar.register()
    record = held(eureka_server, sd_namespace, "a")
    assert record is not None and record["status"] == "DOWN"
    with pytest.raises(ConfigError, match="UP, DOWN, STARTING, OUT_OF_SERVICE"):
        registrar.set_status("passing")


def test_a_renewal_answered_404_registers_again_at_once_with_its_status(
    eureka_server: EurekaServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    registrar = make_registrar(Registration(sd_namespace, "127.0.0.1", 20405, id="a", ttl=3.0))
    registrar.register()
    registrar.set_status("OUT_OF_SERVICE")
    assert eureka_server.api("DELETE", f"/apps/{sd_namespace.upper()}/a").status == 200
    assert held(eureka_server, sd_namespace, "a") is None
    forgotten = time.monotonic()
    poll(lambda: registrar.health.restores == 1, registrar.keepalive_interval + 2, "a restore")
    assert time.monotonic() - forgotten <= registrar.keepalive_interval + 2
    record = held(eureka_server, sd_namespace, "a")
    assert record is not None and record["status"] == "OUT_OF_SERVICE", record
    poll(lambda: registrar.health.healthy, 5, "healthy again")


def test_each_registration_is_newer_than_the_copy_the_server_holds(
    eureka_server: EurekaServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    registrar = make_registrar(Registration(sd_namespace, "127.0.0.1", 20406, id="a"))
    assert isinstance(registrar, EurekaRegistrar)
    stamps = [int(registrar.document()["instance"]["lastDirtyTimestamp"]) for _ in range(50)]
    assert stamps == sorted(set(stamps)), "strictly increasing, even within a millisecond"
    registrar.register()
    record = held(eureka_server, sd_namespace, "a")
    assert record is not None and int(record["lastDirtyTimestamp"]) > stamps[-1]


def test_deregistering_what_the_server_forgot_succeeds(
    eureka_server: EurekaServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    registrar = make_registrar(Registration(sd_namespace, "127.0.0.1", 20407, id="a", ttl=30))
    registrar.register()
    assert eureka_server.api("DELETE", f"/apps/{sd_namespace.upper()}/a").status == 200
    registrar.deregister()
    assert registrar.health.state is RegistrarState.IDLE
    assert held(eureka_server, sd_namespace, "a") is None


def test_the_registration_is_back_within_a_renewal_and_a_refresh_after_a_restart(
    eureka_server: EurekaServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    registrar = make_registrar(Registration(sd_namespace, "127.0.0.1", 20408, id="a", ttl=3.0))
    registrar.register()
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "a")
        eureka_server.restart()  # the registry is in memory: it comes back empty
        back = time.monotonic()
        # The registrar retries at least every renewal interval while the server is away,
        # the poller every retry_max; then one renewal (404: register again) and one refresh.
        bound = registrar.keepalive_interval + FAST["retry_max"] + FAST["refresh"] + 1.5
        wait_for(sub, lambda e: ids(e) == {"a"}, bound, "a back")
        elapsed = time.monotonic() - back
    assert registrar.health.restores >= 1
    assert elapsed <= bound


def test_a_killed_registrant_is_evicted_once_its_lease_expires(
    eureka_server: EurekaServer, options: dict[str, Any], sd_namespace: str, make_instancer: Any
) -> None:
    ttl = 2.0
    reg = Registration(sd_namespace, "127.0.0.1", 20409, id="doomed", ttl=ttl)
    with make_instancer(sd_namespace).subscribe() as sub:
        child = RegisteringChild("eureka", reg, options)
        try:
            wait_for(sub, lambda e: ids(e) == {"doomed"}, PROPAGATION, "the child")
            child.kill()
            killed = time.monotonic()
            # Eureka expires a renewed lease twice its duration after the last renewal, and
            # evicts every second (the test server's setting); then the poller's refresh.
            bound = 2 * ttl + 1.0 + FAST["refresh"] + 1.5
            wait_for(sub, lambda e: e.ok and not e.instances, bound, "the child evicted")
            elapsed = time.monotonic() - killed
        finally:
            child.kill()
    assert ttl / 2 <= elapsed <= bound, elapsed
